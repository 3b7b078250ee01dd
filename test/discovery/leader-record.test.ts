import { describe, expect, it } from 'vitest';
import {
  compareBallots,
  decode,
  encode,
  isValidNameToken,
  keyFor,
  keyWildcardFor,
  leaderBucketName,
  recordBytesMax,
  sameRecord,
  shardFromLastToken,
  subjectFor,
  subjectWildcardFor,
  supersedes,
  validate,
  type LeaderRecord,
} from '../../node/discovery/leader-record.js';
import { InvariantViolation } from '../../node/util/assert.js';

function record(overrides: Partial<LeaderRecord> = {}): LeaderRecord {
  return {
    cluster: 'bank',
    namespace: 'default',
    shard: 1,
    ballot: { round: 3, ordinal: 1 },
    leaderOrdinal: 1,
    address: '127.0.0.1:50052',
    incarnation: 'uid-a',
    announcedAtMs: 1_000,
    ...overrides,
  };
}

describe('names', () => {
  it('builds the subject, key and bucket of docs/CONTRACTS.md', () => {
    expect(subjectFor('default', 'bank', 2)).toBe('shardbank.default.bank.leader.2');
    expect(keyFor('default', 'bank', 2)).toBe('default.bank.2');
    expect(subjectWildcardFor('ns', 'bank')).toBe('shardbank.ns.bank.leader.*');
    expect(keyWildcardFor('ns', 'bank')).toBe('ns.bank.*');
    expect(leaderBucketName).toBe('shardbank-leaders');
  });

  it('refuses names that would change the subject hierarchy', () => {
    for (const bad of ['', 'a.b', 'a b', '*', '>', 'a*']) {
      expect(isValidNameToken(bad)).toBe(false);
      expect(() => subjectFor(bad, 'bank', 0)).toThrow(InvariantViolation);
      expect(() => keyFor('default', bad, 0)).toThrow(InvariantViolation);
    }
    expect(() => keyFor('default', 'bank', -1)).toThrow(InvariantViolation);
    expect(() => subjectFor('default', 'bank', 1.5)).toThrow(InvariantViolation);
    expect(isValidNameToken('my-bank_2')).toBe(true);
  });

  it('reads the shard from the last token of a subject or key', () => {
    expect(shardFromLastToken('shardbank.default.bank.leader.7')).toBe(7);
    expect(shardFromLastToken('default.bank.0')).toBe(0);
    expect(shardFromLastToken('default.bank.07')).toBeUndefined();
    expect(shardFromLastToken('default.bank.x')).toBeUndefined();
    expect(shardFromLastToken('default.bank.')).toBeUndefined();
  });
});

describe('encode and decode', () => {
  it('round-trips a record, as bytes and as a string', () => {
    const r = record();
    const bytes = encode(r);
    expect(decode(bytes)).toEqual({ ok: true, value: r });
    expect(decode(new TextDecoder().decode(bytes))).toEqual({ ok: true, value: r });
  });

  it('writes exactly the fields of the contract', () => {
    const withExtra = { ...record(), secret: 'x' } as LeaderRecord;
    const json = JSON.parse(new TextDecoder().decode(encode(withExtra))) as Record<string, unknown>;
    expect(Object.keys(json).sort()).toEqual(
      ['address', 'announcedAtMs', 'ballot', 'cluster', 'incarnation', 'leaderOrdinal', 'namespace', 'shard'].sort(),
    );
  });

  it('drops unknown fields when decoding', () => {
    const text = JSON.stringify({ ...record(), future: true, ballot: { round: 3, ordinal: 1, x: 1 } });
    const decoded = decode(text);
    expect(decoded).toEqual({ ok: true, value: record() });
  });

  it('asserts on encoding an invalid record (a caller bug)', () => {
    expect(() => encode(record({ address: '' }))).toThrow(InvariantViolation);
    expect(() => encode(record({ ballot: { round: -1, ordinal: 0 } }))).toThrow(InvariantViolation);
  });

  it('returns an error value for garbage, never throws', () => {
    const garbage: (Uint8Array | string)[] = [
      '',
      'not json',
      'null',
      '[]',
      '42',
      '"text"',
      '{}',
      new Uint8Array([0xff, 0xfe, 0x00]),
      'x'.repeat(recordBytesMax + 1),
    ];
    for (const input of garbage) {
      const decoded = decode(input);
      expect(decoded.ok).toBe(false);
    }
  });

  it('names the offending field', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ cluster: 'a.b' }, 'cluster'],
      [{ namespace: 7 }, 'namespace'],
      [{ shard: -1 }, 'shard'],
      [{ shard: 1.5 }, 'shard'],
      [{ ballot: null }, 'ballot'],
      [{ ballot: { round: 1 } }, 'ballot.ordinal'],
      [{ ballot: { round: '1', ordinal: 0 } }, 'ballot.round'],
      [{ leaderOrdinal: undefined }, 'leaderOrdinal'],
      [{ address: '' }, 'address'],
      [{ incarnation: '' }, 'incarnation'],
      [{ announcedAtMs: -5 }, 'announcedAtMs'],
      [{ announcedAtMs: 'now' }, 'announcedAtMs'],
    ];
    for (const [override, field] of cases) {
      const decoded = decode(JSON.stringify({ ...record(), ...override }));
      expect(decoded.ok).toBe(false);
      if (!decoded.ok) expect(decoded.error.startsWith(`${field}:`)).toBe(true);
    }
    expect(validate(record())).toBeUndefined();
    expect(validate('record')).toMatch(/^record:/);
  });
});

