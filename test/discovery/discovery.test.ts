// Leader discovery against a real nats-server with JetStream.
import { KvWatchInclude } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareBallots, decode, keyFor, type LeaderRecord } from '../../node/discovery/leader-record.js';
import { KvOutcome, LeaderAnnouncer } from '../../node/discovery/leader-announcer.js';
import { LeaderWatcher, type LeaderChange } from '../../node/discovery/leader-watcher.js';
import { openLeaderBucket } from '../../node/discovery/nats-connection.js';
import { freePort, startNatsServer, type NatsServerHandle } from '../support/nats-server.js';
import { eventually } from './poll.js';

const namespace = 'test';
const logger = pino({ level: process.env['SHARDBANK_TEST_LOG'] ?? 'silent' });
let server: NatsServerHandle;
let nc: NatsConnection;
const cleanups: (() => Promise<void>)[] = [];
let clusterCounter = 0;

/** A fresh cluster name per test, so tests sharing the server never see each other's keys. */
function newCluster(): string {
  clusterCounter += 1;
  return `bank${clusterCounter}`;
}

function record(cluster: string, overrides: Partial<LeaderRecord> = {}): LeaderRecord {
  const ordinal = overrides.ballot?.ordinal ?? 0;
  return {
    cluster,
    namespace,
    shard: 0,
    ballot: { round: 1, ordinal },
    leaderOrdinal: ordinal,
    address: `127.0.0.1:${50051 + ordinal}`,
    incarnation: 'uid-1',
    announcedAtMs: Date.now(),
    ...overrides,
  };
}

function announcer(cluster: string, ordinal: number, shard = 0): LeaderAnnouncer {
  const a = new LeaderAnnouncer({ connection: nc, identity: { namespace, cluster, shard, ordinal }, logger });
  cleanups.push(() => a.close());
  return a;
}

async function watcher(cluster: string, incarnation?: string): Promise<LeaderWatcher> {
  const w = await LeaderWatcher.start({
    connection: nc,
    namespace,
    cluster,
    logger,
    ...(incarnation ? { incarnation } : {}),
  });
  cleanups.push(() => w.close());
  return w;
}

async function kvRecord(cluster: string, shard = 0): Promise<LeaderRecord | undefined> {
  const kv = await openLeaderBucket(nc);
  const entry = await kv.get(keyFor(namespace, cluster, shard));
  if (entry === null || entry.operation !== 'PUT') return undefined;
  const decoded = decode(entry.value);
  return decoded.ok ? decoded.value : undefined;
}

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  await nc?.close().catch(() => undefined);
  await server?.stop();
});

describe('bucket', () => {
  it('is created idempotently by racing creators', async () => {
    const connections = await Promise.all([0, 1, 2, 3, 4].map(() => connect({ servers: server.url })));
    try {
      const buckets = await Promise.all(connections.map((c) => openLeaderBucket(c)));
      expect(buckets).toHaveLength(5);
      const status = await buckets[0]!.status();
      expect(status.bucket).toBe('shardbank-leaders');
    } finally {
      await Promise.all(connections.map((c) => c.close()));
    }
  });
});

describe('announce and watch', () => {
  it('a watcher sees an announcement, and the KV holds it', async () => {
    const cluster = newCluster();
    const w = await watcher(cluster);
    expect(await w.whenSynced(20_000)).toBe(true);
    const changes: LeaderChange[] = [];
    w.onChange((change) => changes.push(change));
    const r = record(cluster, { shard: 2, ballot: { round: 4, ordinal: 1 } });
    const outcome = await announcer(cluster, 1, 2).announce(r);
    expect(outcome).toMatchObject({ published: true, kv: KvOutcome.created });
    const seen = await w.waitFor(2, (x) => x.ballot.round === 4, 20_000);
    expect(seen).toEqual(r);
    expect(w.leader(2)).toEqual(r);
    expect(w.leader(0)).toBeUndefined();
    expect(await kvRecord(cluster, 2)).toEqual(r);
    expect(changes[0]).toMatchObject({ shard: 2, record: r, previous: undefined });
  });

  it('a watcher started after the announcement gets the initial value from the KV', async () => {
    const cluster = newCluster();
    const r = record(cluster, { shard: 1, ballot: { round: 7, ordinal: 2 } });
    expect((await announcer(cluster, 2, 1).announce(r)).kv).toBe(KvOutcome.created);
    const w = await watcher(cluster);
    const changes: LeaderChange[] = [];
    w.onChange((change) => changes.push(change));
    expect(await w.waitFor(1, () => true, 20_000)).toEqual(r);
    expect(changes.some((c) => c.source === 'kv')).toBe(true);
    expect(await w.whenSynced(20_000)).toBe(true);
  });

  it('keeps the records of another cluster or namespace apart', async () => {
    const cluster = newCluster();
    const other = newCluster();
    const w = await watcher(cluster);
    expect(await w.whenSynced(20_000)).toBe(true);
    await announcer(other, 0).announce(record(other));
    const mine = record(cluster, { ballot: { round: 1, ordinal: 1 } });
    await announcer(cluster, 1).announce(mine);
    expect(await w.waitFor(0, () => true, 20_000)).toEqual(mine);
    expect(w.leaders().size).toBe(1);
  });

  it('re-announcing the same record leaves the KV unchanged', async () => {
    const cluster = newCluster();
    const a = announcer(cluster, 0);
    const r = record(cluster);
    expect((await a.announce(r)).kv).toBe(KvOutcome.created);
    expect((await a.announce(r)).kv).toBe(KvOutcome.unchanged);
    expect(a.lastRecord()).toEqual(r);
  });
});

