import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { Consistency, ShardbankClient } from '../../node/client/bank-client.js';
import { Outcome, type TransferRequest } from '../../node/gen/shardbank/v1/bank.js';
import {
  committed,
  FAKE_SESSION_EPOCH,
  replicaStatus,
  startFakeReplica,
  unavailable,
  type FakeReplica,
} from './fake-bank-server.js';

const topology = { shards: 2, itemsPerShard: 100, replicasPerShard: 3, initialBalance: 10 };
const fast = { baseMs: 1, capMs: 5 };
let replicas: FakeReplica[] = [];
let client: ShardbankClient | undefined;

async function cluster(): Promise<FakeReplica[]> {
  replicas = await Promise.all(Array.from({ length: 6 }, () => startFakeReplica()));
  return replicas;
}

function makeClient(extra: Partial<ConstructorParameters<typeof ShardbankClient>[0]> = {}): ShardbankClient {
  client = new ShardbankClient({
    cluster: 'test',
    topology,
    backoff: fast,
    deadlineMs: 10_000,
    endpoints: [replicas.slice(0, 3).map((r) => r.address), replicas.slice(3).map((r) => r.address)],
    // The unary Transfer path; the coalescing path has its own tests below.
    coalesce: false,
    ...extra,
  });
  return client;
}

afterEach(async () => {
  await client?.close();
  client = undefined;
  await Promise.all(replicas.map((replica) => replica.stop()));
  replicas = [];
});

