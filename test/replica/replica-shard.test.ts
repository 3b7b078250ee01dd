// One shard of three real replica processes on loopback: exactly-once transfers through
// leader crashes, catch-up after restart and after a wiped data dir (snapshot transfer).
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import {
  Outcome,
  type TransferReply,
  type TransferStreamReply,
  type TransferStreamRequest,
} from '../../node/gen/shardbank/v1/bank.js';
import { SESSION_LIMITS } from '../../node/bank/session-table.js';
import { REQUEST_LIMITS } from '../../node/replica/request-validation.js';
import { ShardbankClient } from '../../node/client/bank-client.js';
import { ReplicaCluster, pollUntil } from '../support/replica-cluster.js';
import { BankLedger } from '../support/bank-ledger.js';

const topology = { shards: 1, replicasPerShard: 3, itemsPerShard: 40, initialBalance: 100 };
const ITEMS = Array.from({ length: topology.itemsPerShard }, (_, i) => i + 1);

async function convergedBalances(cluster: ReplicaCluster): Promise<number[][]> {
  // Replicas agree once they have applied the same index; then compare every balance.
  return pollUntil(
    'replicas to converge',
    async () => {
      const statuses = await Promise.all([0, 1, 2].map((o) => cluster.replicaStatus(0, o)));
      const applied = statuses.map((s) => s?.appliedIndex);
      if (new Set(applied).size !== 1 || statuses.some((s) => !s || s.inflightTransactions > 0)) return undefined;
      const all = await Promise.all([0, 1, 2].map((o) => cluster.balances(0, o, ITEMS)));
      const again = await Promise.all([0, 1, 2].map((o) => cluster.replicaStatus(0, o)));
      if (again.some((s, i) => s?.appliedIndex !== applied[i])) return undefined;
      return all;
    },
    90_000,
    200,
  );
}

