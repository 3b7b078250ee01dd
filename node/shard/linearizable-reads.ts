// Linearizable reads on the leader: read-index (the core confirms leadership with a majority
// and names the index to wait for), then a wait for the cross-shard transfers pending on the
// items at that point (debits and credits alike), so a read never shows a prepared change and
// always shows a transfer that was acknowledged: with parallel commits a prepared debit may
// already be answered COMMITTED, and a prepared credit may be too. Owns the reads in flight and calls nothing: ShardNode asks the core for the
// read index, feeds the core's answers in, and drains the outcomes.
import { invariantViolated } from '../util/assert.js';
import type { BankState } from '../bank/bank-state.js';
import type { TxKey } from '../bank/txid.js';

export type ReadOutcome =
  | { token: number; kind: 'read'; balances: number[]; index: number }
  | { token: number; kind: 'failed'; code: 'not-leader' | 'unavailable'; message: string };

interface WaitingRead {
  token: number;
  items: number[];
  index: number;
  /** Keys of the transfers pending on the items at the read point; undefined until it is applied. */
  waitKeys: Set<TxKey> | undefined;
  deadlineTick: number;
}

/** Reads held at once; the replica's limit on calls in flight keeps far below it. */
const READS_MAX = 1_000_000;

export class LinearizableReads {
  private idLast = 0;
  private readonly byCoreId = new Map<number, { token: number; items: number[] }>();
  private waiting: WaitingRead[] = [];
  private outcomes: ReadOutcome[] = [];

  constructor(private readonly readWaitTicksMax: number) {}

  /** The id to hand the core's readIndex(); register() it if the core took it. */
  nextId(): number {
    this.idLast += 1;
    return this.idLast;
  }

  register(id: number, token: number, items: number[]): void {
    this.byCoreId.set(id, { token, items });
    if (!(this.byCoreId.size + this.waiting.length <= READS_MAX))
      invariantViolated(`more than ${READS_MAX} reads in flight`);
  }

  /** The core could not confirm leadership for this read. */
  onReadFailed(id: number): void {
    const read = this.byCoreId.get(id);
    if (!read) return;
    this.byCoreId.delete(id);
    this.outcomes.push({
      token: read.token,
      kind: 'failed',
      code: 'not-leader',
      message: 'leadership changed during the read; retry',
    });
  }

  /** A majority confirmed leadership: serve the read once `index` is applied and its pending transfers decided. */
  onReadIndex(id: number, index: number, nowTick: number): void {
    const read = this.byCoreId.get(id);
    if (!read) return;
    this.byCoreId.delete(id);
    this.waiting.push({
      token: read.token,
      items: read.items,
      index,
      waitKeys: undefined,
      deadlineTick: nowTick + this.readWaitTicksMax,
    });
  }

  serve(bank: BankState): void {
    if (this.waiting.length === 0) return;
    const still: WaitingRead[] = [];
    for (const read of this.waiting) {
      if (bank.appliedIndex < read.index) {
        still.push(read);
        continue;
      }
      if (!read.waitKeys) {
        read.waitKeys = new Set();
        for (const item of read.items) {
          for (const key of bank.pendingCreditKeys(item) ?? []) read.waitKeys.add(key);
          for (const key of bank.pendingDebitKeys(item) ?? []) read.waitKeys.add(key);
        }
      }
      for (const key of [...read.waitKeys]) {
        const stillPending = read.items.some(
          (item) => bank.pendingCreditKeys(item)?.has(key) || bank.pendingDebitKeys(item)?.has(key),
        );
        if (!stillPending) read.waitKeys.delete(key);
      }
      if (read.waitKeys.size > 0) {
        still.push(read);
        continue;
      }
      this.outcomes.push({
        token: read.token,
        kind: 'read',
        balances: read.items.map((item) => bank.balance(item)),
        index: read.index,
      });
    }
    this.waiting = still;
  }

  /** A read whose pending transfers stay undecided past its deadline is UNAVAILABLE (retry). */
  expire(nowTick: number): void {
    if (this.waiting.length === 0) return;
    const still: WaitingRead[] = [];
    for (const read of this.waiting) {
      if (read.deadlineTick <= nowTick) {
        this.outcomes.push({
          token: read.token,
          kind: 'failed',
          code: 'unavailable',
          message: 'items: a prepared transfer on these items is still undecided; retry',
        });
      } else still.push(read);
    }
    this.waiting = still;
  }

  onLeadershipLost(): void {
    for (const read of this.waiting)
      this.outcomes.push({
        token: read.token,
        kind: 'failed',
        code: 'not-leader',
        message: 'leadership lost during the read',
      });
    this.waiting = [];
  }

  takeOutcomes(): ReadOutcome[] {
    const outcomes = this.outcomes;
    this.outcomes = [];
    return outcomes;
  }
}