describe('ShardbankClient.transfer', () => {
  it('routes to the shard owning from, follows the leader hint, keeps the request id', async () => {
    const [a, b, c] = await cluster();
    for (const follower of [a!, b!])
      follower.behaviour.transfer = () => unavailable('not the leader', `2,${c!.address}`);
    c!.behaviour.transfer = () => committed(42, 0);
    const result = await makeClient().transfer({ from: 1, to: 150, amount: 10 });
    expect(result.outcome).toBe('COMMITTED');
    expect(result.decisionIndex).toBe(42);
    const sent = [a!, b!, c!].flatMap((r) => r.calls).map((call) => call.request as TransferRequest);
    expect(sent.length).toBeGreaterThanOrEqual(1);
    expect(new Set(sent.map((request) => `${request.clientId}/${request.requestId}`)).size).toBe(1);
    expect(sent.every((request) => request.cluster === 'test' && request.from === 1 && request.to === 150)).toBe(true);
    expect(replicas.slice(3).every((r) => r.calls.length === 0)).toBe(true);
  });

  it('retries UNAVAILABLE and dead replicas with the same id until one answers', async () => {
    const shard1 = (await cluster()).slice(3);
    await shard1[0]!.stop();
    let failures = 3;
    shard1[1]!.behaviour.transfer = () => (failures-- > 0 ? unavailable('no leader yet') : committed(9, 1));
    shard1[2]!.behaviour.transfer = () => unavailable('no leader yet');
    const result = await makeClient().transfer({ from: 150, to: 2, amount: 1, clientId: 'me', requestId: 77 });
    expect(result).toMatchObject({ outcome: 'COMMITTED', clientId: 'me', requestId: 77, coordinatorShard: 1 });
    const ids = shard1
      .slice(1)
      .flatMap((r) => r.calls)
      .map((call) => (call.request as TransferRequest).requestId);
    expect(new Set(ids)).toEqual(new Set([77]));
  });

  it('retries ABORTED a bounded number of times, then surfaces it', async () => {
    await cluster();
    for (const replica of replicas)
      replica.behaviour.transfer = () => ({ error: { code: status.ABORTED, details: 'conflict' } });
    const result = await makeClient({ abortRetriesMax: 2 }).transfer({ from: 1, to: 2, amount: 1 });
    expect(result.outcome).toBe('ABORTED');
    const calls = replicas.flatMap((r) => r.calls);
    expect(calls).toHaveLength(3);
    expect(new Set(calls.map((call) => (call.request as TransferRequest).requestId)).size).toBe(1);
  });

  it('surfaces INVALID_ARGUMENT from the server at once', async () => {
    await cluster();
    for (const replica of replicas)
      replica.behaviour.transfer = () => ({
        error: { code: status.INVALID_ARGUMENT, details: 'amount: must be a positive integer' },
      });
    const result = await makeClient({ validate: false }).transfer({ from: 1, to: 2, amount: 0 });
    expect(result).toMatchObject({ outcome: 'INVALID_ARGUMENT', message: 'amount: must be a positive integer' });
    expect(replicas.flatMap((r) => r.calls)).toHaveLength(1);
  });

  it('rejects bad input client-side with a message naming the field, sending nothing', async () => {
    await cluster();
    const c = makeClient();
    for (const [amount, text] of [
      [1.5, 'got 1.5'],
      [0, 'got 0'],
      [-1, 'got -1'],
      ['5' as unknown as number, 'got "5"'],
    ] as const) {
      const result = await c.transfer({ from: 1, to: 2, amount });
      expect(result.outcome).toBe('INVALID_ARGUMENT');
      expect(result.message).toMatch(/^amount: must be a positive integer/);
      expect(result.message).toContain(text);
    }
    expect((await c.transfer({ from: 1, to: 1, amount: 1 })).message).toMatch(/^to: /);
    expect((await c.transfer({ from: 0, to: 1, amount: 1 })).message).toMatch(/^from: /);
    expect((await c.transfer({ from: 1, to: 201, amount: 1 })).message).toMatch(/^to: /);
    expect(replicas.flatMap((r) => r.calls)).toHaveLength(0);
  });

  it('gives up with UNKNOWN at the deadline and says which id to retry', async () => {
    await cluster();
    for (const replica of replicas) replica.behaviour.transfer = () => unavailable('no quorum');
    const result = await makeClient().transfer({ from: 1, to: 2, amount: 1 }, { deadlineMs: 2000 });
    expect(result.outcome).toBe('UNKNOWN');
    expect(['UNAVAILABLE', 'DEADLINE_EXCEEDED']).toContain(result.errorCode);
    expect(result.attempts).toBeGreaterThan(1);
  });

  it('goes to the leader the watcher knows first, and forgets it when it fails', async () => {
    const [a, b, c] = await cluster();
    const forgotten: number[] = [];
    let known: { ballot: { round: number; ordinal: number }; leaderOrdinal: number; address: string } | undefined = {
      ballot: { round: 4, ordinal: 1 },
      leaderOrdinal: 1,
      address: 'ignored:1',
    };
    const leaderSource = {
      leader: (shard: number) => (shard === 0 ? known : undefined),
      forgetLeader: (shard: number) => {
        forgotten.push(shard);
        known = undefined;
      },
      close: () => undefined,
    };
    b!.behaviour.transfer = () => committed(5, 0);
    const c1 = makeClient({ leaderSource });
    expect((await c1.transfer({ from: 1, to: 2, amount: 1 })).outcome).toBe('COMMITTED');
    expect([a!.calls.length, b!.calls.length, c!.calls.length]).toEqual([0, 1, 0]);
    await b!.stop();
    a!.behaviour.transfer = () => committed(6, 0);
    c!.behaviour.transfer = () => committed(6, 0);
    expect((await c1.transfer({ from: 1, to: 2, amount: 1 })).outcome).toBe('COMMITTED');
    expect(forgotten).toEqual([0]);
  });

  it('generates increasing request ids per client', async () => {
    await cluster();
    for (const replica of replicas) replica.behaviour.transfer = () => committed();
    const c = makeClient();
    const first = await c.transfer({ from: 1, to: 2, amount: 1 });
    const second = await c.transfer({ from: 1, to: 2, amount: 1 });
    expect(second.clientId).toBe(first.clientId);
    expect(second.requestId).toBeGreaterThan(first.requestId);
  });
});

