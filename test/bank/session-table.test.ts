// Unit tests of the exactly-once session table: epochs, bounds, watermarks and eviction.
import { describe, expect, it } from 'vitest';
import { SessionTable, SESSION_LIMITS, transferDigest, type SessionResult } from '../../node/bank/session-table.js';

const DIGEST = transferDigest(1, 2, 1);
const final = (index: number): SessionResult => ({
  digest: DIGEST,
  state: 'final',
  outcome: 1,
  index,
  txid: undefined,
});
const inflight = (index: number): SessionResult => ({
  digest: DIGEST,
  state: 'inflight',
  outcome: 0,
  index,
  txid: undefined,
});

/** A table with client `c` open; returns the table and c's epoch. */
function tableWith(clientId = 'c'): { table: SessionTable; epoch: number } {
  const table = new SessionTable();
  return { table, epoch: table.open(clientId).epoch };
}

function restored(table: SessionTable): SessionTable {
  const { sessions, nextEpoch } = table.toRecords();
  return SessionTable.fromRecords(sessions, nextEpoch);
}

describe('session table: epochs (issue 15, bug 4)', () => {
  it('opening is effect-free and repeatable: the same epoch until the session is forgotten', () => {
    const table = new SessionTable();
    const first = table.open('c');
    expect(first).toEqual({ epoch: 1, created: true });
    table.record('c', 1, final(1));
    expect(table.open('c')).toEqual({ epoch: 1, created: false });
    expect(table.get('c', 1)?.state).toBe('final');
    expect(table.open('d')).toEqual({ epoch: 2, created: true });
  });

  it("a request naming no epoch, a never-issued one, or another client's, is refused", () => {
    const { table, epoch } = tableWith('c');
    table.open('d');
    expect(table.check('c', 0, 1, DIGEST)).toMatchObject({ kind: 'expired', issued: false });
    expect(table.check('c', 99, 1, DIGEST)).toMatchObject({ kind: 'expired', issued: false });
    expect(table.check('c', epoch + 1, 1, DIGEST)).toMatchObject({ kind: 'expired', issued: true, current: epoch });
    expect(table.check('nobody', epoch, 1, DIGEST)).toMatchObject({ kind: 'expired', current: undefined });
    expect(table.check('c', epoch, 1, DIGEST).kind).toBe('new');
  });

  it('a session restored from a snapshot written before epochs (epoch 0) answers nothing until opened, then keeps its outcomes', () => {
    const result = { requestId: 4, digest: DIGEST, outcome: 1, index: 9, txid: undefined, final: true };
    const legacy = SessionTable.fromRecords(
      [{ clientId: 'old', evictedBelow: 2, lastUsedIndex: 0, epoch: 0, results: [result] }],
      0,
    );
    expect(legacy.check('old', 0, 4, DIGEST)).toMatchObject({ kind: 'expired', issued: false });
    expect(legacy.open('old')).toEqual({ epoch: 1, created: false });
    expect(legacy.check('old', 1, 4, DIGEST)).toMatchObject({ kind: 'duplicate', result: { index: 9 } });
    expect(legacy.check('old', 1, 2, DIGEST).kind).toBe('stale');
    expect(legacy.open('new').epoch).toBe(2);
  });

  it('an old request id never runs again after more than 110,000 other clients came and went', () => {
    const { table, epoch } = tableWith('victim');
    table.record('victim', 1, final(1));
    let index = 2;
    for (let c = 0; c < 110_001; c += 1) {
      const other = `other-${c}`;
      table.open(other);
      table.record(other, 1, final(index++));
    }
    expect(table.size).toBe(SESSION_LIMITS.sessionsMax);
    // The victim's session is long gone: its retry is refused, not 'new'...
    expect(table.check('victim', epoch, 1, DIGEST)).toMatchObject({
      kind: 'expired',
      issued: true,
      current: undefined,
    });
    // ...also after the victim opens again: the new session has another epoch, and the old
    // epoch stays refused forever.
    const again = table.open('victim');
    expect(again.created).toBe(true);
    expect(again.epoch).not.toBe(epoch);
    expect(table.check('victim', epoch, 1, DIGEST).kind).toBe('expired');
    expect(table.check('victim', again.epoch, 2, DIGEST).kind).toBe('new');
    // A table restored from a snapshot agrees.
    const copy = restored(table);
    expect(copy.check('victim', epoch, 1, DIGEST).kind).toBe('expired');
    expect(copy.open('someone-new').epoch).toBe(table.open('someone-new').epoch);
    expect(copy.fingerprint()).toBe(table.fingerprint());
  });

  it('evicts whole sessions least recently used first, never one with an attempt in flight', () => {
    const table = new SessionTable();
    table.open('busy');
    table.record('busy', 1, inflight(1));
    for (let c = 0; c < SESSION_LIMITS.sessionsMax; c += 1) {
      table.open(`client-${c}`);
      table.record(`client-${c}`, 1, final(c));
    }
    expect(table.size).toBe(SESSION_LIMITS.sessionsMax);
    expect(table.epochOf('busy')).toBe(1);
    expect(table.epochOf('client-0')).toBeUndefined();
    expect(table.epochOf('client-1')).toBeDefined();
  });

  it('orders sessions by last use, whether a client records once or many times in a row', () => {
    const table = new SessionTable();
    for (let c = 0; c < SESSION_LIMITS.sessionsMax; c += 1) {
      table.open(`client-${c}`);
      table.record(`client-${c}`, 1, final(c));
    }
    // client-0 used again, several times running (a batch): it is now the most recent...
    for (let id = 2; id <= 4; id += 1) table.record('client-0', id, final(id));
    table.record('client-1', 2, final(2));
    table.record('client-1', 3, final(3));
    table.open('newcomer-a');
    // ...so the two least recently used, client-2 and client-3, are the ones evicted.
    table.open('newcomer-b');
    expect(table.size).toBe(SESSION_LIMITS.sessionsMax);
    for (const evicted of ['client-2', 'client-3']) expect(table.epochOf(evicted)).toBeUndefined();
    for (const kept of ['client-0', 'client-1', 'client-4', 'newcomer-a', 'newcomer-b'])
      expect(table.epochOf(kept)).toBeDefined();
    expect(table.get('client-0', 4)).toBeDefined();
    // A restored table (a snapshot) keeps the same order, and so the same next victim.
    const copy = restored(table);
    for (const t of [table, copy]) t.record('newcomer-b', 2, final(2));
    for (const t of [table, copy]) t.open('newcomer-c');
    for (const t of [table, copy]) expect(t.epochOf('client-4')).toBeUndefined();
    expect(copy.fingerprint()).toBe(table.fingerprint());
  });
});

