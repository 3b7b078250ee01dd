// Batching in the client (TigerBeetle style): the single transfers that callers start in the
// same event-loop turn, from any number of client sessions, travel to their shard in one
// BatchTransfer call instead of one call each. Every transfer keeps its own client id,
// request id and outcome; nothing about exactly-once changes, only the number of round trips
// and of gRPC calls the client and the leader pay for.
//
// Under load the calls themselves are batched too: at most CALLS_IN_FLIGHT_MAX calls per
// shard are in flight, and transfers started meanwhile wait for one to return and then go
// together. A lone client is never delayed (nothing is in flight), and nobody waits more than
// HOLD_MS_MAX behind a slow call (say, one whose entries retry a conflict): then a call goes
// anyway. Measured at 64 clients on the reference workload: about 15% more transfers/s, and
// less CPU per transfer in both the client and the leaders (fewer gRPC calls), with two calls
// in flight; one call in flight (and a 20 ms hold instead of 5 ms) then measured another
// x1.11 at 64 clients and x1.04 at 16, faster in every alternating round, with lower p50
// latency too: a gRPC call costs the client ~0.6 ms of CPU, more than the wait it saves.
//
// When the client has a TransferStream open to the shard's leader, the transfers of each turn
// go as one stream message instead, at once: no call in flight to wait for, and each result
// comes back as soon as its transfer is decided, not with the slowest of its call.
import type { BatchEntry, TransferReply } from '../gen/shardbank/v1/bank.js';
import { assert } from '../util/assert.js';
import { chunk } from '../util/chunk.js';
import { NextTurn } from '../util/next-turn.js';

/** A per-entry answer, or the call's failure (the outcome is then unknown). */
export type CoalescedResult =
  { ok: true; reply: TransferReply } | { ok: false; error: { code: number; codeName: string; details: string } };

export type BatchSender = (shard: number, entries: BatchEntry[]) => Promise<CoalescedResult[]>;

/** A TransferStream that takes entries now; results come back one by one, in any order. */
export interface StreamTarget {
  send(entries: readonly BatchEntry[], deliver: (index: number, result: CoalescedResult) => void): void;
}
/** The open stream to a shard's leader, if any (else the transfers go by BatchTransfer call). */
export type StreamFinder = (shard: number) => StreamTarget | undefined;

interface Waiting {
  entry: BatchEntry;
  resolve: (result: CoalescedResult) => void;
}

const CALLS_IN_FLIGHT_MAX = 1;
const HOLD_MS_MAX = 20;

export class TransferCoalescer {
  private readonly waiting = new Map<number, Waiting[]>();
  private readonly inFlight = new Map<number, number>();
  private readonly holdTimers = new Map<number, NodeJS.Timeout>();
  private readonly flushNextTurn = new NextTurn(() => this.flush());

  constructor(
    private readonly send: BatchSender,
    private readonly entriesPerCallMax: number,
    private readonly callsInFlightMax = CALLS_IN_FLIGHT_MAX,
    private readonly holdMsMax = HOLD_MS_MAX,
    private readonly streamFor: StreamFinder = () => undefined,
  ) {
    assert(entriesPerCallMax >= 1, 'entriesPerCallMax must be positive');
  }

  /** Only the entry's own fields are sent (a caller's request object may carry more). */
  submit(shard: number, transfer: BatchEntry): Promise<CoalescedResult> {
    return new Promise((resolve) => {
      const list = this.waiting.get(shard) ?? [];
      list.push({
        entry: {
          requestId: transfer.requestId,
          from: transfer.from,
          to: transfer.to,
          amount: transfer.amount,
          clientId: transfer.clientId,
          acknowledgedBelow: transfer.acknowledgedBelow,
          sessionEpoch: transfer.sessionEpoch,
        },
        resolve,
      });
      this.waiting.set(shard, list);
      this.flushNextTurn.request();
    });
  }

  private flush(): void {
    for (const shard of [...this.waiting.keys()]) this.flushShard(shard);
  }

  private flushShard(shard: number, force = false): void {
    const list = this.waiting.get(shard);
    if (!list || list.length === 0) return;
    const stream = this.streamFor(shard);
    if (stream !== undefined) {
      // A stream message costs little and its results come back one by one: no holding.
      this.waiting.delete(shard);
      for (const part of chunk(list, this.entriesPerCallMax)) {
        stream.send(
          part.map((w) => w.entry),
          (index, result) => part[index]!.resolve(result),
        );
      }
      return;
    }
    if (!force && (this.inFlight.get(shard) ?? 0) >= this.callsInFlightMax) {
      // Sent when a call returns, or after holdMsMax at the latest.
      if (!this.holdTimers.has(shard)) {
        this.holdTimers.set(
          shard,
          setTimeout(() => {
            this.holdTimers.delete(shard);
            this.flushShard(shard, true);
          }, this.holdMsMax),
        );
      }
      return;
    }
    const timer = this.holdTimers.get(shard);
    if (timer) {
      clearTimeout(timer);
      this.holdTimers.delete(shard);
    }
    this.waiting.delete(shard);
    for (const part of chunk(list, this.entriesPerCallMax)) {
      this.inFlight.set(shard, (this.inFlight.get(shard) ?? 0) + 1);
      // After the results are handed out, so that the transfers their callers start next go
      // in the same call as those already waiting.
      const done = () => {
        this.inFlight.set(shard, (this.inFlight.get(shard) ?? 1) - 1);
        this.flushNextTurn.request();
      };
      this.send(
        shard,
        part.map((w) => w.entry),
      ).then(
        (results) => {
          part.forEach((w, i) =>
            w.resolve(
              results[i] ?? { ok: false, error: { code: 14, codeName: 'UNAVAILABLE', details: 'missing result' } },
            ),
          );
          done();
        },
        (error: unknown) => {
          const details = error instanceof Error ? error.message : String(error);
          for (const w of part) w.resolve({ ok: false, error: { code: 14, codeName: 'UNAVAILABLE', details } });
          done();
        },
      );
    }
  }
}
