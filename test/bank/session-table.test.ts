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
});

/** The digest as first written (FNV-1a over String() of each argument): stored values depend on it. */
function referenceDigest(from: number, to: number, amount: number): number {
  let hash = 0x811c9dc5;
  for (const value of [from, to, amount]) {
    const text = String(value);
    for (let i = 0; i < text.length; i += 1) {
      hash ^= text.charCodeAt(i);
      hash = Math.imul(hash, 0x01000193) >>> 0;
    }
    hash ^= 0x2c;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

describe('transfer digest', () => {
  it('equals the string-based digest that sessions and snapshots already hold, for every kind of value', () => {
    const edges = [0, 1, 9, 10, 11, 99, 100, 999, 1000, 1001, 3001, 9000, 10 ** 9, 2 ** 31, 2 ** 32, 10 ** 15, 2 ** 53 - 1, 1.5, -1];
    for (const from of edges) for (const to of edges) for (const amount of [1, 7, 10, 1_000_000_000, 2 ** 53 - 1]) {
      expect(transferDigest(from, to, amount), `${from} ${to} ${amount}`).toBe(referenceDigest(from, to, amount));
    }
    let seed = 12345;
    const next = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0);
    for (let i = 0; i < 20_000; i += 1) {
      const from = next() % 100_000;
      const to = (next() * 2 ** 21 + next()) % Number.MAX_SAFE_INTEGER;
      const amount = 1 + (next() % 1_000_000_000);
      expect(transferDigest(from, to, amount)).toBe(referenceDigest(from, to, amount));
    }
    // Pinned, so that a change of both functions together is caught too.
    expect(transferDigest(1001, 3001, 10)).toBe(referenceDigest(1001, 3001, 10));
    expect(transferDigest(1001, 3001, 10)).toBe(1_336_579_794);
  });
});

