// The CLI commands run in process against scripted gRPC replicas (--endpoints).
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS, runCli } from '../../node/cli/main.js';
import { Outcome } from '../../node/gen/shardbank/v1/bank.js';
import {
  committed,
  FAKE_SESSION_EPOCH,
  replicaStatus,
  startFakeReplica,
  unavailable,
  type FakeReplica,
} from '../client/fake-bank-server.js';
import { captureIo } from './capture-io.js';

let replicas: FakeReplica[] = [];
let endpoints = '';

beforeAll(async () => {
  replicas = await Promise.all(Array.from({ length: 4 }, () => startFakeReplica()));
  endpoints = `${replicas[0]!.address},${replicas[1]!.address};${replicas[2]!.address},${replicas[3]!.address}`;
  replicas.forEach((replica, index) => {
    const shard = Math.floor(index / 2);
    const ordinal = index % 2;
    replica.behaviour = {
      transfer: (request) => {
        if (request.sessionEpoch === 66)
          return {
            error: {
              code: status.FAILED_PRECONDITION,
              details: `session expired: client ${request.clientId}'s session 66 on this shard was forgotten`,
            },
          };
        if (request.amount > 100)
          return {
            value: { outcome: Outcome.INSUFFICIENT_FUNDS, decisionIndex: 3, coordinatorShard: shard, message: '' },
          };
        return ordinal === 0
          ? committed(12, shard)
          : unavailable('not the leader', `0,${replicas[shard * 2]!.address}`);
      },
      batchTransfer: (request) =>
        ordinal === 0
          ? {
              value: {
                results: request.entries.map(() => ({
                  outcome: Outcome.COMMITTED,
                  decisionIndex: 12,
                  coordinatorShard: shard,
                  message: '',
                })),
              },
            }
          : unavailable('not the leader', `0,${replicas[shard * 2]!.address}`),
      getBalance: (request) => ({
        value: {
          balances: request.items.map((item) => ({ item, balance: item === 1001 ? 0 : 20 })),
          shard,
          replica: ordinal,
          indexLag: 0,
          msSinceLeader: 0,
          appliedIndex: 4,
        },
      }),
      clusterStatus: () =>
        replicaStatus(shard, ordinal, ordinal === 0 ? 'leader' : 'follower', { round: 2, commitIndex: 42 }),
    };
  });
});

afterAll(async () => {
  await Promise.all(replicas.map((replica) => replica.stop()));
});

const target = () => ['--endpoints', endpoints, '--cluster', 'test', '--items-per-shard', '3000'];