describe('supersedes', () => {
  it('accepts anything when nothing is known', () => {
    expect(supersedes(record(), undefined)).toBe(true);
    expect(supersedes(record({ incarnation: 'old' }), undefined, 'new')).toBe(true);
  });

  it('same incarnation: a higher round wins, whatever the ordinal', () => {
    const existing = record({ ballot: { round: 3, ordinal: 2 } });
    expect(supersedes(record({ ballot: { round: 4, ordinal: 0 } }), existing)).toBe(true);
    expect(supersedes(record({ ballot: { round: 2, ordinal: 9 } }), existing)).toBe(false);
  });

  it('same incarnation: equal rounds are ordered by ordinal', () => {
    const existing = record({ ballot: { round: 3, ordinal: 1 } });
    expect(supersedes(record({ ballot: { round: 3, ordinal: 2 } }), existing)).toBe(true);
    expect(supersedes(record({ ballot: { round: 3, ordinal: 0 } }), existing)).toBe(false);
  });

  it('same incarnation: an equal ballot does not supersede, even when announced later', () => {
    const existing = record();
    expect(supersedes(record({ announcedAtMs: 99_999, address: 'elsewhere:1' }), existing)).toBe(false);
    expect(supersedes(existing, existing)).toBe(false);
  });

  it('same incarnation: the announcement time is ignored', () => {
    const existing = record({ ballot: { round: 5, ordinal: 0 }, announcedAtMs: 1 });
    expect(supersedes(record({ ballot: { round: 4, ordinal: 0 }, announcedAtMs: 2 }), existing)).toBe(false);
  });

  it('different incarnations: the current incarnation wins, whatever the ballots and times', () => {
    const old = record({ incarnation: 'old', ballot: { round: 90, ordinal: 2 }, announcedAtMs: 5_000 });
    const fresh = record({ incarnation: 'new', ballot: { round: 1, ordinal: 0 }, announcedAtMs: 1_000 });
    expect(supersedes(fresh, old, 'new')).toBe(true);
    expect(supersedes(old, fresh, 'new')).toBe(false);
  });

  it('different incarnations, no current one: the more recent announcement wins', () => {
    const earlier = record({ incarnation: 'a', ballot: { round: 90, ordinal: 2 }, announcedAtMs: 1_000 });
    const later = record({ incarnation: 'b', ballot: { round: 1, ordinal: 0 }, announcedAtMs: 2_000 });
    expect(supersedes(later, earlier)).toBe(true);
    expect(supersedes(earlier, later)).toBe(false);
    expect(supersedes(record({ incarnation: 'c', announcedAtMs: 1_000 }), earlier)).toBe(false);
  });

  it('different incarnations, neither current: falls back to the announcement time', () => {
    const earlier = record({ incarnation: 'a', announcedAtMs: 1_000 });
    const later = record({ incarnation: 'b', announcedAtMs: 2_000 });
    expect(supersedes(later, earlier, 'z')).toBe(true);
    expect(supersedes(earlier, later, 'z')).toBe(false);
  });

  it('is a strict order within an incarnation (never both ways)', () => {
    const ballots = [0, 1, 2].flatMap((round) => [0, 1, 2].map((ordinal) => ({ round, ordinal })));
    for (const a of ballots) {
      for (const b of ballots) {
        const ra = record({ ballot: a });
        const rb = record({ ballot: b });
        expect(supersedes(ra, rb) && supersedes(rb, ra)).toBe(false);
        expect(supersedes(ra, rb)).toBe(compareBallots(a, b) > 0);
      }
    }
  });
});

describe('sameRecord', () => {
  it('compares every field', () => {
    expect(sameRecord(record(), record())).toBe(true);
    expect(sameRecord(record(), record({ announcedAtMs: 2 }))).toBe(false);
    expect(sameRecord(record(), record({ address: 'x:1' }))).toBe(false);
    expect(sameRecord(record(), record({ ballot: { round: 3, ordinal: 2 } }))).toBe(false);
  });
});