describe('a shard of three replica processes', () => {
  let cluster: ReplicaCluster;

  beforeAll(async () => {
    cluster = await ReplicaCluster.start({ topology, extraArgs: ['--snapshot-every-slots', '64'] });
    await cluster.waitForLeaders();
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it('applies every COMMITTED transfer exactly once while the leader is SIGKILLed twice', async () => {
    const ledger = new BankLedger(topology);
    const clients = 6;
    const perClient = 40;
    let killed = 0;
    let progress = 0;
    const workload = Array.from({ length: clients }, async (_, c) => {
      for (let r = 1; r <= perClient; r += 1) {
        const from = 1 + ((c * 7 + r * 3) % topology.itemsPerShard);
        const to = 1 + ((c * 11 + r * 5 + 1) % topology.itemsPerShard);
        if (from === to) continue;
        const amount = 1 + ((c + r) % 7);
        const reply = await cluster.transfer(`client-${c}`, r, from, to, amount, 90_000);
        ledger.record({
          clientId: `client-${c}`,
          requestId: r,
          from,
          to,
          amount,
          outcome: reply.outcome,
          decisionIndex: reply.decisionIndex,
        });
        progress += 1;
      }
    });
    const chaos = (async () => {
      for (const threshold of [40, 120]) {
        await pollUntil('load to progress', () => progress >= threshold || undefined, 90_000, 20);
        const leader = await cluster.leaderOf(0);
        await cluster.kill(0, leader, 'SIGKILL');
        killed += 1;
        await cluster.leaderOf(0, 60_000, leader);
        cluster.spawn(cluster.replicas[0]![leader]!);
      }
    })();
    await Promise.all([...workload, chaos]);
    expect(killed).toBe(2);
    expect(ledger.committed.length).toBeGreaterThan(100);

    const expected = ledger.expectedBalances();
    const perReplica = await convergedBalances(cluster);
    for (const balances of perReplica) {
      expect(balances).toEqual(ITEMS.map((item) => expected[item]));
      expect(balances.reduce((a, b) => a + b, 0)).toBe(topology.itemsPerShard * topology.initialBalance);
      expect(Math.min(...balances)).toBeGreaterThanOrEqual(0);
    }

    // A retried request id gets its first outcome back and changes nothing.
    for (const entry of ledger.entries.slice(0, 10)) {
      const again = await cluster.transfer(entry.clientId, entry.requestId, entry.from, entry.to, entry.amount);
      expect(again.outcome).toBe(entry.outcome);
      expect(again.decisionIndex).toBe(entry.decisionIndex);
    }
    const after = await convergedBalances(cluster);
    expect(after[0]).toEqual(perReplica[0]);
  });

  it('refuses the same request id with other arguments, and an id below the watermark is never run', async () => {
    const first = await cluster.transfer('reuse', 1, 1, 2, 3);
    expect(first.outcome).toBe(Outcome.COMMITTED);
    await expect(cluster.transfer('reuse', 1, 1, 2, 4)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });

    // One client with more results than its session keeps (SESSION_LIMITS.resultsPerSessionMax,
    // 20,000): the oldest are evicted and their ids, retried, get FAILED_PRECONDITION instead of
    // running again. Sent as batches of the largest size, one after another.
    const leader = cluster.replicas[0]![await cluster.leaderOf(0)]!;
    const sessionEpoch = await cluster.sessionEpoch('evicted', 0);
    const count = SESSION_LIMITS.resultsPerSessionMax + 100;
    const entries = Array.from({ length: count }, (_, i) => ({
      requestId: i + 1,
      from: 9 + (i % 2),
      to: 11 + (i % 2),
      amount: 1,
      clientId: '',
      acknowledgedBelow: 0,
      sessionEpoch,
    }));
    const batch: { results: TransferReply[] } = { results: [] };
    for (let first = 0; first < count; first += REQUEST_LIMITS.batchEntriesMax) {
      const part = await cluster.client(leader.address).batchTransferAsync(
        {
          cluster: cluster.cluster,
          clientId: 'evicted',
          entries: entries.slice(first, first + REQUEST_LIMITS.batchEntriesMax),
        },
        new grpc.Metadata(),
        { deadline: Date.now() + 120_000 },
      );
      batch.results.push(...part.results);
    }
    const definite = (outcome: number) => outcome === Outcome.COMMITTED || outcome === Outcome.INSUFFICIENT_FUNDS;
    // Entries caught by a leader change come back UNAVAILABLE: retried in order with their ids.
    for (const [index, result] of batch.results.entries()) {
      if (definite(result.outcome)) continue;
      const entry = entries[index]!;
      batch.results[index] = await cluster
        .transfer('evicted', entry.requestId, entry.from, entry.to, entry.amount)
        .catch((error: grpc.ServiceError) => {
          // Already below the window by the time of the retry: refused, never run twice.
          expect(error.code).toBe(grpc.status.FAILED_PRECONDITION);
          return {
            outcome: Outcome.FAILED_PRECONDITION,
            decisionIndex: 0,
            coordinatorShard: 0,
            message: error.details,
          };
        });
    }
    expect(batch.results.filter((r) => definite(r.outcome) || r.outcome === Outcome.FAILED_PRECONDITION)).toHaveLength(
      count,
    );
    const before = await cluster.readLinearizable([9, 10, 11, 12]);
    await expect(cluster.transfer('evicted', 1, 9, 11, 1)).rejects.toMatchObject({
      code: grpc.status.FAILED_PRECONDITION,
    });
    expect(await cluster.readLinearizable([9, 10, 11, 12])).toEqual(before);
    const recent = await cluster.transfer('evicted', count, entries[count - 1]!.from, entries[count - 1]!.to, 1);
    expect(recent.outcome).toBe(batch.results[count - 1]!.outcome);
  });

  it('OpenSession: served or forwarded by any replica, repeatable; a transfer under another epoch is refused, never run', async () => {
    const leader = await cluster.leaderOf(0);
    const follower = cluster.replicas[0]![(leader + 1) % 3]!;
    const viaFollower = await cluster
      .client(follower.address)
      .openSessionAsync({ cluster: cluster.cluster, clientId: 'opener', shard: 0 }, new grpc.Metadata(), {
        deadline: Date.now() + 10_000,
      });
    const viaLeader = await cluster
      .client(cluster.replicas[0]![leader]!.address)
      .openSessionAsync({ cluster: cluster.cluster, clientId: 'opener', shard: 0 }, new grpc.Metadata(), {
        deadline: Date.now() + 10_000,
      });
    expect(viaFollower.sessionEpoch).toBeGreaterThan(0);
    expect(viaLeader).toEqual(viaFollower);
    const before = await cluster.readLinearizable([15, 16]);
    const stale = await cluster
      .client(cluster.replicas[0]![leader]!.address)
      .transferAsync(
        {
          cluster: cluster.cluster,
          clientId: 'opener',
          requestId: 1,
          from: 15,
          to: 16,
          amount: 1,
          acknowledgedBelow: 0,
          sessionEpoch: viaLeader.sessionEpoch - 1,
        },
        new grpc.Metadata(),
        { deadline: Date.now() + 10_000 },
      )
      .then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      );
    expect(stale?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(stale?.details).toMatch(/session/);
    expect(await cluster.readLinearizable([15, 16])).toEqual(before);
    const badShard = await cluster
      .client(follower.address)
      .openSessionAsync({ cluster: cluster.cluster, clientId: 'opener', shard: 99 }, new grpc.Metadata(), {
        deadline: Date.now() + 10_000,
      })
      .then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      );
    expect(badShard?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(badShard?.details).toMatch(/^shard: must be 0\.\./);
  });

  it('an acknowledged watermark makes the server forget those outcomes and refuse those ids', async () => {
    expect((await cluster.transfer('acker', 1, 13, 14, 1)).outcome).toBe(Outcome.COMMITTED);
    expect((await cluster.transfer('acker', 2, 13, 14, 1)).outcome).toBe(Outcome.COMMITTED);
    const leader = cluster.replicas[0]![await cluster.leaderOf(0)]!;
    const sessionEpoch = await cluster.sessionEpoch('acker', 0);
    const send = (requestId: number, acknowledgedBelow: number) =>
      cluster.client(leader.address).transferAsync(
        {
          cluster: cluster.cluster,
          clientId: 'acker',
          requestId,
          from: 13,
          to: 14,
          amount: 1,
          acknowledgedBelow,
          sessionEpoch,
        },
        new grpc.Metadata(),
        { deadline: Date.now() + 10_000 },
      );
    await expect(send(3, 3)).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^acknowledged_below: must be below request_id/),
    });
    expect((await send(3, 2)).outcome).toBe(Outcome.COMMITTED);
    await expect(cluster.transfer('acker', 2, 13, 14, 1)).rejects.toMatchObject({
      code: grpc.status.FAILED_PRECONDITION,
    });
    expect((await cluster.transfer('acker', 3, 13, 14, 1)).outcome).toBe(Outcome.COMMITTED);
  });

  it('TransferStream: results by tag as each entry is decided, bad entries named, followers and a wrong cluster refused', async () => {
    const leader = await cluster.leaderOf(0);
    const leaderAddress = cluster.replicas[0]![leader]!.address;
    const follower = cluster.replicas[0]![(leader + 1) % 3]!;
    const before = await cluster.readLinearizable([21, 22, 23, 24]);
    const stream = cluster.rawClient(leaderAddress).transferStream();
    const replies: TransferStreamReply[] = [];
    stream.on('data', (reply: TransferStreamReply) => replies.push(reply));
    const ended = new Promise<void>((resolve, reject) => {
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    const sessionEpoch = await cluster.sessionEpoch('streamer', 0);
    const entry = (requestId: number, from: number, to: number, amount: number) => ({
      requestId,
      from,
      to,
      amount,
      clientId: 'streamer',
      acknowledgedBelow: 0,
      sessionEpoch,
    });
    stream.write({
      cluster: cluster.cluster,
      entries: [entry(1, 21, 22, 5), entry(2, 23, 24, 0), entry(3, 23, 24, 7)],
      tags: [7, 8, 9],
    });
    const byTag = () =>
      new Map(replies.flatMap((reply) => reply.tags.map((tag, k) => [tag, reply.results[k]!] as const)));
    const results = await pollUntil('three results', () => (byTag().size === 3 ? byTag() : undefined), 60_000, 10);
    expect(results.get(7)!.outcome).toBe(Outcome.COMMITTED);
    expect(results.get(9)!.outcome).toBe(Outcome.COMMITTED);
    expect(results.get(7)!.decisionIndex).toBeGreaterThan(0);
    expect(results.get(8)).toMatchObject({
      outcome: Outcome.INVALID_ARGUMENT,
      message: expect.stringMatching(/^amount: must be a positive integer/),
    });
    // The server ends the stream once the client has and every entry is answered.
    stream.end();
    await ended;
    const after = await cluster.readLinearizable([21, 22, 23, 24]);
    expect(after).toEqual([before[0]! - 5, before[1]! + 5, before[2]! - 7, before[3]! + 7]);
    // Same ids by call: the recorded outcome, the same decision, nothing applied twice.
    const again = await cluster.transfer('streamer', 1, 21, 22, 5);
    expect(again.outcome).toBe(Outcome.COMMITTED);
    expect(again.decisionIndex).toBe(results.get(7)!.decisionIndex);
    expect(await cluster.readLinearizable([21, 22])).toEqual([after[0], after[1]]);

    // A follower runs nothing and names the leader.
    const atFollower = cluster.rawClient(follower.address).transferStream();
    const followerReply = new Promise<TransferStreamReply>((resolve, reject) => {
      atFollower.on('data', resolve);
      atFollower.on('error', reject);
    });
    atFollower.write({ cluster: cluster.cluster, entries: [entry(4, 21, 22, 1)], tags: [1] });
    const refused = await followerReply;
    expect(refused.tags).toEqual([1]);
    expect(refused.results[0]!.outcome).toBe(Outcome.UNAVAILABLE);
    expect(refused.leaderHint).toBe(`${leader},${leaderAddress}`);
    atFollower.cancel();

    // A wrong cluster or mismatched tags end the stream with an error naming the field.
    const badMessages: [TransferStreamRequest, RegExp, grpc.status][] = [
      [{ cluster: 'other', entries: [entry(5, 21, 22, 1)], tags: [1] }, /^cluster:/, grpc.status.FAILED_PRECONDITION],
      [
        { cluster: cluster.cluster, entries: [entry(5, 21, 22, 1)], tags: [] },
        /^tags: one per entry/,
        grpc.status.INVALID_ARGUMENT,
      ],
    ];
    for (const [message, pattern, code] of badMessages) {
      const bad = cluster.rawClient(leaderAddress).transferStream();
      const failure = new Promise<grpc.ServiceError>((resolve) => bad.on('error', resolve));
      bad.on('data', () => {});
      bad.write(message);
      const error = await failure;
      expect(error.code).toBe(code);
      expect(error.details).toMatch(pattern);
    }
    expect(await cluster.readLinearizable([21, 22])).toEqual([after[0], after[1]]);
  });

  it('the client library streams to the leader and stays exactly-once when the leader is SIGKILLed', async () => {
    const endpoints = [cluster.replicas[0]!.map((r) => r.address)];
    const client = new ShardbankClient({
      cluster: cluster.cluster,
      topology,
      endpoints,
      deadlineMs: 90_000,
      attemptTimeoutMs: 3_000,
    });
    const ledger = new BankLedger(topology);
    const before = await cluster.readLinearizable(ITEMS);
    const leader = await cluster.leaderOf(0);
    const streamed = async (ordinal: number) => {
      const text = await (await fetch(`http://127.0.0.1:${cluster.replicas[0]![ordinal]!.httpPort}/metrics`)).text();
      return Number(/shardbank_transfer_stream_entries_total\{[^}]*\} (\d+)/.exec(text)?.[1] ?? 0);
    };
    let progress = 0;
    const sessions = Array.from({ length: 8 }, () => client.newSession());
    const workload = sessions.map(async (session, c) => {
      for (let r = 1; r <= 30; r += 1) {
        const from = 1 + ((c * 5 + r * 3) % topology.itemsPerShard);
        const to = 1 + ((c * 13 + r * 7 + 2) % topology.itemsPerShard);
        if (from === to) continue;
        const amount = 1 + ((c + r) % 5);
        const result = await client.transfer({ from, to, amount }, { session });
        expect(result.outcome === 'COMMITTED' || result.outcome === 'INSUFFICIENT_FUNDS').toBe(true);
        ledger.record({
          clientId: result.clientId,
          requestId: result.requestId,
          from,
          to,
          amount,
          outcome: result.outcome === 'COMMITTED' ? Outcome.COMMITTED : Outcome.INSUFFICIENT_FUNDS,
          decisionIndex: result.decisionIndex ?? 0,
        });
        progress += 1;
      }
    });
    const chaos = (async () => {
      await pollUntil(
        'load through the stream',
        async () => (progress >= 40 && (await streamed(leader)) > 0) || undefined,
        90_000,
        20,
      );
      await cluster.kill(0, leader, 'SIGKILL');
      await cluster.leaderOf(0, 60_000, leader);
      cluster.spawn(cluster.replicas[0]![leader]!);
    })();
    try {
      await Promise.all([...workload, chaos]);
    } finally {
      await client.close();
    }
    expect(ledger.entries.length).toBeGreaterThan(200);
    const next = await cluster.leaderOf(0);
    expect(await streamed(next)).toBeGreaterThan(0);
    const expected = ledger.expectedBalances();
    const after = await cluster.readLinearizable(ITEMS);
    expect(after).toEqual(ITEMS.map((item, i) => before[i]! + expected[item]! - topology.initialBalance));
    await pollUntil('the killed replica to rejoin', async () =>
      (await cluster.replicaStatus(0, leader))?.role === 'follower' ? true : undefined,
    );
  });

  it('a replica restarted from its data dir after SIGKILL rejoins and catches up', async () => {
    const leader = await cluster.leaderOf(0);
    const follower = (leader + 1) % 3;
    await cluster.kill(0, follower, 'SIGKILL');
    for (let r = 1; r <= 30; r += 1) await cluster.transfer('while-down', r, 3, 4, 1);
    cluster.spawn(cluster.replicas[0]![follower]!);
    const leaderStatus = await cluster.replicaStatus(0, await cluster.leaderOf(0));
    await pollUntil(
      'the restarted follower to catch up',
      async () => {
        const status = await cluster.replicaStatus(0, follower);
        return status && status.appliedIndex >= leaderStatus!.commitIndex ? status : undefined;
      },
      60_000,
    );
    const balances = await convergedBalances(cluster);
    expect(balances[follower]).toEqual(balances[leader]);
  });

  it('a replica whose data dir was wiped catches up by snapshot transfer', async () => {
    const leader = await cluster.leaderOf(0);
    const follower = (leader + 2) % 3;
    for (let r = 1; r <= 80; r += 1) await cluster.transfer('before-wipe', r, 5, 6, 1);
    await cluster.restart(0, follower, { wipe: true });
    const status = await pollUntil(
      'the wiped follower to install a snapshot and catch up',
      async () => {
        const leaderNow = await cluster.replicaStatus(0, await cluster.leaderOf(0));
        const s = await cluster.replicaStatus(0, follower);
        return s && leaderNow && s.snapshotIndex > 0 && s.appliedIndex >= leaderNow.snapshotIndex ? s : undefined;
      },
      90_000,
      200,
    );
    expect(status.snapshotIndex).toBeGreaterThan(0);
    // It abstained: it started not voting, and voted again only once it had rebuilt (not as a
    // first start: its peers had state).
    const log = path.join(cluster.root, `s0-${follower}.log`);
    const lines = await pollUntil(
      'the wiped replica to vote again',
      async () => {
        const text = await readFile(log, 'utf8');
        const start = text.lastIndexOf('not voting until the peers show');
        const after = start >= 0 ? text.slice(start) : '';
        return after.includes('voting again') ? after : undefined;
      },
      90_000,
      200,
    );
    expect(lines).toContain('not voting until the peers show this is the first start');
    expect(lines).toContain('rebuilt from the live majority: voting again');
    expect(lines).not.toContain('first start of the shard');
    expect((await cluster.replicaStatus(0, follower))?.voting).toBe('voter');
    // Made durable before it voted: the voter record in place of the marker.
    const files = await readdir(cluster.replicas[0]![follower]!.dataDir);
    expect(files).toContain('VOTER');
    expect(files).not.toContain('NOT_VOTING');
    const balances = await convergedBalances(cluster);
    expect(balances[follower]).toEqual(balances[(follower + 1) % 3]);
  });

  it('serves /healthz, /readyz, /metrics, /status and gRPC health', async () => {
    const leader = await cluster.leaderOf(0);
    const replica = cluster.replicas[0]![leader]!;
    const get = (path: string) => fetch(`http://127.0.0.1:${replica.httpPort}${path}`);
    expect((await get('/healthz')).status).toBe(200);
    expect((await get('/readyz')).status).toBe(200);
    const metrics = await (await get('/metrics')).text();
    expect(metrics).toMatch(/shardbank_commit_index\{cluster="test",shard="0",replica="\d"\} \d+/);
    expect(metrics).toMatch(/shardbank_transfers_total\{[^}]*outcome="COMMITTED"[^}]*\} \d+/);
    const status = (await (await get('/status')).json()) as { role: string };
    expect(status.role).toBe('leader');
    const health = await new Promise<Buffer>((resolve, reject) =>
      cluster.rawClient(replica.address).makeUnaryRequest(
        '/grpc.health.v1.Health/Check',
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.alloc(0),
        (error, value) => (error ? reject(error) : resolve(value!)),
      ),
    );
    expect([...health]).toEqual([0x08, 0x01]); // status: SERVING
  });

  it('SIGTERM on the leader hands leadership over and exits 0', async () => {
    const leader = await cluster.leaderOf(0);
    const code = await cluster.kill(0, leader, 'SIGTERM');
    expect(code).toBe(0);
    const next = await cluster.leaderOf(0, 60_000, leader);
    expect(next).not.toBe(leader);
    expect((await cluster.transfer('after-handover', 1, 7, 8, 1)).outcome).toBe(Outcome.COMMITTED);
    cluster.spawn(cluster.replicas[0]![leader]!);
    await pollUntil('the stopped replica to rejoin', async () =>
      (await cluster.replicaStatus(0, leader))?.role === 'follower' ? true : undefined,
    );
  });

  it('answers every bad input with a clear error naming the field, and changes nothing', async () => {
    const leader = await cluster.leaderOf(0);
    const address = cluster.replicas[0]![leader]!.address;
    const client = cluster.client(address);
    const before = await cluster.readLinearizable(ITEMS);
    const base = {
      cluster: cluster.cluster,
      clientId: 'bad-input',
      requestId: 1,
      from: 1,
      to: 2,
      amount: 1,
      acknowledgedBelow: 0,
      sessionEpoch: 1,
    };
    const cases: [string, Partial<typeof base>, grpc.status, RegExp][] = [
      ['unknown item', { to: 99_999 }, grpc.status.INVALID_ARGUMENT, /^to: unknown item 99999/],
      ['unknown from', { from: 0 }, grpc.status.INVALID_ARGUMENT, /^from: unknown item 0/],
      ['from == to', { to: 1 }, grpc.status.INVALID_ARGUMENT, /^to: must differ from from/],
      ['amount 0', { amount: 0 }, grpc.status.INVALID_ARGUMENT, /^amount: must be a positive integer/],
      ['amount -1', { amount: -1 }, grpc.status.INVALID_ARGUMENT, /^amount: must be a positive integer/],
      ['amount above the maximum', { amount: 2_000_000 }, grpc.status.INVALID_ARGUMENT, /^amount: at most 1000000/],
      ['empty client id', { clientId: '' }, grpc.status.INVALID_ARGUMENT, /^client_id: must not be empty/],
      [
        'oversized client id',
        { clientId: 'x'.repeat(10_000) },
        grpc.status.INVALID_ARGUMENT,
        /^client_id: at most 128 bytes/,
      ],
      ['request id 0', { requestId: 0 }, grpc.status.INVALID_ARGUMENT, /^request_id: must be a positive integer/],
      ['wrong cluster', { cluster: 'other' }, grpc.status.FAILED_PRECONDITION, /^cluster: request is for "other"/],
      [
        'no session epoch',
        { sessionEpoch: 0 },
        grpc.status.FAILED_PRECONDITION,
        /^session_epoch: missing; open a session/,
      ],
      [
        'a session epoch never issued',
        { sessionEpoch: 2 ** 40 },
        grpc.status.FAILED_PRECONDITION,
        /^session_epoch: 1099511627776 was never issued to client bad-input/,
      ],
    ];
    for (const [name, change, code, message] of cases) {
      const error = await client
        .transferAsync({ ...base, ...change }, new grpc.Metadata(), { deadline: Date.now() + 10_000 })
        .then(
          () => undefined,
          (e: grpc.ServiceError) => e,
        );
      expect(error, name).toBeDefined();
      expect(error!.code, name).toBe(code);
      expect(error!.details, name).toMatch(message);
    }

    // 1.5 cannot be encoded as an int64 by a typed client; a hand-made message that carries a
    // double in the amount field is read as no amount at all, and refused naming the field.
    const raw = cluster.rawClient(address);
    const valid = Buffer.from([
      0x0a,
      ...lengthPrefixed(cluster.cluster),
      0x12,
      ...lengthPrefixed('bad-input'),
      0x18,
      1,
      0x20,
      1,
      0x28,
      2,
    ]);
    const amountAsDouble = Buffer.alloc(9);
    amountAsDouble[0] = (6 << 3) | 1;
    amountAsDouble.writeDoubleLE(1.5, 1);
    const fractional = await new Promise<grpc.ServiceError | undefined>((resolve) =>
      raw.makeUnaryRequest(
        '/shardbank.v1.Bank/Transfer',
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.concat([valid, amountAsDouble]),
        (error) => resolve(error ?? undefined),
      ),
    );
    expect(fractional?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(fractional?.details).toMatch(/^amount: must be a positive integer/);

    // Oversized: too many batch entries, and a message above the gRPC size limit.
    const tooMany = await client
      .batchTransferAsync(
        {
          cluster: cluster.cluster,
          clientId: 'bad-input',
          entries: Array.from({ length: 10_001 }, (_, i) => ({
            requestId: i + 1,
            from: 1,
            to: 2,
            amount: 1,
            clientId: '',
            acknowledgedBelow: 0,
            sessionEpoch: 1,
          })),
        },
        new grpc.Metadata(),
        { deadline: Date.now() + 10_000 },
      )
      .then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      );
    expect(tooMany?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(tooMany?.details).toMatch(/^entries: at most 10000/);
    const huge = await client
      .transferAsync({ ...base, clientId: 'x'.repeat(70 * 1024 * 1024) }, new grpc.Metadata(), {
        deadline: Date.now() + 20_000,
      })
      .then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      );
    expect(huge?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);

    expect(await cluster.readLinearizable(ITEMS)).toEqual(before);
    // Nothing was recorded for the refused requests: the same ids still run as new requests.
    expect((await cluster.transfer('bad-input', 1, 1, 2, 1)).outcome).toBe(Outcome.COMMITTED);
  });
});

function lengthPrefixed(text: string): number[] {
  const bytes = Buffer.from(text);
  return [bytes.length, ...bytes];
}