describe('shardbank CLI', () => {
  it('transfer --json prints the outcome and exits 0 for COMMITTED and INSUFFICIENT_FUNDS', async () => {
    const io = captureIo();
    expect(await runCli(['transfer', '1001', '3001', '10', '--json', ...target()], io)).toBe(0);
    const reply = JSON.parse(io.stdout[0]!);
    expect(reply).toMatchObject({
      outcome: 'COMMITTED',
      from: 1001,
      to: 3001,
      amount: 10,
      decisionIndex: 12,
      coordinatorShard: 0,
      requestId: 1,
    });
    expect(typeof reply.clientId).toBe('string');
    const poor = captureIo();
    expect(await runCli(['transfer', '1001', '3001', '1000', '--json', ...target()], poor)).toBe(0);
    expect(JSON.parse(poor.stdout[0]!).outcome).toBe('INSUFFICIENT_FUNDS');
  });

  it('transfer keeps the given client and request id', async () => {
    const io = captureIo();
    expect(
      await runCli(
        ['transfer', '3001', '1', '5', '--client-id', 'alice', '--request-id', '9', '--json', ...target()],
        io,
      ),
    ).toBe(0);
    expect(JSON.parse(io.stdout[0]!)).toMatchObject({
      outcome: 'COMMITTED',
      clientId: 'alice',
      requestId: 9,
      coordinatorShard: 1,
    });
    const sent = replicas
      .flatMap((r) => r.calls)
      .filter((call) => call.method === 'transfer')
      .map((call) => call.request as { clientId: string; requestId: number });
    expect(sent.some((request) => request.clientId === 'alice' && request.requestId === 9)).toBe(true);
  });

  it('transfer prints its session epoch; --session-epoch is sent as is; an expired session is said so', async () => {
    const io = captureIo();
    expect(
      await runCli(
        ['transfer', '1001', '3001', '5', '--client-id', 'carol', '--request-id', '3', '--json', ...target()],
        io,
      ),
    ).toBe(0);
    expect(JSON.parse(io.stdout[0]!)).toMatchObject({
      outcome: 'COMMITTED',
      clientId: 'carol',
      requestId: 3,
      sessionEpoch: FAKE_SESSION_EPOCH,
    });
    const text = captureIo();
    expect(
      await runCli(['transfer', '1001', '3001', '5', '--client-id', 'carol', '--request-id', '3', ...target()], text),
    ).toBe(0);
    expect(text.stdout.join('\n')).toContain(`client carol, request 3, session ${FAKE_SESSION_EPOCH}`);
    const given = captureIo();
    expect(
      await runCli(
        [
          'transfer',
          '1001',
          '3001',
          '5',
          '--client-id',
          'dan',
          '--request-id',
          '4',
          '--session-epoch',
          '55',
          '--json',
          ...target(),
        ],
        given,
      ),
    ).toBe(0);
    expect(JSON.parse(given.stdout[0]!)).toMatchObject({ outcome: 'COMMITTED', sessionEpoch: 55 });
    const sent = replicas
      .flatMap((r) => r.calls)
      .map((call) => call.request as { clientId: string; sessionEpoch: number })
      .filter((request) => request.clientId === 'dan');
    expect(sent.length).toBeGreaterThan(0);
    expect(sent.every((request) => request.sessionEpoch === 55)).toBe(true);
    expect(replicas.flatMap((r) => r.opens).filter((open) => open.clientId === 'dan')).toHaveLength(0);
    const expired = captureIo();
    expect(
      await runCli(
        [
          'transfer',
          '1001',
          '3001',
          '5',
          '--client-id',
          'erin',
          '--request-id',
          '4',
          '--session-epoch',
          '66',
          ...target(),
        ],
        expired,
      ),
    ).toBe(1);
    expect(expired.stdout.join('\n')).toMatch(
      /^FAILED_PRECONDITION 1001 -> 3001 amount 5: session expired: client erin's session 66 .*\(client erin, request 4, session 66\)/,
    );
    for (const [args, message] of [
      [
        ['--client-id', 'x', '--request-id', '1', '--session-epoch', 'soon'],
        /--session-epoch: must be a positive integer, got "soon"/,
      ],
      [
        ['--client-id', 'x', '--request-id', '1', '--session-epoch', '0'],
        /--session-epoch: must be a positive integer, got "0"/,
      ],
      [['--client-id', 'x', '--session-epoch', '3'], /--session-epoch needs --client-id and --request-id/],
    ] as const) {
      const bad = captureIo();
      expect(await runCli(['transfer', '1', '2', '3', ...args, ...target()], bad)).toBe(2);
      expect(bad.stderr.join('\n')).toMatch(message);
    }
  });

  it('transfer rejects bad amounts with a message naming the field and a non-zero exit', async () => {
    const before = replicas.flatMap((r) => r.calls).length;
    for (const amount of ['1.5', '0', '-1', 'ten']) {
      const io = captureIo();
      const code = await runCli(['transfer', '1001', '3001', amount, '--json', ...target()], io);
      expect(code).toBe(2);
      // Refused before anything is sent: no made-up outcome on stdout, a JSON error on stderr.
      expect(io.stdout).toEqual([]);
      expect(JSON.parse(io.stderr[0]!).error).toMatchObject({
        code: 'usage',
        field: 'amount',
        message: expect.stringMatching(/^amount: must be a positive integer/),
      });
      const text = captureIo();
      expect(await runCli(['transfer', '1001', '3001', amount, ...target()], text)).toBe(2);
      expect(text.stdout).toEqual([]);
      expect(text.stderr.join('\n')).toMatch(
        /^shardbank transfer: error: amount: must be a positive integer.*\n\(see: shardbank transfer --help\)$/s,
      );
    }
    expect(replicas.flatMap((r) => r.calls).length).toBe(before);
    const io = captureIo();
    expect(await runCli(['transfer', '1', '2', '--json', ...target()], io)).toBe(2);
    expect(io.stderr.join('\n')).toMatch(/FROM TO AMOUNT/);
    const negative = captureIo();
    expect(
      await runCli(['transfer', '1', '2', '3', '--client-id', 'x', '--request-id', '-4', ...target()], negative),
    ).toBe(2);
    expect(negative.stderr.join('\n')).toMatch(/--request-id: must be a positive integer, got "-4"/);
    const noClient = captureIo();
    expect(await runCli(['transfer', '1', '2', '3', '--request-id', '4', ...target()], noClient)).toBe(2);
    expect(noClient.stderr.join('\n')).toMatch(/--request-id needs --client-id/);
  });

  it('balance --json prints {"balances": {...}}', async () => {
    const io = captureIo();
    expect(await runCli(['balance', '1001', '3001', '--json', ...target()], io)).toBe(0);
    expect(JSON.parse(io.stdout[0]!)).toEqual({ balances: { 1001: 0, 3001: 20 } });
    const bad = captureIo();
    expect(await runCli(['balance', '99999', ...target()], bad)).toBe(2);
    expect(bad.stderr.join('\n')).toMatch(/item: must be an item from 1 to 6000/);
  });

  it('status --json has the SPEC shape, without pid for a remote cluster', async () => {
    const io = captureIo();
    expect(await runCli(['status', '--json', ...target()], io)).toBe(0);
    const status = JSON.parse(io.stdout[0]!);
    expect(status.cluster).toBe('test');
    expect(status.shards).toHaveLength(2);
    expect(status.shards[1]).toEqual({
      shard: 1,
      items: [3001, 6000],
      leader: { ordinal: 0, ballot: [2, 0], address: replicas[2]!.address },
      replicas: [
        { ordinal: 0, role: 'leader', ready: true, address: replicas[2]!.address, commitIndex: 42 },
        { ordinal: 1, role: 'follower', ready: true, address: replicas[3]!.address, commitIndex: 42 },
      ],
    });
    const text = captureIo();
    expect(await runCli(['status', ...target()], text)).toBe(0);
    expect(text.stdout.join('\n')).toMatch(/SHARD\s+ITEMS\s+READY\s+LEADER/);
  });

  it('bench --json runs a short closed loop and prints the SPEC shape', async () => {
    const io = captureIo();
    expect(await runCli(['bench', '--clients', '2', '--duration', '300ms', '--json', ...target()], io)).toBe(0);
    const result = JSON.parse(io.stdout[0]!);
    expect(Object.keys(result)).toEqual([
      'clients',
      'durationS',
      'crossShardRatio',
      'batchSize',
      'transfers',
      'transfersPerS',
      'latencyMs',
      'outcomes',
    ]);
    expect(result.clients).toBe(2);
    expect(result.transfers).toBeGreaterThan(0);
    expect(result.outcomes.COMMITTED).toBe(result.transfers);
  });

  it('every command has --help, and unknown commands or options are usage errors', async () => {
    for (const name of Object.keys(COMMANDS)) {
      const io = captureIo();
      expect(await runCli([name, '--help'], io)).toBe(0);
      expect(io.stdout.join('\n')).toMatch(new RegExp(`^Usage: shardbank ${name}`));
    }
    const unknown = captureIo();
    expect(await runCli(['frobnicate'], unknown)).toBe(2);
    const option = captureIo();
    expect(await runCli(['status', '--bogus'], option)).toBe(2);
    expect(option.stderr.join('\n')).toMatch(/bogus/);
  });

  it('chaos refuses --endpoints (it kills local processes)', async () => {
    const io = captureIo();
    expect(await runCli(['chaos', '--endpoints', endpoints], io)).toBe(2);
    expect(io.stderr.join('\n')).toMatch(/local cluster/);
  });

  it('commands without a local cluster say how to start one', async () => {
    const io = captureIo();
    expect(await runCli(['balance', '1', '--state-dir', '/nonexistent-shardbank-state'], io)).toBe(3);
    expect(io.stderr.join('\n')).toMatch(/shardbank up --detach/);
  });
});