describe('compare-and-set', () => {
  it('a lower ballot never overwrites a higher one', async () => {
    const cluster = newCluster();
    const w = await watcher(cluster);
    const high = record(cluster, { ballot: { round: 5, ordinal: 2 } });
    const low = record(cluster, { ballot: { round: 4, ordinal: 1 } });
    const sameRoundLowerOrdinal = record(cluster, { ballot: { round: 5, ordinal: 1 } });
    expect((await announcer(cluster, 2).announce(high)).kv).toBe(KvOutcome.created);
    const loser = announcer(cluster, 1);
    const lowOutcome = await loser.announce(low);
    expect(lowOutcome).toMatchObject({ published: true, kv: KvOutcome.superseded, existing: high });
    expect((await loser.announce(sameRoundLowerOrdinal)).kv).toBe(KvOutcome.superseded);
    expect(await kvRecord(cluster)).toEqual(high);
    // The watcher got the stale records on the plain subject too, and kept the best one.
    expect(await w.waitFor(0, (x) => compareBallots(x.ballot, high.ballot) === 0, 20_000)).toEqual(high);
    const higher = record(cluster, { ballot: { round: 6, ordinal: 1 } });
    expect((await loser.announce(higher)).kv).toBe(KvOutcome.updated);
    expect(await kvRecord(cluster)).toEqual(higher);
    expect(await w.waitFor(0, (x) => x.ballot.round === 6, 20_000)).toEqual(higher);
  });

  it('racing announcers, concurrently: the KV only ever moves up and ends at the highest ballot', async () => {
    const cluster = newCluster();
    const key = keyFor(namespace, cluster, 0);
    const kv = await openLeaderBucket(nc);
    const history: LeaderRecord[] = [];
    const watch = await kv.watch({ key, include: KvWatchInclude.UpdatesOnly });
    const collecting = (async () => {
      for await (const entry of watch) {
        const decoded = decode(entry.value);
        if (decoded.ok) history.push(decoded.value);
      }
    })();
    const ordinals = [0, 1, 2, 3, 4];
    const announcers = ordinals.map((ordinal) => announcer(cluster, ordinal));
    // Every replica announces rounds 1..6 with its own ordinal; all replicas run at once,
    // so the compare-and-set races on every step.
    const outcomes = await Promise.all(
      ordinals.map(async (ordinal) => {
        const results: string[] = [];
        for (let round = 1; round <= 6; round++) {
          const r = record(cluster, { ballot: { round, ordinal } });
          results.push((await announcers[ordinal]!.announce(r)).kv);
        }
        return results;
      }),
    );
    const flat = outcomes.flat();
    expect(flat).not.toContain(KvOutcome.failed);
    const final = await kvRecord(cluster);
    expect(final?.ballot).toEqual({ round: 6, ordinal: 4 });
    await eventually(() => history.some((r) => r.ballot.round === 6 && r.ballot.ordinal === 4), 'the final write');
    for (let i = 1; i < history.length; i++) {
      expect(compareBallots(history[i]!.ballot, history[i - 1]!.ballot)).toBeGreaterThan(0);
    }
    watch.stop();
    await collecting;
  });
});