describe('ShardbankClient sessions (OpenSession, epochs)', () => {
  const epochOf = (call: { request: unknown }) => {
    const request = call.request as { sessionEpoch?: number; entries?: { sessionEpoch: number }[] };
    return request.entries ? request.entries.map((e) => e.sessionEpoch) : [request.sessionEpoch];
  };

  it('opens lazily once per shard, and every call and retry names the epoch it was first sent with', async () => {
    await cluster();
    let epoch = 40;
    for (const replica of replicas)
      replica.behaviour.openSession = (request) => ({ value: { sessionEpoch: (epoch += 1), shard: request.shard } });
    let calls = 0;
    for (const replica of replicas)
      replica.behaviour.transfer = () => ((calls += 1) % 2 === 1 ? unavailable('lost') : committed(calls));
    const c = makeClient();
    const a = await c.transfer({ from: 1, to: 2, amount: 1 });
    const b = await c.transfer({ from: 3, to: 4, amount: 1 });
    const other = await c.transfer({ from: 150, to: 4, amount: 1 });
    expect([a.outcome, b.outcome, other.outcome]).toEqual(['COMMITTED', 'COMMITTED', 'COMMITTED']);
    const opens = replicas.flatMap((r) => r.opens);
    expect(opens.map((o) => o.shard).sort()).toEqual([0, 1]);
    expect(opens.every((o) => o.clientId === c.session.clientId && o.cluster === 'test')).toBe(true);
    expect([a.sessionEpoch, b.sessionEpoch, other.sessionEpoch]).toEqual([41, 41, 42]);
    // Six calls (each transfer once refused, once retried), every one with its shard's epoch.
    const sent = replicas.flatMap((r) => r.calls).flatMap(epochOf);
    expect(sent.sort()).toEqual([41, 41, 41, 41, 42, 42]);
  });

  it('after a refusal (session expired) the next new request opens again; the refused one is never re-sent', async () => {
    await cluster();
    let epoch = 0;
    for (const replica of replicas)
      replica.behaviour.openSession = (request) => ({ value: { sessionEpoch: (epoch += 1), shard: request.shard } });
    for (const replica of replicas) {
      replica.behaviour.transfer = (request) =>
        request.sessionEpoch === 1 && request.requestId === 2
          ? {
              error: {
                code: status.FAILED_PRECONDITION,
                details: "session expired: client x's session 1 on this shard was forgotten",
              },
            }
          : committed(request.requestId);
    }
    const c = makeClient();
    expect(await c.transfer({ from: 1, to: 2, amount: 1 })).toMatchObject({ outcome: 'COMMITTED', sessionEpoch: 1 });
    expect(await c.transfer({ from: 1, to: 2, amount: 1 })).toMatchObject({
      outcome: 'FAILED_PRECONDITION',
      sessionEpoch: 1,
      message: expect.stringContaining('session expired'),
    });
    expect(await c.transfer({ from: 1, to: 2, amount: 1 })).toMatchObject({
      outcome: 'COMMITTED',
      sessionEpoch: 2,
      requestId: 3,
    });
    expect(replicas.flatMap((r) => r.opens)).toHaveLength(2);
    const sent = replicas
      .flatMap((r) => r.calls)
      .map(
        (call) => `${(call.request as TransferRequest).requestId}@${(call.request as TransferRequest).sessionEpoch}`,
      );
    expect(sent).toEqual(['1@1', '2@1', '3@2']);
  });

  it('a retry by request id of an unanswered request goes under the epoch it was first sent with, not a newer session', async () => {
    await cluster();
    let epoch = 0;
    for (const replica of replicas)
      replica.behaviour.openSession = (request) => ({ value: { sessionEpoch: (epoch += 1), shard: request.shard } });
    for (const replica of replicas) {
      replica.behaviour.transfer = (request) =>
        request.requestId === 1
          ? unavailable('lost')
          : request.requestId === 2
            ? { error: { code: status.FAILED_PRECONDITION, details: 'session expired' } }
            : committed(request.requestId);
    }
    const c = makeClient({ deadlineMs: 300 });
    const session = c.newSession('zoe');
    expect(await c.transfer({ from: 1, to: 2, amount: 1 }, { session })).toMatchObject({
      outcome: 'UNKNOWN',
      requestId: 1,
      sessionEpoch: 1,
    });
    expect(await c.transfer({ from: 1, to: 2, amount: 1 }, { session })).toMatchObject({
      outcome: 'FAILED_PRECONDITION',
      requestId: 2,
      sessionEpoch: 1,
    });
    // The session on shard 0 was refused: new requests open again (epoch 2)...
    expect(await c.transfer({ from: 1, to: 2, amount: 1 }, { session })).toMatchObject({
      outcome: 'COMMITTED',
      requestId: 3,
      sessionEpoch: 2,
    });
    // ...but the caller's retry of request 1 still names epoch 1.
    const retry = await c.transfer({ from: 1, to: 2, amount: 1, requestId: 1 }, { session });
    expect(retry.sessionEpoch).toBe(1);
    const sentFor1 = replicas
      .flatMap((r) => r.calls)
      .map((call) => call.request as TransferRequest)
      .filter((request) => request.requestId === 1);
    expect(new Set(sentFor1.map((request) => request.sessionEpoch))).toEqual(new Set([1]));
  });

  it('a caller-given session epoch is used as is (a retry safe forever), without opening', async () => {
    await cluster();
    for (const replica of replicas) replica.behaviour.transfer = () => committed(3);
    const result = await makeClient().transfer({
      from: 1,
      to: 2,
      amount: 1,
      clientId: 'me',
      requestId: 9,
      sessionEpoch: 1234,
    });
    expect(result).toMatchObject({ outcome: 'COMMITTED', sessionEpoch: 1234 });
    expect(replicas.flatMap((r) => r.opens)).toHaveLength(0);
    expect(replicas.flatMap((r) => r.calls).flatMap(epochOf)).toEqual([1234]);
  });

  it('a batch opens each shard it debits once; re-sent entries keep their epoch', async () => {
    await cluster();
    let epoch = 10;
    for (const replica of replicas)
      replica.behaviour.openSession = (request) => ({ value: { sessionEpoch: (epoch += 1), shard: request.shard } });
    let round = 0;
    for (const replica of replicas) {
      replica.behaviour.batchTransfer = (request) => {
        round += 1;
        return {
          value: {
            results: request.entries.map((entry) => ({
              outcome: round <= 2 ? Outcome.ABORTED : Outcome.COMMITTED,
              decisionIndex: entry.requestId,
              coordinatorShard: 0,
              message: '',
            })),
          },
        };
      };
    }
    const results = await makeClient().batchTransfer([
      { from: 1, to: 2, amount: 1 },
      { from: 120, to: 2, amount: 1 },
      { from: 3, to: 4, amount: 1 },
    ]);
    expect(results.map((r) => r.outcome)).toEqual(['COMMITTED', 'COMMITTED', 'COMMITTED']);
    expect(replicas.flatMap((r) => r.opens)).toHaveLength(2);
    const byShard = (group: FakeReplica[]) => new Set(group.flatMap((r) => r.calls).flatMap(epochOf));
    expect(byShard(replicas.slice(0, 3)).size).toBe(1);
    expect(byShard(replicas.slice(3)).size).toBe(1);
    expect(results[0]!.sessionEpoch).toBe(results[2]!.sessionEpoch);
    expect(results[1]!.sessionEpoch).not.toBe(results[0]!.sessionEpoch);
  });

  it("the coalesced and stream paths carry each entry's epoch", async () => {
    await cluster();
    for (const replica of replicas) {
      replica.behaviour.batchTransfer = (request) => ({
        value: {
          results: request.entries.map((entry) => ({
            outcome: Outcome.COMMITTED,
            decisionIndex: entry.requestId,
            coordinatorShard: 0,
            message: '',
          })),
        },
      });
      replica.behaviour.transferStream = (request) =>
        request.entries.map((entry) => ({
          outcome: Outcome.COMMITTED,
          decisionIndex: entry.requestId,
          coordinatorShard: 0,
          message: '',
        }));
    }
    const c = makeClient({ coalesce: true });
    await Promise.all([c.transfer({ from: 1, to: 2, amount: 1 }), c.transfer({ from: 3, to: 4, amount: 1 })]);
    await c.transfer({ from: 5, to: 6, amount: 1 });
    const entries = replicas
      .flatMap((r) => r.calls)
      .filter((call) => call.method !== 'transferStream')
      .flatMap(epochOf);
    expect(entries).toEqual([FAKE_SESSION_EPOCH, FAKE_SESSION_EPOCH, FAKE_SESSION_EPOCH]);
    expect(replicas.flatMap((r) => r.opens)).toHaveLength(1);
  });
});

