// Unit tests of the exactly-once session table: bounds, watermarks and eviction.
import { describe, expect, it } from 'vitest';
import { SessionTable, SESSION_LIMITS, transferDigest } from '../../node/bank/session-table.js';

const final = (index: number) => ({ digest: transferDigest(1, 2, 1), state: 'final' as const, outcome: 1, index, txid: undefined });

describe('session table', () => {
  it('keeps a bounded window per client and refuses ids below its watermark', () => {
    const table = new SessionTable();
    const count = SESSION_LIMITS.resultsPerSessionMax + 10;
    for (let id = 1; id <= count; id += 1) table.record('c', id, final(id));
    expect(table.check('c', 1, transferDigest(1, 2, 1))).toEqual({ kind: 'stale', watermark: 10 });
    expect(table.check('c', 11, transferDigest(1, 2, 1)).kind).toBe('duplicate');
    expect(table.check('c', count + 1, transferDigest(1, 2, 1)).kind).toBe('new');
  });

  it('never raises the watermark past an attempt still in flight, which may still finish', () => {
    const table = new SessionTable();
    table.record('c', 1, { digest: 7, state: 'inflight', outcome: 0, index: 1, txid: undefined });
    for (let id = 2; id <= SESSION_LIMITS.resultsPerSessionMax + 50; id += 1) table.record('c', id, final(id));
    // While in flight the request is still known (a retry joins it, it is not refused)...
    expect(table.check('c', 1, 7).kind).toBe('duplicate');
    expect(table.get('c', 1)?.state).toBe('inflight');
    // ...and its late outcome can be recorded; then the full window trims it like any other.
    expect(() => table.record('c', 1, { digest: 7, state: 'final', outcome: 1, index: 99, txid: undefined })).not.toThrow();
    expect(table.check('c', 1, 7).kind).toBe('stale');
  });

  it('forgets acknowledged outcomes and refuses their ids, but never past an attempt in flight', () => {
    const table = new SessionTable();
    for (let id = 1; id <= 5; id += 1) table.record('c', id, final(id));
    table.record('c', 6, { digest: 7, state: 'inflight', outcome: 0, index: 6, txid: undefined });
    table.acknowledge('c', 8);
    expect(table.check('c', 5, transferDigest(1, 2, 1))).toEqual({ kind: 'stale', watermark: 5 });
    expect(table.check('c', 6, 7).kind).toBe('duplicate');
    expect(table.get('c', 3)).toBeUndefined();
  });

  it('evicts whole sessions deterministically and remembers their watermark', () => {
    const table = new SessionTable();
    for (let c = 0; c <= SESSION_LIMITS.sessionsMax; c += 1) table.record(`client-${c}`, 5, final(c));
    expect(table.size).toBe(SESSION_LIMITS.sessionsMax);
    // The least recently used session (client-0) went; its ids at or below 5 stay refused.
    expect(table.check('client-0', 5, transferDigest(1, 2, 1))).toEqual({ kind: 'stale', watermark: 5 });
    expect(table.check('client-0', 6, transferDigest(1, 2, 1)).kind).toBe('new');
  });

  it('orders sessions by last use, whether a client records once or many times in a row', () => {
    const table = new SessionTable();
    for (let c = 0; c < SESSION_LIMITS.sessionsMax; c += 1) table.record(`client-${c}`, 1, final(c));
    // client-0 used again, several times running (a batch): it is now the most recent...
    for (let id = 2; id <= 4; id += 1) table.record('client-0', id, final(id));
    table.record('client-1', 2, final(2));
    table.record('client-1', 3, final(3));
    table.record('newcomer-a', 1, final(1));
    // ...so the two least recently used, client-2 and client-3, are the ones evicted.
    table.record('newcomer-b', 1, final(1));
    expect(table.size).toBe(SESSION_LIMITS.sessionsMax);
    for (const evicted of ['client-2', 'client-3']) expect(table.get(evicted, 1)).toBeUndefined();
    for (const kept of ['client-0', 'client-1', 'client-4', 'newcomer-a', 'newcomer-b']) expect(table.get(kept, 1)).toBeDefined();
    expect(table.get('client-0', 4)).toBeDefined();
    // A restored table (a snapshot) keeps the same order, and so the same next victim.
    const restoredRecords = table.toRecords();
    const restored = SessionTable.fromRecords(restoredRecords.sessions, restoredRecords.evicted);
    for (const copy of [table, restored]) copy.record('newcomer-b', 2, final(2));
    for (const copy of [table, restored]) copy.record('newcomer-c', 1, final(1));
    for (const copy of [table, restored]) expect(copy.get('client-4', 1)).toBeUndefined();
    expect(restored.fingerprint()).toBe(table.fingerprint());
  });
});

describe('transfer digest', () => {
  it('stays FNV-1a over the decimal text of from, to and amount (sessions and snapshots store it)', () => {
    // Values of that definition, computed independently of transferDigest: a change to the
    // function (an "optimization" too) that alters any stored digest fails here.
    const pinned: [number, number, number, number][] = [
      [1001, 3001, 10, 1_336_579_794],
      [0, 0, 1, 3_633_135_568],
      [1, 2, 1, 772_352_771],
      [9000, 1, 1_000_000_000, 3_244_545_072],
      [2 ** 53 - 1, 10 ** 15, 2 ** 53 - 1, 2_760_739_686],
      [1.5, -1, 7, 1_533_390_168],
    ];
    for (const [from, to, amount, digest] of pinned) expect(transferDigest(from, to, amount), `${from} ${to} ${amount}`).toBe(digest);
  });
});
