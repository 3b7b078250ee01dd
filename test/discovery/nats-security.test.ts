// NATS with TLS and the two users of docs/SECURITY.md, against a real nats-server configured
// by natsServerConfig: the replica user announces and a watcher sees it; an unauthenticated
// connection, a plaintext one and the watcher user cannot publish a leader or write the leader
// bucket, and the bucket keeps the replica's record (a rogue writer cannot shadow a leader).
import { chmodSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import type { KV } from '@nats-io/kv';
import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decode, encode, keyFor, subjectFor, type LeaderRecord } from '../../node/discovery/leader-record.js';
import { KvOutcome, LeaderAnnouncer } from '../../node/discovery/leader-announcer.js';
import { LeaderWatcher } from '../../node/discovery/leader-watcher.js';
import { natsSecurityOptions, openLeaderBucket } from '../../node/discovery/nats-connection.js';
import {
  credentialsModeProblem,
  NatsCredentialsError,
  parseNatsCredentials,
  readNatsCredentials,
} from '../../node/discovery/nats-security.js';
import { NatsLeaderDirectory } from '../../operator/leaders/leader-directory.js';
import type { NatsServerHandle } from '../support/nats-server.js';
import { makeNatsSecrets, startSecureNatsServer, type NatsSecrets } from '../support/secure-nats.js';
import { eventually } from './poll.js';

const namespace = 'default';
const cluster = 'bank';
const logger = pino({ level: process.env['SHARDBANK_TEST_LOG'] ?? 'silent' });
const deadlineMs = 30_000;
let secrets: NatsSecrets;
let server: NatsServerHandle;
let cleanups: (() => Promise<void>)[] = [];

function record(shard: number, round: number, ordinal: number, address = `127.0.0.1:${50051 + ordinal}`): LeaderRecord {
  return {
    cluster,
    namespace,
    shard,
    ballot: { round, ordinal },
    leaderOrdinal: ordinal,
    address,
    incarnation: 'uid-1',
    announcedAtMs: Date.now(),
  };
}

async function dial(options: Partial<ConnectionOptions>): Promise<NatsConnection> {
  const nc = await connect({ servers: server.url, ...options });
  cleanups.push(() => nc.close());
  return nc;
}

function as(role: 'replica' | 'watcher'): Promise<NatsConnection> {
  return dial(natsSecurityOptions(secrets.security[role]));
}

/** Resolves with the first permission error nats-server reports on `nc` (or says there was none). */
function nextPermissionError(nc: NatsConnection): Promise<string> {
  const statuses = nc.status();
  const error = (async () => {
    for await (const status of statuses) {
      if (status.type === 'error' && /Permissions Violation/.test(status.error.message)) return status.error.message;
    }
    return 'connection closed without a permission error';
  })();
  let timer: NodeJS.Timeout | undefined;
  const none = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`no permission error within ${deadlineMs} ms`), deadlineMs);
  });
  return Promise.race([error, none]).finally(() => {
    clearTimeout(timer);
    (statuses as { stop?: () => void }).stop?.();
  });
}

/** Announces as the replica user until the bucket holds `r`. */
async function announceAsReplica(r: LeaderRecord): Promise<void> {
  const announcer = new LeaderAnnouncer({
    servers: server.url,
    security: secrets.security.replica,
    identity: { namespace, cluster, shard: r.shard, ordinal: r.leaderOrdinal },
    logger,
  });
  cleanups.push(() => announcer.close());
  const stored: string[] = [KvOutcome.created, KvOutcome.updated, KvOutcome.unchanged];
  await eventually(async () => stored.includes((await announcer.announce(r)).kv), 'the replica write', deadlineMs);
}

async function storedRecord(kv: KV, shard: number): Promise<LeaderRecord | undefined> {
  const entry = await kv.get(keyFor(namespace, cluster, shard));
  if (entry === null || entry.operation !== 'PUT') return undefined;
  const decoded = decode(entry.value);
  return decoded.ok ? decoded.value : undefined;
}