describe('ShardbankClient.balance and batchTransfer', () => {
  it('groups items per shard and merges the answers', async () => {
    await cluster();
    for (const replica of replicas) {
      replica.behaviour.getBalance = (request) => ({
        value: {
          balances: request.items.map((item) => ({ item, balance: item * 2 })),
          shard: 0,
          replica: 0,
          indexLag: 0,
          msSinceLeader: 0,
          appliedIndex: 1,
        },
      });
    }
    const balances = await makeClient().balance([1, 150, 2], Consistency.LINEARIZABLE);
    expect(Object.fromEntries(balances)).toEqual({ 1: 2, 2: 4, 150: 300 });
    const requests = replicas.flatMap((r) => r.calls.map((call) => call.request as { items: number[] }));
    expect(requests.map((request) => request.items.sort((a, b) => a - b))).toEqual(
      expect.arrayContaining([[1, 2], [150]]),
    );
  });

  it('re-sends only the aborted entries of a batch, with their ids', async () => {
    await cluster();
    let round = 0;
    for (const replica of replicas) {
      replica.behaviour.batchTransfer = (request) => {
        round += 1;
        return {
          value: {
            results: request.entries.map((entry, index) => ({
              outcome: round === 1 && index === 1 ? Outcome.ABORTED : Outcome.COMMITTED,
              decisionIndex: entry.requestId,
              coordinatorShard: 0,
              message: '',
            })),
          },
        };
      };
    }
    const results = await makeClient().batchTransfer([
      { from: 1, to: 2, amount: 1 },
      { from: 3, to: 4, amount: 1 },
    ]);
    expect(results.map((r) => r.outcome)).toEqual(['COMMITTED', 'COMMITTED']);
    const second = replicas.flatMap((r) => r.calls)[1]!.request as { entries: { requestId: number }[] };
    expect(second.entries.map((e) => e.requestId)).toEqual([results[1]!.requestId]);
  });

  it('sends each entry of a batch to the shard that owns its from item, one call per shard, answers in input order', async () => {
    await cluster();
    for (const replica of replicas) {
      replica.behaviour.batchTransfer = (request) => ({
        value: {
          results: request.entries.map((entry) => ({
            outcome: Outcome.COMMITTED,
            decisionIndex: entry.from,
            coordinatorShard: entry.from > 100 ? 1 : 0,
            message: '',
          })),
        },
      });
    }
    const inputs = [
      { from: 1, to: 150, amount: 1 },
      { from: 120, to: 2, amount: 1 },
      { from: 3, to: 4, amount: 1 },
      { from: 199, to: 101, amount: 1 },
    ];
    const results = await makeClient().batchTransfer(inputs);
    expect(results.map((r) => [r.outcome, r.decisionIndex])).toEqual(inputs.map((input) => ['COMMITTED', input.from]));
    const froms = (group: FakeReplica[]) =>
      group
        .flatMap((r) => r.calls)
        .flatMap((call) => (call.request as { entries: { from: number }[] }).entries.map((e) => e.from));
    expect(froms(replicas.slice(0, 3)).sort((a, b) => a - b)).toEqual([1, 3]);
    expect(froms(replicas.slice(3)).sort((a, b) => a - b)).toEqual([120, 199]);
    expect(replicas.flatMap((r) => r.calls).filter((call) => call.method === 'batchTransfer')).toHaveLength(2);
  });
});