describe('incarnations', () => {
  it('a new incarnation supersedes an old one for a watcher given the new incarnation', async () => {
    const cluster = newCluster();
    const old = record(cluster, { incarnation: 'uid-old', ballot: { round: 40, ordinal: 2 }, announcedAtMs: 1_000 });
    expect((await announcer(cluster, 2).announce(old)).kv).toBe(KvOutcome.created);
    const w = await watcher(cluster, 'uid-new');
    const anyIncarnation = await watcher(cluster);
    expect(await w.waitFor(0, () => true, 20_000)).toEqual(old);
    // The new cluster's leader has a far lower ballot, but its own incarnation wins the CAS.
    const fresh = record(cluster, { incarnation: 'uid-new', ballot: { round: 1, ordinal: 0 }, announcedAtMs: 2_000 });
    const freshAnnouncer = announcer(cluster, 0);
    expect((await freshAnnouncer.announce(fresh)).kv).toBe(KvOutcome.updated);
    expect(await w.waitFor(0, (x) => x.incarnation === 'uid-new', 20_000)).toEqual(fresh);
    // Without an incarnation, the more recent announcement wins.
    expect(await anyIncarnation.waitFor(0, (x) => x.incarnation === 'uid-new', 20_000)).toEqual(fresh);
    // A late announcement of the old incarnation does not shadow the new one for `w`.
    const zombie = record(cluster, { incarnation: 'uid-old', ballot: { round: 41, ordinal: 1 }, announcedAtMs: 3_000 });
    await announcer(cluster, 1).announce(zombie);
    const marker = record(cluster, { incarnation: 'uid-new', ballot: { round: 2, ordinal: 0 }, announcedAtMs: 4_000 });
    await freshAnnouncer.announce(marker);
    expect(await w.waitFor(0, (x) => x.ballot.round === 2, 20_000)).toEqual(marker);
  });
});

describe('hints from elsewhere', () => {
  it('observe() follows the same rule, forgetLeader() drops only the stale ballot', async () => {
    const cluster = newCluster();
    const w = await LeaderWatcher.start({ namespace, cluster, logger });
    cleanups.push(() => w.close());
    const r3 = record(cluster, { ballot: { round: 3, ordinal: 1 } });
    const r2 = record(cluster, { ballot: { round: 2, ordinal: 2 } });
    expect(w.observe(r3)).toBe(true);
    expect(w.observe(r2)).toBe(false);
    expect(w.observe(record('elsewhere', { ballot: { round: 9, ordinal: 0 } }))).toBe(false);
    expect(w.observe({ ...r3, address: '' })).toBe(false);
    expect(w.leader(0)).toEqual(r3);
    expect(w.forgetLeader(0, { round: 2, ordinal: 2 })).toBe(false);
    expect(w.leader(0)).toEqual(r3);
    const changes: LeaderChange[] = [];
    const unsubscribe = w.onChange((c) => changes.push(c));
    expect(w.forgetLeader(0, r3.ballot)).toBe(true);
    expect(w.leader(0)).toBeUndefined();
    expect(changes).toEqual([{ shard: 0, record: undefined, previous: r3, source: 'forgotten' }]);
    unsubscribe();
    const waiting = w.waitFor(0, (x) => x.ballot.round >= 4, 20_000);
    w.observe(record(cluster, { ballot: { round: 4, ordinal: 0 } }));
    expect((await waiting)?.ballot).toEqual({ round: 4, ordinal: 0 });
    expect(changes).toHaveLength(1);
    expect(await w.waitFor(1, () => true, 10)).toBeUndefined();
  });
});

describe('failures are values', () => {
  it('announce() refuses a record of another replica without throwing', async () => {
    const cluster = newCluster();
    const a = announcer(cluster, 1);
    expect((await a.announce(record(cluster, { ballot: { round: 1, ordinal: 0 } }))).kv).toBe(KvOutcome.invalid);
    expect((await a.announce({ ...record(cluster), shard: 3 })).kv).toBe(KvOutcome.invalid);
    expect((await a.announce({ ...record(cluster, { ballot: { round: 1, ordinal: 1 } }), address: '' })).kv).toBe(
      KvOutcome.invalid,
    );
    expect(await kvRecord(cluster)).toBeUndefined();
  });

  it('an announcer and a watcher whose NATS is unreachable neither throw nor block', async () => {
    const cluster = newCluster();
    const url = `nats://127.0.0.1:${await freePort()}`;
    const a = new LeaderAnnouncer({ servers: url, identity: { namespace, cluster, shard: 0, ordinal: 0 }, logger });
    const w = await LeaderWatcher.start({ servers: url, namespace, cluster, logger });
    const pending = w.waitFor(0, () => true, 60_000);
    const outcome = await a.announce(record(cluster));
    expect(outcome).toMatchObject({ published: false, kv: KvOutcome.notConnected });
    expect(await w.whenSynced(50)).toBe(false);
    await a.close();
    await w.close();
    expect(await pending).toBeUndefined();
    expect((await a.announce(record(cluster))).kv).toBe(KvOutcome.closed);
  });
});
