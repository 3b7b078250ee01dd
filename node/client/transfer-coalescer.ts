// Batching in the client (TigerBeetle style): the single transfers that callers start in the
// same event-loop turn, from any number of client sessions, travel to their shard in one
// BatchTransfer call instead of one call each. Every transfer keeps its own client id,
// request id and outcome; nothing about exactly-once changes, only the number of round trips
// and of gRPC calls the client and the leader pay for.
import type { BatchEntry, TransferReply } from '../gen/shardbank/v1/bank.js';
import { assert } from '../util/assert.js';

export interface CoalescedTransfer {
  clientId: string;
  requestId: number;
  from: number;
  to: number;
  amount: number;
  acknowledgedBelow: number;
}

/** A per-entry answer, or the call's failure (the outcome is then unknown). */
export type CoalescedResult = { ok: true; reply: TransferReply } | { ok: false; error: { code: number; codeName: string; details: string } };

export type BatchSender = (shard: number, entries: BatchEntry[]) => Promise<CoalescedResult[]>;

interface Waiting {
  entry: BatchEntry;
  resolve: (result: CoalescedResult) => void;
}

export class TransferCoalescer {
  private readonly waiting = new Map<number, Waiting[]>();
  private flushScheduled = false;

  constructor(
    private readonly send: BatchSender,
    private readonly entriesPerCallMax: number,
  ) {
    assert(entriesPerCallMax >= 1, 'entriesPerCallMax must be positive');
  }

  submit(shard: number, transfer: CoalescedTransfer): Promise<CoalescedResult> {
    return new Promise((resolve) => {
      const list = this.waiting.get(shard) ?? [];
      list.push({
        entry: { requestId: transfer.requestId, from: transfer.from, to: transfer.to, amount: transfer.amount, clientId: transfer.clientId, acknowledgedBelow: transfer.acknowledgedBelow },
        resolve,
      });
      this.waiting.set(shard, list);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    for (const [shard, list] of this.waiting) {
      this.waiting.delete(shard);
      for (let start = 0; start < list.length; start += this.entriesPerCallMax) {
        const part = list.slice(start, start + this.entriesPerCallMax);
        this.send(shard, part.map((w) => w.entry)).then(
          (results) => part.forEach((w, i) => w.resolve(results[i] ?? { ok: false, error: { code: 14, codeName: 'UNAVAILABLE', details: 'missing result' } })),
          (error: unknown) => {
            const details = error instanceof Error ? error.message : String(error);
            for (const w of part) w.resolve({ ok: false, error: { code: 14, codeName: 'UNAVAILABLE', details } });
          },
        );
      }
    }
  }
}