/**
 * Records that arrive on the shard's leader subject at a watcher-user subscriber. Once a
 * later sentinel from the replica arrives, anything published before it would have too.
 */
async function subjectRecorder(shard: number): Promise<LeaderRecord[]> {
  const nc = await as('watcher');
  const seen: LeaderRecord[] = [];
  nc.subscribe(subjectFor(namespace, cluster, shard), {
    callback: (_error, message) => {
      const decoded = decode(message.data);
      if (decoded.ok) seen.push(decoded.value);
    },
  });
  await nc.flush();
  return seen;
}

beforeAll(async () => {
  secrets = await makeNatsSecrets(namespace, cluster);
  server = await startSecureNatsServer(secrets, namespace, cluster);
});

afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  cleanups = [];
});

afterAll(async () => {
  await server?.stop();
  secrets?.remove();
});

describe('NATS with TLS and users', () => {
  it('the replica user announces; a watcher sees it on the subject and a later one in the bucket', async () => {
    const early = await LeaderWatcher.start({
      servers: server.url,
      security: secrets.security.watcher,
      namespace,
      cluster,
      logger,
    });
    cleanups.push(() => early.close());
    // Before any replica wrote, the bucket does not exist and the watcher may not create it.
    expect(await early.whenSynced(deadlineMs)).toBe(true);
    const r = record(0, 3, 1);
    await announceAsReplica(r);
    expect(await early.waitFor(0, (x) => x.ballot.round === 3, deadlineMs)).toEqual(r);

    const late = await LeaderWatcher.start({
      servers: server.url,
      security: secrets.security.watcher,
      namespace,
      cluster,
      logger,
    });
    cleanups.push(() => late.close());
    expect(await late.whenSynced(deadlineMs)).toBe(true);
    expect(late.leader(0)).toEqual(r);
  });

  it("the operator's leader directory reads leaders with the watcher credentials", async () => {
    const changed: string[] = [];
    const directory = new NatsLeaderDirectory((ns, name) => changed.push(`${ns}/${name}`), logger);
    cleanups.push(() => directory.close());
    const ref = {
      namespace,
      name: cluster,
      incarnation: 'uid-1',
      natsUrl: server.url,
      natsSecurity: secrets.security.watcher,
    };
    await directory.ensure(ref);
    const r = record(3, 2, 1);
    await announceAsReplica(r);
    const known = await eventually(() => directory.leader(ref, 3), 'the leader in the directory', deadlineMs);
    expect(known).toEqual({ ordinal: 1, address: r.address, ballot: { round: 2, ordinal: 1 } });
    expect(changed).toContain(`${namespace}/${cluster}`);
  });

  it('the watcher user can neither publish a leader nor write, delete or purge the bucket', async () => {
    const genuine = record(1, 5, 2);
    await announceAsReplica(genuine);
    const seen = await subjectRecorder(1);
    const rogue = record(1, 99, 0, '203.0.113.7:50051');
    const nc = await as('watcher');
    const kv = await openLeaderBucket(nc, 5_000, { create: false });

    const refusedPublish = nextPermissionError(nc);
    nc.publish(subjectFor(namespace, cluster, 1), encode(rogue));
    expect(await refusedPublish).toMatch(/Publish to "shardbank\.default\.bank\.leader\.1"/);
    await expect(kv.put(keyFor(namespace, cluster, 1), encode(rogue))).rejects.toThrow(
      /Permissions Violation for Publish to "\$KV\.shardbank-leaders\.default\.bank\.1"/,
    );
    await expect(kv.create(keyFor(namespace, cluster, 7), encode(record(7, 1, 0)))).rejects.toThrow(
      /Permissions Violation/,
    );
    await expect(kv.delete(keyFor(namespace, cluster, 1))).rejects.toThrow(/Permissions Violation/);
    await expect(kv.purge(keyFor(namespace, cluster, 1))).rejects.toThrow(/Permissions Violation/);
    const jsm = await jetstreamManager(nc);
    await expect(jsm.streams.purge('KV_shardbank-leaders')).rejects.toThrow(/Permissions Violation/);
    await expect(jsm.streams.delete('KV_shardbank-leaders')).rejects.toThrow(/Permissions Violation/);

    // The bucket still holds the replica's record, and the subject carried only the replica's.
    const replicaKv = await openLeaderBucket(await as('replica'));
    expect(await storedRecord(replicaKv, 1)).toEqual(genuine);
    const sentinel = record(1, 6, 2);
    await announceAsReplica(sentinel);
    await eventually(() => seen.find((x) => x.ballot.round === 6), 'the sentinel announcement', deadlineMs);
    expect(seen.map((x) => x.ballot.round)).not.toContain(99);
  });

  it('the replica user may write only its own cluster keys and may not reconfigure the bucket', async () => {
    const nc = await as('replica');
    const kv = await openLeaderBucket(nc);
    await expect(
      kv.put(keyFor(namespace, 'other', 0), encode({ ...record(0, 1, 0), cluster: 'other' })),
    ).rejects.toThrow(/Permissions Violation for Publish to "\$KV\.shardbank-leaders\.default\.other\.0"/);
    const refused = nextPermissionError(nc);
    nc.publish(subjectFor(namespace, 'other', 0), encode({ ...record(0, 1, 0), cluster: 'other' }));
    expect(await refused).toMatch(/shardbank\.default\.other\.leader\.0/);
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info('KV_shardbank-leaders');
    await expect(jsm.streams.update('KV_shardbank-leaders', { ...info.config, max_msg_size: 1 })).rejects.toThrow(
      /Permissions Violation/,
    );
    // Its right to create the bucket cannot change the existing one.
    await expect(jsm.streams.add({ ...info.config, max_msg_size: 1 })).rejects.toThrow(/already in use/);
    expect((await jsm.streams.info('KV_shardbank-leaders')).config.max_msg_size).toBe(info.config.max_msg_size);
  });

  it('a watcher replaying stored records onto the leader subject cannot roll watchers back', async () => {
    // nats-server does not check a push consumer's deliver subject against its creator's
    // publish permissions (docs/SECURITY.md): the watcher user can replay stored, genuine
    // records. The ballot rule keeps every watcher on the newest.
    const older = record(4, 1, 0);
    const newer = record(4, 2, 1);
    await announceAsReplica(older);
    await announceAsReplica(newer);
    const watcher = await LeaderWatcher.start({
      servers: server.url,
      security: secrets.security.watcher,
      namespace,
      cluster,
      logger,
    });
    cleanups.push(() => watcher.close());
    expect(await watcher.waitFor(4, (x) => x.ballot.round === 2, deadlineMs)).toEqual(newer);
    const seen = await subjectRecorder(4);
    const changes: number[] = [];
    watcher.onChange((change) => {
      if (change.shard === 4 && change.record) changes.push(change.record.ballot.round);
    });
    const jsm = await jetstreamManager(await as('watcher'));
    await jsm.consumers.add('KV_shardbank-leaders', {
      name: 'replay',
      filter_subject: `$KV.shardbank-leaders.${keyFor(namespace, cluster, 4)}`,
      deliver_subject: subjectFor(namespace, cluster, 4),
      deliver_policy: DeliverPolicy.All,
      ack_policy: AckPolicy.None,
    });
    await eventually(() => seen.find((x) => x.ballot.round === 1), 'the replayed older record', deadlineMs);
    const sentinel = record(4, 3, 1);
    await announceAsReplica(sentinel);
    expect(await watcher.waitFor(4, (x) => x.ballot.round === 3, deadlineMs)).toEqual(sentinel);
    await eventually(() => seen.find((x) => x.ballot.round === 3), 'the sentinel on the subject', deadlineMs);
    // Between the replay and the sentinel the watcher never went back to round 1.
    expect(changes).toEqual([3]);
  });

  it('an unauthenticated or wrongly authenticated connection is refused', async () => {
    await expect(dial({ tls: { caFile: secrets.caFile } })).rejects.toThrow(/Authorization Violation/);
    await expect(
      dial({ tls: { caFile: secrets.caFile }, user: 'replica', pass: `${secrets.credentials.replica.password}x` }),
    ).rejects.toThrow(/Authorization Violation/);
    // Without the cluster CA the client cannot verify the server, so it does not go on.
    await expect(dial({ user: 'replica', pass: secrets.credentials.replica.password })).rejects.toThrow(/certificate/);
  });

  it('a plaintext client is refused even with the replica password, and publishes nothing', async () => {
    const genuine = record(2, 4, 0);
    await announceAsReplica(genuine);
    const seen = await subjectRecorder(2);
    const rogue = encode(record(2, 99, 1, '203.0.113.7:50051'));
    const { password } = secrets.credentials.replica;
    // A raw TCP client that ignores tls_required and speaks the protocol in the clear.
    const reply = await new Promise<string>((resolve) => {
      let received = '';
      const socket = createConnection({ host: '127.0.0.1', port: server.port });
      socket.setTimeout(deadlineMs, () => socket.destroy());
      socket.on('data', (data) => {
        received += data.toString('latin1');
        if (!received.includes('\r\n') || received.includes('CONNECT-SENT')) return;
        socket.write(
          `CONNECT {"user":"replica","pass":"${password}","verbose":false}\r\n` +
            `PUB ${subjectFor(namespace, cluster, 2)} ${rogue.length}\r\n${Buffer.from(rogue).toString('latin1')}\r\nPING\r\n`,
        );
        received += 'CONNECT-SENT';
      });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(received));
    });
    expect(reply).toMatch(/^INFO .*"tls_required":true/);
    expect(reply).not.toMatch(/PONG/);

    const replicaKv = await openLeaderBucket(await as('replica'));
    expect(await storedRecord(replicaKv, 2)).toEqual(genuine);
    const sentinel = record(2, 5, 0);
    await announceAsReplica(sentinel);
    await eventually(() => seen.find((x) => x.ballot.round === 5), 'the sentinel announcement', deadlineMs);
    expect(seen.map((x) => x.ballot.round)).not.toContain(99);
  });
});

