// Transaction ids name one 2PC attempt: (coordinator shard, coordinator leader's ballot, seq).
// Within one coordinator shard they only grow over time, because every new leader holds a
// higher ballot; that order is what the garbage-collection watermarks rely on.
import type { TxId } from '../gen/shardbank/v1/peer.js';

export type { TxId };

export function compareTxIds(a: TxId, b: TxId): number {
  if (a.round !== b.round) return a.round < b.round ? -1 : 1;
  if (a.ordinal !== b.ordinal) return a.ordinal < b.ordinal ? -1 : 1;
  if (a.seq !== b.seq) return a.seq < b.seq ? -1 : 1;
  return 0;
}

export function txKey(t: TxId): string {
  return `${t.shard}.${t.round}.${t.ordinal}.${t.seq}`;
}

export function txIdOf(t: TxId | undefined): TxId {
  return t ?? { shard: 0, round: 0, ordinal: 0, seq: 0 };
}

export const ZERO_TXID: TxId = Object.freeze({ shard: 0, round: 0, ordinal: 0, seq: 0 });

/** The smallest id strictly above `t` (watermarks are exclusive bounds). */
export function nextTxId(t: TxId): TxId {
  return { shard: t.shard, round: t.round, ordinal: t.ordinal, seq: t.seq + 1 };
}