describe('ShardbankClient.transfer coalesced into BatchTransfer calls', () => {
  it('sends the transfers of several sessions started together as one BatchTransfer, each with its own ids', async () => {
    await cluster();
    for (const replica of replicas) {
      replica.behaviour.batchTransfer = (request) => ({
        value: {
          results: request.entries.map((entry) => ({
            outcome: Outcome.COMMITTED,
            decisionIndex: entry.requestId * 10,
            coordinatorShard: 0,
            message: '',
          })),
        },
      });
    }
    const c = makeClient({ coalesce: true, stream: false });
    const [x, y] = await Promise.all([
      c.transfer({ from: 1, to: 2, amount: 1, clientId: 'alice', requestId: 5 }),
      c.transfer({ from: 3, to: 150, amount: 2, clientId: 'bob', requestId: 9 }),
    ]);
    expect([x.outcome, x.decisionIndex, y.outcome, y.decisionIndex]).toEqual(['COMMITTED', 50, 'COMMITTED', 90]);
    const calls = replicas.flatMap((r) => r.calls);
    expect(calls).toHaveLength(1);
    const entries = (calls[0]!.request as { entries: { clientId: string; requestId: number }[] }).entries;
    expect(entries.map((e) => `${e.clientId}/${e.requestId}`)).toEqual(['alice/5', 'bob/9']);
  });

  it('retries an entry that came back UNAVAILABLE with the same ids, and surfaces a refusal at once', async () => {
    await cluster();
    let calls = 0;
    for (const replica of replicas) {
      replica.behaviour.batchTransfer = (request) => {
        calls += 1;
        return {
          value: {
            results: request.entries.map((entry) => ({
              outcome:
                entry.amount === 0 ? Outcome.INVALID_ARGUMENT : calls === 1 ? Outcome.UNAVAILABLE : Outcome.COMMITTED,
              decisionIndex: 7,
              coordinatorShard: 0,
              message: entry.amount === 0 ? 'amount: must be a positive integer' : '',
            })),
          },
        };
      };
    }
    const c = makeClient({ coalesce: true, stream: false, validate: false });
    const [retried, refused] = await Promise.all([
      c.transfer({ from: 1, to: 2, amount: 1, clientId: 'carol', requestId: 3 }),
      c.transfer({ from: 1, to: 2, amount: 0, clientId: 'dave', requestId: 4 }),
    ]);
    expect(retried).toMatchObject({ outcome: 'COMMITTED', clientId: 'carol', requestId: 3, attempts: 2 });
    expect(refused).toMatchObject({ outcome: 'INVALID_ARGUMENT', attempts: 1 });
  });
});

