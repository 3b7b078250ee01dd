// The client side of one TransferStream: entries go out tagged, results come back by tag as
// each entry is decided (see node/replica/transfer-stream.ts for why a stream). A channel
// serves one replica, the shard leader the client last reached; it breaks, failing every
// entry still waiting with UNAVAILABLE (outcome unknown: the caller retries with the same
// ids), when the stream fails or ends, when the replica answers that it does not lead, or when
// an entry waits longer than the attempt timeout (a leader that stopped answering).
import { status as GrpcStatus, type ClientDuplexStream } from '@grpc/grpc-js';
import {
  Outcome,
  type BankClient as BankStub,
  type BatchEntry,
  type TransferStreamReply,
  type TransferStreamRequest,
} from '../gen/shardbank/v1/bank.js';
import { codeName, parseLeaderHint, type LeaderHint } from './grpc-call.js';
import type { CoalescedResult } from './transfer-coalescer.js';
import { TRACING, traceStamp } from '../util/stage-trace.js';

export type Deliver = (index: number, result: CoalescedResult) => void;

interface Waiting {
  readonly deliver: Deliver;
  readonly index: number;
  readonly sentAtMs: number;
}

export interface ChannelBreak {
  /** `unsupported`: the replica does not know TransferStream (an older version). */
  readonly reason: 'not-leader' | 'timeout' | 'stream-ended' | 'unsupported' | 'closed';
  readonly details: string;
  readonly leaderHint: LeaderHint | undefined;
}

const TIMEOUT_CHECK_MS = 250;

export class TransferStreamChannel {
  private readonly call: ClientDuplexStream<TransferStreamRequest, TransferStreamReply>;
  private readonly waiting = new Map<number, Waiting>();
  private nextTag = 1;
  private brokenBy: ChannelBreak | undefined;
  private readonly timeoutCheck: NodeJS.Timeout;

  constructor(
    stub: BankStub,
    readonly address: string,
    private readonly cluster: string,
    private readonly attemptTimeoutMs: number,
    private readonly onBreak: (channel: TransferStreamChannel, why: ChannelBreak) => void,
  ) {
    this.call = stub.transferStream();
    this.call.on('data', (reply: TransferStreamReply) => this.receive(reply));
    this.call.on('error', (error: Error & { code?: number; details?: string }) => {
      const code = typeof error.code === 'number' ? codeName(error.code) : 'UNAVAILABLE';
      this.break({
        reason: error.code === GrpcStatus.UNIMPLEMENTED ? 'unsupported' : 'stream-ended',
        details: `${code}: ${error.details ?? error.message}`,
        leaderHint: undefined,
      });
    });
    this.call.on('end', () =>
      this.break({ reason: 'stream-ended', details: 'stream ended by the replica', leaderHint: undefined }),
    );
    this.timeoutCheck = setInterval(() => this.checkTimeouts(), TIMEOUT_CHECK_MS);
    this.timeoutCheck.unref();
  }

  get broken(): boolean {
    return this.brokenBy !== undefined;
  }

  /** Entries must carry their client ids; each one's result reaches `deliver(index, result)`. */
  send(entries: readonly BatchEntry[], deliver: Deliver): void {
    if (this.brokenBy) {
      for (let index = 0; index < entries.length; index += 1) deliver(index, failed(this.brokenBy));
      return;
    }
    const tags = new Array<number>(entries.length);
    const sentAtMs = Date.now();
    for (let index = 0; index < entries.length; index += 1) {
      const tag = this.nextTag;
      this.nextTag += 1;
      tags[index] = tag;
      this.waiting.set(tag, { deliver, index, sentAtMs });
    }
    if (TRACING) traceStamp('client.stream-write');
    this.call.write({ cluster: this.cluster, entries: entries as BatchEntry[], tags });
    if (TRACING) traceStamp('client.stream-written');
  }

  close(): void {
    this.break({ reason: 'closed', details: 'client closed', leaderHint: undefined });
  }

  private receive(reply: TransferStreamReply): void {
    if (TRACING) traceStamp('client.stream-data');
    let notLeader = false;
    for (let k = 0; k < reply.tags.length; k += 1) {
      const waiting = this.waiting.get(reply.tags[k]!);
      const result = reply.results[k];
      if (waiting === undefined || result === undefined) continue;
      this.waiting.delete(reply.tags[k]!);
      if (result.outcome === Outcome.UNAVAILABLE) notLeader = true;
      waiting.deliver(waiting.index, { ok: true, reply: result });
    }
    if (notLeader) {
      const hint = reply.leaderHint === '' ? undefined : parseLeaderHint(reply.leaderHint);
      this.break({ reason: 'not-leader', details: 'replica does not lead the shard', leaderHint: hint });
    }
  }

  private checkTimeouts(): void {
    const oldestAllowedMs = Date.now() - this.attemptTimeoutMs;
    for (const waiting of this.waiting.values()) {
      // Map order is send order: the first entry is the oldest.
      if (waiting.sentAtMs < oldestAllowedMs)
        this.break({
          reason: 'timeout',
          details: `no result within ${this.attemptTimeoutMs} ms`,
          leaderHint: undefined,
        });
      return;
    }
  }

  private break(why: ChannelBreak): void {
    if (this.brokenBy) return;
    this.brokenBy = why;
    clearInterval(this.timeoutCheck);
    this.call.removeAllListeners('data');
    // Keeps a late 'error' from a cancelled call from being thrown as unhandled.
    this.call.on('error', () => {});
    this.call.cancel();
    const orphans = [...this.waiting.values()];
    this.waiting.clear();
    for (const waiting of orphans) waiting.deliver(waiting.index, failed(why));
    this.onBreak(this, why);
  }
}

function failed(why: ChannelBreak): CoalescedResult {
  return {
    ok: false,
    error: { code: GrpcStatus.UNAVAILABLE, codeName: 'UNAVAILABLE', details: `transfer stream: ${why.details}` },
  };
}
