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

/**
 * A transaction's key in the maps of the applied state and the leader: a number for every id
 * whose fields fit (seq below 2^32, round below 1024, ordinal below 32, shard below 64: the
 * usual case), a string otherwise. The string form costs four number-to-string conversions, a
 * concatenation and a hash of the new string at every lookup, and lookups run tens of times
 * per transfer on every replica; a number below 2^53 is hashed from its value. Both forms are
 * injective and a given id always gets the same one, so a map holds one key per transaction.
 * Never persisted, never compared across versions: for messages use txName.
 */
export type TxKey = number | string;

const SEQ_SPAN = 2 ** 32;

export function txKey(t: TxId): TxKey {
  const { shard, round, ordinal, seq } = t;
  if (seq >>> 0 === seq && (round & 1023) === round && (ordinal & 31) === ordinal && (shard & 63) === shard)
    return ((round * 32 + ordinal) * 64 + shard) * SEQ_SPAN + seq;
  return `${shard}.${round}.${ordinal}.${seq}`;
}

/** A transaction id for people (errors, logs, traces): shard.round.ordinal.seq. */
export function txName(t: TxId): string {
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
