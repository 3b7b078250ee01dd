// Leader discovery across nats-server failures: SIGKILL and restart on the same store dir,
// restart with a lost store, and components started while NATS is down. Every test runs
// twice: against a plaintext nats-server without users, and with TLS and the replica and
// watcher users (docs/SECURITY.md), where the KV-watch renewal must work just the same.
import { rmSync } from 'node:fs';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decode, keyFor, subjectFor, type LeaderRecord } from '../../node/discovery/leader-record.js';
import { KvOutcome, LeaderAnnouncer } from '../../node/discovery/leader-announcer.js';
import { LeaderWatcher } from '../../node/discovery/leader-watcher.js';
import { natsSecurityOptions, openLeaderBucket } from '../../node/discovery/nats-connection.js';
import type { NatsRole, NatsSecurity } from '../../node/discovery/nats-security.js';
import { freePort, startNatsServer, type NatsServerHandle } from '../support/nats-server.js';
import { makeNatsSecrets, startSecureNatsServer, type NatsSecrets } from '../support/secure-nats.js';
import { eventually } from './poll.js';

const namespace = 'chaos';
const cluster = 'bank';
const logger = pino({ level: process.env['SHARDBANK_TEST_LOG'] ?? 'silent' });
const deadlineMs = 30_000;
const servers: NatsServerHandle[] = [];
let cleanups: (() => Promise<void>)[] = [];
/** Set while the TLS-and-users variant runs. */
let secrets: NatsSecrets | undefined;

function security(role: NatsRole): NatsSecurity {
  return secrets?.security[role] ?? {};
}

function record(shard: number, round: number, ordinal: number): LeaderRecord {
  return {
    cluster,
    namespace,
    shard,
    ballot: { round, ordinal },
    leaderOrdinal: ordinal,
    address: `127.0.0.1:${50051 + ordinal}`,
    incarnation: 'uid-1',
    announcedAtMs: Date.now(),
  };
}

async function startServer(port?: number): Promise<NatsServerHandle> {
  const options = port === undefined ? {} : { port };
  const server = secrets
    ? await startSecureNatsServer(secrets, namespace, cluster, options)
    : await startNatsServer(options);
  servers.push(server);
  return server;
}

function newAnnouncer(url: string, shard: number, ordinal: number): LeaderAnnouncer {
  const announcer = new LeaderAnnouncer({
    servers: url,
    security: security('replica'),
    identity: { namespace, cluster, shard, ordinal },
    logger,
    reannounceIntervalMs: 1_000,
  });
  cleanups.push(() => announcer.close());
  return announcer;
}

async function newWatcher(url: string): Promise<LeaderWatcher> {
  const watcher = await LeaderWatcher.start({
    servers: url,
    security: security('watcher'),
    namespace,
    cluster,
    logger,
  });
  cleanups.push(() => watcher.close());
  return watcher;
}

/** A connection as the replica user (it writes the KV directly in one test). */
async function rawConnection(url: string): Promise<NatsConnection> {
  const nc = await connect({ servers: url, ...natsSecurityOptions(security('replica')) });
  cleanups.push(() => nc.close());
  return nc;
}

/** The announcements that arrive on the plain subject of `shard` from now on. */
function collectPublishes(nc: NatsConnection, shard: number): LeaderRecord[] {
  const seen: LeaderRecord[] = [];
  nc.subscribe(subjectFor(namespace, cluster, shard), {
    callback: (_error, message) => {
      const decoded = decode(message.data);
      if (decoded.ok) seen.push(decoded.value);
    },
  });
  return seen;
}

/** Announces until the KV holds the record (the owned connection comes up asynchronously). */
async function announceUntilStored(announcer: LeaderAnnouncer, r: LeaderRecord, what: string): Promise<void> {
  const stored: string[] = [KvOutcome.created, KvOutcome.updated, KvOutcome.unchanged];
  await eventually(async () => stored.includes((await announcer.announce(r)).kv), what, deadlineMs);
}

async function kvRecord(nc: NatsConnection, shard: number): Promise<LeaderRecord | undefined> {
  const kv = await openLeaderBucket(nc);
  const entry = await kv.get(keyFor(namespace, cluster, shard));
  if (entry === null || entry.operation !== 'PUT') return undefined;
  const decoded = decode(entry.value);
  return decoded.ok ? decoded.value : undefined;
}

afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  cleanups = [];
});

afterAll(async () => {
  for (const server of servers) await server.stop();
  secrets?.remove();
});

describe.each([
  { mode: 'plaintext', secure: false },
  { mode: 'TLS and users', secure: true },
])('$mode', ({ secure }) => {
  beforeAll(async () => {
    secrets?.remove();
    secrets = secure ? await makeNatsSecrets(namespace, cluster) : undefined;
  });

  describe('nats-server killed and restarted', () => {
    it('an existing watcher gets new announcements and the announcer re-announces on its own', async () => {
      const server = await startServer();
      const announcer = newAnnouncer(server.url, 0, 1);
      const watcher = await newWatcher(server.url);
      const first = record(0, 3, 1);
      await announceUntilStored(announcer, first, 'the first write');
      expect(await watcher.waitFor(0, (r) => r.ballot.round === 3, deadlineMs)).toEqual(first);

      await server.kill('SIGKILL');
      await server.start();

      // Nobody calls announce(): the announcer re-publishes the last record by itself.
      const observer = await rawConnection(server.url);
      const republished = collectPublishes(observer, 0);
      await eventually(
        () => republished.find((r) => r.ballot.round === 3),
        're-announcement after restart',
        deadlineMs,
      );

      // A new leader's announcement reaches the watcher that lived through the restart.
      const successor = newAnnouncer(server.url, 0, 2);
      const second = record(0, 4, 2);
      await announceUntilStored(successor, second, 'the successor write');
      expect(await watcher.waitFor(0, (r) => r.ballot.round === 4, deadlineMs)).toEqual(second);
      expect(await kvRecord(observer, 0)).toEqual(second);

      // The old leader keeps re-announcing, but its lower ballot never comes back.
      const before = republished.length;
      await eventually(() => republished.length > before + 1 || undefined, 'more re-announcements', deadlineMs);
      expect(await kvRecord(observer, 0)).toEqual(second);
      expect(watcher.leader(0)).toEqual(second);
    });

    it('the KV watch itself resumes after a restart (the subject alone cannot explain the update)', async () => {
      const server = await startServer();
      const watcher = await newWatcher(server.url);
      expect(await watcher.whenSynced(deadlineMs)).toBe(true);
      await server.kill('SIGKILL');
      await server.start();
      // Written straight into the KV with no plain publish: only the renewed KV watch can see it.
      const nc = await rawConnection(server.url);
      const r = record(1, 9, 0);
      await eventually(async () => {
        const kv = await openLeaderBucket(nc);
        await kv.put(keyFor(namespace, cluster, 1), new TextEncoder().encode(JSON.stringify(r)));
        return true;
      }, 'a direct KV write');
      expect(await watcher.waitFor(1, (x) => x.ballot.round === 9, deadlineMs)).toEqual(r);
    });

    it('a server that lost its store learns the leader again from the announcer', async () => {
      const server = await startServer();
      const announcer = newAnnouncer(server.url, 2, 0);
      const r = record(2, 5, 0);
      await announceUntilStored(announcer, r, 'the first write');
      await server.kill('SIGKILL');
      rmSync(server.storeDir, { recursive: true, force: true });
      await server.start();
      const nc = await rawConnection(server.url);
      // The bucket is gone with the store; the announcer creates it again and rewrites the key.
      expect(await eventually(() => kvRecord(nc, 2), 'the key rewritten after a store loss', deadlineMs)).toEqual(r);
      const lateWatcher = await newWatcher(server.url);
      expect(await lateWatcher.waitFor(2, () => true, deadlineMs)).toEqual(r);
    });
  });

  describe('started while NATS is down', () => {
    it('a watcher and an announcer pick up once NATS comes up', async () => {
      const port = await freePort();
      const url = `nats://127.0.0.1:${port}`;
      const watcher = await newWatcher(url);
      const announcer = newAnnouncer(url, 0, 2);
      // start() returned without NATS; announce() reports the outage as a value.
      const r = record(0, 2, 2);
      expect((await announcer.announce(r)).kv).toBe(KvOutcome.notConnected);
      expect(watcher.leader(0)).toBeUndefined();

      await startServer(port);
      expect(await watcher.waitFor(0, () => true, deadlineMs)).toEqual(r);
      expect(await watcher.whenSynced(deadlineMs)).toBe(true);
    });
  });
});