describe('NATS credentials files', () => {
  it('parses the documented format and names the file and field that is wrong', () => {
    expect(parseNatsCredentials('{"user":"watcher","password":"p"}', 'f.json')).toEqual({
      user: 'watcher',
      password: 'p',
    });
    expect(() => parseNatsCredentials('watcher:p', 'f.json')).toThrow(/f\.json: not JSON/);
    expect(() => parseNatsCredentials('{"password":"p"}', 'f.json')).toThrow(/f\.json: "user"/);
    expect(() => parseNatsCredentials('{"user":"w","password":""}', 'f.json')).toThrow(/f\.json: "password"/);
    expect(() => parseNatsCredentials('{"user":"w","password":"p","inboxPrefix":"a.b"}', 'f.json')).toThrow(
      /"inboxPrefix"/,
    );
  });

  it('reports an unreadable file and a file readable by others', () => {
    const missing = join(secrets.directory, 'missing.json');
    expect(() => readNatsCredentials(missing)).toThrow(NatsCredentialsError);
    expect(() => readNatsCredentials(missing)).toThrow(/missing\.json: cannot read the NATS credentials/);
    expect(credentialsModeProblem(secrets.security.watcher.credentialsFile!)).toBeUndefined();
    const open = join(secrets.directory, 'open.json');
    writeFileSync(open, '{"user":"w","password":"p"}');
    chmodSync(open, 0o644);
    expect(credentialsModeProblem(open)).toMatch(/mode 0644/);
  });
});
