import { describe, expect, it } from 'vitest';
import { backoffDelayMs } from '../../node/client/backoff.js';
import { EndpointsError, formatEndpoints, parseEndpoints } from '../../node/client/endpoints.js';
import { parseLeaderHint } from '../../node/client/grpc-call.js';
import { mergeClusterStatus, statusJson, type ReplicaProbe } from '../../node/client/status-view.js';
import { checkAmount, checkTransferInput, parseIntegerArgument } from '../../node/client/transfer-input.js';
import type { ReplicaStatus } from '../../node/gen/shardbank/v1/bank.js';

const topology = { shards: 2, itemsPerShard: 3000, replicasPerShard: 3, initialBalance: 10 };

describe('endpoints', () => {
  it('parses shards and replicas and formats them back', () => {
    const text = '127.0.0.1:1,127.0.0.1:2;host-a:3,[::1]:4';
    expect(parseEndpoints(text)).toEqual([
      ['127.0.0.1:1', '127.0.0.1:2'],
      ['host-a:3', '[::1]:4'],
    ]);
    expect(formatEndpoints(parseEndpoints(text))).toBe(text);
  });
  it('names the bad part', () => {
    expect(() => parseEndpoints('')).toThrow(EndpointsError);
    expect(() => parseEndpoints('a:1;b')).toThrow(/shard 1: "b" is not host:port/);
    expect(() => parseEndpoints('a:99999')).toThrow(/not host:port/);
  });
});

describe('transfer input', () => {
  it('accepts positive integers only, naming the field', () => {
    expect(checkAmount(5, 10)).toEqual({ ok: true });
    for (const bad of [1.5, 0, -1, '5', Number.NaN]) {
      const check = checkAmount(bad, 10);
      expect(check.ok).toBe(false);
      if (!check.ok) expect(check.message).toMatch(/^amount: must be a positive integer/);
    }
    expect(checkAmount(11, 10)).toMatchObject({ ok: false, message: 'amount: must be at most 10, got 11' });
  });
  it('checks items and from != to', () => {
    expect(checkTransferInput(topology, { from: 1, to: 6000, amount: 1 }, 100)).toEqual({ ok: true });
    expect(checkTransferInput(topology, { from: 6001, to: 1, amount: 1 }, 100)).toMatchObject({
      ok: false,
      field: 'from',
    });
    expect(checkTransferInput(topology, { from: 3, to: 3, amount: 1 }, 100)).toMatchObject({ ok: false, field: 'to' });
  });
  it('parses command-line numbers without guessing', () => {
    expect(parseIntegerArgument('10')).toBe(10);
    expect(parseIntegerArgument('1.5')).toBe(1.5);
    expect(parseIntegerArgument('-1')).toBe(-1);
    expect(parseIntegerArgument('1e3')).toBe('1e3');
    expect(parseIntegerArgument('abc')).toBe('abc');
  });
});

describe('leader hint and backoff', () => {
  it('parses the shardbank-leader metadata', () => {
    expect(parseLeaderHint('2,10.0.0.1:50051')).toEqual({ ordinal: 2, address: '10.0.0.1:50051' });
    expect(parseLeaderHint('1')).toEqual({ ordinal: 1, address: undefined });
    expect(parseLeaderHint('x,y')).toBeUndefined();
  });
  it('backs off with jitter below the cap', () => {
    const policy = { baseMs: 10, capMs: 100 };
    expect(backoffDelayMs(policy, 0, () => 0)).toBe(5);
    expect(backoffDelayMs(policy, 0, () => 0.999)).toBeLessThanOrEqual(10);
    expect(backoffDelayMs(policy, 30, () => 0.999)).toBeLessThanOrEqual(100);
    expect(backoffDelayMs(policy, 30, () => 0)).toBe(50);
  });
});

function status(shard: number, ordinal: number, role: string, round: number, commitIndex = 10): ReplicaStatus {
  return {
    shard,
    ordinal,
    role,
    ready: true,
    address: 'ignored',
    commitIndex,
    appliedIndex: commitIndex,
    ballot: { round, ordinal: role === 'leader' ? ordinal : 0 },
    leaderOrdinal: -1,
    inflightTransactions: 0,
    pid: 100 + ordinal,
    snapshotIndex: 0,
    shardTotal: 0,
    voting: 'voter',
    memberRole: 'voter',
    memberId: 0,
    voters: [],
    learners: [],
    membershipChangeInFlight: false,
  };
}

describe('status view', () => {
  const probes: ReplicaProbe[] = [
    { shard: 0, ordinal: 0, address: 'h:1', status: status(0, 0, 'leader', 2) },
    { shard: 0, ordinal: 1, address: 'h:2', status: status(0, 1, 'leader', 3) },
    { shard: 0, ordinal: 2, address: 'h:3', status: undefined, pid: 77 },
    { shard: 1, ordinal: 0, address: 'h:4', status: status(1, 0, 'follower', 1) },
  ];

  it('takes the highest-ballot leader and marks silent replicas down', () => {
    const view = mergeClusterStatus('bank', topology, probes);
    expect(view.shards[0]!.leader).toEqual({ ordinal: 1, ballot: [3, 1], address: 'h:2' });
    expect(view.shards[0]!.replicas[2]).toMatchObject({ role: 'down', ready: false, pid: 77 });
    expect(view.shards[1]!.leader).toBeNull();
  });

  it('renders exactly the SPEC status --json shape', () => {
    const json = statusJson(mergeClusterStatus('bank', topology, probes), true) as {
      cluster: string;
      shards: Record<string, unknown>[];
    };
    expect(json.cluster).toBe('bank');
    const shard = json.shards[0]!;
    expect(Object.keys(shard)).toEqual(['shard', 'items', 'leader', 'replicas']);
    expect(shard.items).toEqual([1, 3000]);
    expect(json.shards[1]!.items).toEqual([3001, 6000]);
    expect(shard.leader).toEqual({ ordinal: 1, ballot: [3, 1], address: 'h:2' });
    expect((shard.replicas as object[])[0]).toEqual({
      ordinal: 0,
      role: 'leader',
      ready: true,
      address: 'h:1',
      pid: 100,
      commitIndex: 10,
    });
    const remote = statusJson(mergeClusterStatus('bank', topology, probes), false) as {
      shards: { replicas: object[] }[];
    };
    expect(Object.keys(remote.shards[0]!.replicas[0]!)).toEqual(['ordinal', 'role', 'ready', 'address', 'commitIndex']);
  });
});
