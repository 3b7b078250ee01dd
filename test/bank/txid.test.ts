// Transaction keys: one key per transaction id, never the same key for two ids, whether the
// id fits the numeric form or falls back to the string form.
import { describe, expect, it } from 'vitest';
import { txKey, txName } from '../../node/bank/txid.js';
import type { TxId } from '../../node/gen/shardbank/v1/peer.js';

const id = (shard: number, round: number, ordinal: number, seq: number): TxId => ({ shard, round, ordinal, seq });

describe('txKey', () => {
  it('is a number for the usual ids and the same for equal ids', () => {
    expect(typeof txKey(id(2, 7, 1, 12_345))).toBe('number');
    expect(txKey(id(2, 7, 1, 12_345))).toBe(txKey({ ...id(2, 7, 1, 12_345) }));
  });

  it('falls back to the string form past any field bound', () => {
    for (const t of [id(64, 0, 0, 0), id(0, 1024, 0, 0), id(0, 0, 32, 0), id(0, 0, 0, 2 ** 32)])
      expect(txKey(t)).toBe(txName(t));
  });

  it('gives distinct keys to distinct ids, at and around every field bound', () => {
    const values = {
      shard: [0, 1, 62, 63, 64, 65],
      round: [0, 1, 1022, 1023, 1024, 5000],
      ordinal: [0, 1, 30, 31, 32],
      seq: [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 40],
    };
    const keys = new Map<number | string, string>();
    for (const shard of values.shard)
      for (const round of values.round)
        for (const ordinal of values.ordinal)
          for (const seq of values.seq) {
            const t = id(shard, round, ordinal, seq);
            const key = txKey(t);
            if (typeof key === 'number') expect(Number.isSafeInteger(key)).toBe(true);
            const earlier = keys.get(key);
            expect(earlier, `${txName(t)} and ${earlier} share key ${key}`).toBeUndefined();
            keys.set(key, txName(t));
          }
    expect(keys.size).toBe(6 * 6 * 5 * 5);
  });
});