describe('ShardbankClient.transfer over a TransferStream (the default)', () => {
  const committedEntries = (request: { entries: { requestId: number }[] }) =>
    request.entries.map((entry) => ({
      outcome: Outcome.COMMITTED,
      decisionIndex: entry.requestId * 10,
      coordinatorShard: 0,
      message: '',
    }));

  it('streams to the replica a call found as leader; an UNAVAILABLE entry breaks the stream and goes by call with the same ids', async () => {
    await cluster();
    let streamed = 0;
    for (const replica of replicas) {
      replica.behaviour.batchTransfer = (request) => ({ value: { results: committedEntries(request) } });
      replica.behaviour.transferStream = (request) => {
        streamed += 1;
        return streamed === 2
          ? request.entries.map(() => ({
              outcome: Outcome.UNAVAILABLE,
              decisionIndex: 0,
              coordinatorShard: 0,
              message: 'not leader',
            }))
          : committedEntries(request);
      };
    }
    const c = makeClient({ coalesce: true });
    const methods = () => replicas.flatMap((r) => r.calls.map((call) => call.method));
    // The OpenSession call found the leader: the first transfer already streams.
    expect(await c.transfer({ from: 1, to: 2, amount: 1, clientId: 'erin', requestId: 1 })).toMatchObject({
      outcome: 'COMMITTED',
      decisionIndex: 10,
      attempts: 1,
      sessionEpoch: FAKE_SESSION_EPOCH,
    });
    expect(methods()).toEqual(['transferStream', 'transferStream.message']);
    const retried = await c.transfer({ from: 1, to: 2, amount: 1, clientId: 'erin', requestId: 2 });
    expect(retried).toMatchObject({ outcome: 'COMMITTED', decisionIndex: 20, attempts: 2 });
    // The retry's call may go to any replica (the one streamed to named no leader).
    expect(methods().sort()).toEqual([
      'batchTransfer',
      'transferStream',
      'transferStream.message',
      'transferStream.message',
    ]);
    const sent = replicas
      .flatMap((r) => r.calls)
      .filter((call) => call.method !== 'transferStream')
      .map((call) =>
        (call.request as { entries: { clientId: string; requestId: number; sessionEpoch: number }[] }).entries
          .map((e) => `${e.clientId}/${e.requestId}@${e.sessionEpoch}`)
          .join(),
      );
    expect(sent.sort()).toEqual([
      `erin/1@${FAKE_SESSION_EPOCH}`,
      `erin/2@${FAKE_SESSION_EPOCH}`,
      `erin/2@${FAKE_SESSION_EPOCH}`,
    ]);
    expect(replicas.flatMap((r) => r.opens).every((open) => open.clientId === 'erin' && open.shard === 0)).toBe(true);
  });

  it('falls back to calls for good when a replica does not know TransferStream', async () => {
    await cluster();
    for (const replica of replicas)
      replica.behaviour.batchTransfer = (request) => ({ value: { results: committedEntries(request) } });
    const c = makeClient({ coalesce: true });
    const attempts: number[] = [];
    for (let requestId = 1; requestId <= 4; requestId += 1) {
      const result = await c.transfer({ from: 1, to: 2, amount: 1, clientId: 'frank', requestId });
      expect(result).toMatchObject({ outcome: 'COMMITTED', decisionIndex: requestId * 10 });
      attempts.push(result.attempts);
    }
    // The first transfer tried the stream once (refused; its OpenSession call had found the
    // leader), then went by call like the others.
    expect(attempts).toEqual([2, 1, 1, 1]);
    const methods = replicas.flatMap((r) => r.calls.map((call) => call.method));
    expect(methods.filter((m) => m === 'transferStream')).toHaveLength(1);
    expect(methods.filter((m) => m === 'batchTransfer')).toHaveLength(4);
  });
});

describe('ShardbankClient.clusterStatus', () => {
  it('asks every replica with local_only and marks the silent ones down', async () => {
    const all = await cluster();
    all.forEach((replica, index) => {
      const shard = Math.floor(index / 3);
      const ordinal = index % 3;
      replica.behaviour.clusterStatus = (request) => {
        expect(request.localOnly).toBe(true);
        return replicaStatus(shard, ordinal, ordinal === 1 ? 'leader' : 'follower', { round: 3 });
      };
    });
    await all[5]!.stop();
    const view = await makeClient().clusterStatus();
    expect(view.shards.map((shard) => shard.leader?.ordinal)).toEqual([1, 1]);
    expect(view.shards[0]!.leader).toEqual({ ordinal: 1, ballot: [3, 1], address: all[1]!.address });
    expect(view.shards[1]!.replicas[2]).toMatchObject({ role: 'down', ready: false, commitIndex: null });
  });
});