describe('session table: watermarks and bounds (issue 15, bug 5)', () => {
  it('keeps a bounded window per client and refuses ids below its watermark', () => {
    const { table, epoch } = tableWith();
    const count = SESSION_LIMITS.resultsPerSessionMax + 10;
    for (let id = 1; id <= count; id += 1) table.record('c', id, final(id));
    expect(table.check('c', epoch, 1, DIGEST)).toEqual({ kind: 'stale', watermark: 10 });
    expect(table.check('c', epoch, 11, DIGEST).kind).toBe('duplicate');
    expect(table.check('c', epoch, count + 1, DIGEST).kind).toBe('new');
  });

  it('an attempt in flight is never trimmed, and its late outcome stays reachable', () => {
    const { table, epoch } = tableWith();
    table.record('c', 1, inflight(1));
    for (let id = 2; id <= SESSION_LIMITS.resultsPerSessionMax + 50; id += 1) table.record('c', id, final(id));
    // While in flight the request is still known (a retry joins it, it is not refused)...
    expect(table.check('c', epoch, 1, DIGEST).kind).toBe('duplicate');
    expect(table.get('c', 1)?.state).toBe('inflight');
    // ...and its late outcome is recorded and answers a retry (it was decided just now)...
    table.record('c', 1, final(99_999));
    expect(table.check('c', epoch, 1, DIGEST)).toMatchObject({
      kind: 'duplicate',
      result: { state: 'final', index: 99_999 },
    });
    // ...until a full window of newer outcomes has pushed it out like any other.
    for (let id = 3000; id < 3000 + SESSION_LIMITS.resultsPerSessionMax; id += 1) table.record('c', id, final(id));
    expect(table.check('c', epoch, 1, DIGEST).kind).toBe('stale');
  });

  it('trimming never makes an attempt recorded out of id order unreachable', () => {
    // Fails on 73bae90: results were assumed to arrive in id order, so trimming id 5000
    // raised the watermark past id 1, still in flight, and its retry was refused.
    const { table, epoch } = tableWith();
    for (let id = 2; id <= SESSION_LIMITS.resultsPerSessionMax + 1; id += 1) table.record('c', id, final(id));
    table.record('c', 1, inflight(9_999));
    table.record('c', 5000, final(10_000));
    expect(table.check('c', epoch, 1, DIGEST)).toMatchObject({ kind: 'duplicate', result: { state: 'inflight' } });
    table.record('c', 1, final(10_001));
    expect(table.check('c', epoch, 1, DIGEST)).toMatchObject({ kind: 'duplicate', result: { state: 'final' } });
  });

  it('an acknowledgement never makes an attempt recorded after a later id unreachable', () => {
    // Fails on 73bae90: acknowledge() stopped at the first result above the bound (id 3),
    // never saw id 1 in flight behind it, and raised the watermark past it.
    const { table, epoch } = tableWith();
    table.record('c', 3, final(1));
    table.record('c', 1, inflight(2));
    table.acknowledge('c', epoch, 2);
    expect(table.check('c', epoch, 1, DIGEST)).toMatchObject({ kind: 'duplicate', result: { state: 'inflight' } });
    expect(table.check('c', epoch, 2, DIGEST)).toEqual({ kind: 'stale', watermark: 2 });
    expect(table.check('c', epoch, 3, DIGEST).kind).toBe('duplicate');
    table.record('c', 1, final(4));
    expect(table.check('c', epoch, 1, DIGEST)).toMatchObject({
      kind: 'duplicate',
      result: { state: 'final', index: 4 },
    });
  });

  it('forgets acknowledged outcomes and refuses their ids; an acknowledgement under another epoch does nothing', () => {
    const { table, epoch } = tableWith();
    for (let id = 1; id <= 5; id += 1) table.record('c', id, final(id));
    table.acknowledge('c', epoch + 7, 5);
    expect(table.get('c', 3)).toBeDefined();
    table.acknowledge('c', epoch, 4);
    expect(table.check('c', epoch, 4, DIGEST)).toEqual({ kind: 'stale', watermark: 4 });
    expect(table.get('c', 3)).toBeUndefined();
    expect(table.check('c', epoch, 5, DIGEST).kind).toBe('duplicate');
    // A far jump (ids spread over shards, clock-based ids) takes the other path, same result.
    table.record('c', 1_000_000, final(9));
    table.acknowledge('c', epoch, 999_999);
    expect(table.get('c', 5)).toBeUndefined();
    expect(table.check('c', epoch, 1_000_000, DIGEST).kind).toBe('duplicate');
  });

  it('interleaved concurrent requests of one client (a batch with one client id) keep every kept outcome reachable', () => {
    // Ids recorded in a shuffled order, a third of them first in flight and decided later, in
    // another order; the window trims all along. Every id whose result is kept answers with
    // it; every other id at or below the watermark is refused; nothing in flight is dropped.
    const { table, epoch } = tableWith();
    const total = SESSION_LIMITS.resultsPerSessionMax * 3;
    let seed = 12345;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    // Requests of one client arrive out of order within a span of 64 (concurrent callers).
    const ids = Array.from({ length: total }, (_, i) => ({ id: i + 1, key: i + random() * 64 }))
      .sort((a, b) => a.key - b.key)
      .map((entry) => entry.id);
    const pending: number[] = [];
    let index = 0;
    let refused = 0;
    for (const id of ids) {
      index += 1;
      // As the state machine does: a new id below the watermark is refused (never run).
      const check = table.check('c', epoch, id, DIGEST);
      if (check.kind === 'stale') {
        refused += 1;
        continue;
      }
      expect(check.kind).toBe('new');
      if (random() < 0.33) {
        table.record('c', id, inflight(index));
        pending.push(id);
      } else table.record('c', id, final(index));
      while (pending.length > 40 || (pending.length > 0 && random() < 0.3)) {
        const decided = pending.splice(Math.floor(random() * pending.length), 1)[0]!;
        expect(table.check('c', epoch, decided, DIGEST)).toMatchObject({
          kind: 'duplicate',
          result: { state: 'inflight' },
        });
        table.record('c', decided, final(++index));
        expect(table.check('c', epoch, decided, DIGEST)).toMatchObject({
          kind: 'duplicate',
          result: { state: 'final', index },
        });
      }
    }
    for (const id of pending)
      expect(table.check('c', epoch, id, DIGEST)).toMatchObject({ kind: 'duplicate', result: { state: 'inflight' } });
    let kept = 0;
    for (let id = 1; id <= total; id += 1) {
      const check = table.check('c', epoch, id, DIGEST);
      expect(['duplicate', 'stale']).toContain(check.kind);
      if (check.kind === 'duplicate') kept += 1;
    }
    expect(kept).toBeLessThanOrEqual(SESSION_LIMITS.resultsPerSessionMax + pending.length);
    expect(kept).toBeGreaterThanOrEqual(SESSION_LIMITS.resultsPerSessionMax);
    expect(refused).toBe(0);
    // A restored table trims the same way from here on.
    const copy = restored(table);
    for (const t of [table, copy]) for (let id = total + 1; id <= total + 100; id += 1) t.record('c', id, final(id));
    expect(copy.fingerprint()).toBe(table.fingerprint());
  });

  it('past the total bound the least recently used sessions lose their outcomes, not their sessions', () => {
    const table = new SessionTable();
    const perSession = SESSION_LIMITS.resultsPerSessionMax;
    const sessions = Math.ceil(SESSION_LIMITS.resultsTotalMax / perSession) + 2;
    const epochs: number[] = [];
    for (let c = 0; c < sessions; c += 1) {
      epochs.push(table.open(`c${c}`).epoch);
      if (c === 0) table.record('c0', 1, inflight(0));
      for (let id = 2; id <= perSession; id += 1) table.record(`c${c}`, id, final(id));
    }
    expect(table.size).toBe(sessions);
    let kept = 0;
    for (let c = 0; c < sessions; c += 1)
      for (let id = 1; id <= perSession; id += 1) if (table.get(`c${c}`, id)) kept += 1;
    expect(kept).toBeLessThanOrEqual(SESSION_LIMITS.resultsTotalMax);
    // The oldest session is still open under its epoch: its attempt in flight is kept, its old
    // finished ids are refused (never run again), and its next request runs.
    expect(table.check('c0', epochs[0]!, 1, DIGEST)).toMatchObject({
      kind: 'duplicate',
      result: { state: 'inflight' },
    });
    expect(table.check('c0', epochs[0]!, 2, DIGEST).kind).toBe('stale');
    expect(table.check('c0', epochs[0]!, perSession + 1, DIGEST).kind).toBe('new');
    // The newest one kept everything.
    expect(table.check(`c${sessions - 1}`, epochs[sessions - 1]!, 2, DIGEST).kind).toBe('duplicate');
    const copy = restored(table);
    for (const t of [table, copy]) t.record('c1', perSession + 1, final(1));
    expect(copy.fingerprint()).toBe(table.fingerprint());
  });

  it('a session whose attempts are all in flight grows past the window only by those attempts', () => {
    const { table, epoch } = tableWith();
    for (let id = 1; id <= 100; id += 1) table.record('c', id, inflight(id));
    for (let id = 101; id <= 100 + SESSION_LIMITS.resultsPerSessionMax * 2; id += 1) table.record('c', id, final(id));
    let kept = 0;
    for (let id = 1; id <= 100 + SESSION_LIMITS.resultsPerSessionMax * 2; id += 1) if (table.get('c', id)) kept += 1;
    expect(kept).toBe(SESSION_LIMITS.resultsPerSessionMax);
    for (let id = 1; id <= 100; id += 1) expect(table.check('c', epoch, id, DIGEST).kind).toBe('duplicate');
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
    for (const [from, to, amount, digest] of pinned)
      expect(transferDigest(from, to, amount), `${from} ${to} ${amount}`).toBe(digest);
  });
});

describe('transferDigest', () => {
  // The digest is replicated state (snapshots keep it, and a retry is checked against it), so
  // its value may never change between versions: replicas of two versions during a rolling
  // update must judge the same retry alike. These values are those of the first version.
  it('keeps the values of the first version (FNV-1a over the decimal text of each argument)', () => {
    expect(transferDigest(0, 0, 0)).toBe(3197064569);
    expect(transferDigest(1001, 3001, 1)).toBe(4065402710);
    expect(transferDigest(2999, 5, 1_000_000_000)).toBe(3090159378);
    expect(transferDigest(123456789, 42, Number.MAX_SAFE_INTEGER)).toBe(4247195120);
    expect(transferDigest(1, 2, 1.5)).toBe(3153426984);
  });

  it('differs when any argument differs', () => {
    const base = transferDigest(10, 20, 30);
    expect(transferDigest(11, 20, 30)).not.toBe(base);
    expect(transferDigest(10, 21, 30)).not.toBe(base);
    expect(transferDigest(10, 20, 31)).not.toBe(base);
    expect(transferDigest(102, 0, 30)).not.toBe(base); // the separator keeps "10","20" apart from "102","0"
  });
});
