// The operator's NATS for a BankCluster, against a real kube-apiserver: its server certificate
// from the cluster CA (the Service's DNS names), the two users in Secrets made once, the config,
// Service and StatefulSet; the replicas get the `replica` user, each client Secret the `watcher`,
// the operator's own leader watch the watcher's files. Then a real nats-server runs the config
// the operator wrote, with the certificate it issued: the replica user from the replicas'
// Secret announces, a watcher made from the client Secret sees it, and neither the watcher nor an
// unauthenticated client can shadow the leader; another cluster's keys are refused to this
// cluster's replicas. An external NATS (spec.nats.url) without a usable credentialsSecret is
// named in the status and an event, and gets no StatefulSet until the Secret is there.
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvOutcome, LeaderAnnouncer } from '../../node/discovery/leader-announcer.js';
import { encode, keyFor, type LeaderRecord } from '../../node/discovery/leader-record.js';
import { LeaderWatcher } from '../../node/discovery/leader-watcher.js';
import { natsSecurityOptions, openLeaderBucket } from '../../node/discovery/nats-connection.js';
import { parseNatsCredentials } from '../../node/discovery/nats-security.js';
import type { KubeObject } from '../../operator/kube/kube-object.js';
import type { ClusterRef, KnownLeader, LeaderDirectory } from '../../operator/leaders/leader-directory.js';
import type { Operator } from '../../operator/operator.js';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.js';
import { condition, createBankCluster, getBankCluster, getOrUndefined } from './support/bank-clusters.js';
import { startTestControlPlane, RESOURCES, type TestControlPlane } from './support/control-plane.js';
import { eventually } from './support/eventually.js';
import { OPERATOR_NAMESPACE, startTestOperator } from './support/operator.js';

const NS = 'bank';
const logger = pino({ level: process.env.SHARDBANK_TEST_LOG_LEVEL ?? 'silent' });
type Secret = KubeObject & { data?: Record<string, string> };
type Sts = KubeObject & {
  spec: {
    template: {
      metadata: { labels?: Record<string, string>; annotations?: Record<string, string> };
      spec: {
        containers: { image?: string; args?: string[] }[];
        volumes: { name: string; projected?: { sources: { secret: { name: string; items: { key: string }[] } }[] } }[];
      };
    };
  };
};

/** Records what the reconciler asks of the leader directory (no NATS reachable from here). */
class RecordingDirectory implements LeaderDirectory {
  readonly refs: ClusterRef[] = [];
  ensure(ref: ClusterRef): Promise<void> {
    this.refs.push(ref);
    return Promise.resolve();
  }
  leader(): KnownLeader | undefined {
    return undefined;
  }
  forget(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

let tcp: TestControlPlane;
let operator: Operator;
const directory = new RecordingDirectory();
const work = mkdtempSync(join(tmpdir(), 'shardbank-reconcile-nats-'));
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  tcp = await startTestControlPlane();
  await tcp.createNamespace(OPERATOR_NAMESPACE);
  await tcp.createNamespace(NS);
  operator = await startTestOperator(tcp, {
    natsImage: 'nats:test',
    leaders: directory,
    natsFilesDir: join(work, 'operator-files'),
  });
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await operator?.stop();
  await tcp?.stop();
  rmSync(work, { recursive: true, force: true });
});

const file = (s: Secret | undefined, key: string) => Buffer.from(s?.data?.[key] ?? '', 'base64').toString();
const secret = (name: string) => getOrUndefined<Secret>(tcp.client, RESOURCES.secret, NS, name);
const sts = (name: string) => getOrUndefined<Sts>(tcp.client, RESOURCES.statefulSet, NS, name);

describe("the operator's NATS for a BankCluster", () => {
  let uid = '';

  it('issues its certificate, makes both users once, and wires replicas, clients and its own watch', async () => {
    const created = await createBankCluster(tcp.client, NS, 'ledger', {
      shards: 1,
      replicasPerShard: 3,
      clients: [{ name: 'app', role: 'transfer' }],
    });
    uid = created.metadata.uid!;
    const ca = await eventually('Secret ledger-ca', () => secret('ledger-ca'));
    const natsTls = await eventually('Secret ledger-nats-tls', () => secret('ledger-nats-tls'));
    const leaf = new X509Certificate(file(natsTls, 'tls.crt'));
    expect(leaf.verify(new X509Certificate(file(ca, 'ca.crt')).publicKey)).toBe(true);
    expect(leaf.subjectAltName).toContain('DNS:ledger-nats.bank.svc');
    expect(leaf.subjectAltName).not.toContain('URI:');
    const replicaSecret = await eventually('Secret ledger-nats-replica', () => secret('ledger-nats-replica'));
    const watcherSecret = await eventually('Secret ledger-nats-watcher', () => secret('ledger-nats-watcher'));
    const replica = parseNatsCredentials(file(replicaSecret, 'credentials.json'), 'replica');
    const watcher = parseNatsCredentials(file(watcherSecret, 'credentials.json'), 'watcher');
    expect([replica.user, watcher.user]).toEqual(['replica', 'watcher']);
    for (const s of [replicaSecret, watcherSecret, natsTls])
      expect(s.metadata.ownerReferences?.some((r) => r.uid === uid && r.controller)).toBe(true);
    const conf = file(await eventually('Secret ledger-nats-config', () => secret('ledger-nats-config')), 'nats.conf');
    expect(conf).toContain(replica.password);
    expect(conf).toContain(watcher.password);

    const nats = await eventually('StatefulSet ledger-nats', () => sts('ledger-nats'));
    expect(nats.spec.template.spec.containers[0]!.image).toBe('nats:test');
    expect(nats.spec.template.metadata.labels?.['shardbank.io/cluster']).toBeUndefined();
    expect((await getOrUndefined(tcp.client, RESOURCES.service, NS, 'ledger-nats'))?.metadata.name).toBe('ledger-nats');
    // Its NetworkPolicy admits the operator's namespace (its leader watch).
    const policy = await eventually('NetworkPolicy ledger.nats', () =>
      getOrUndefined<KubeObject & { spec: { ingress: { from: unknown[] }[] } }>(
        tcp.client,
        RESOURCES.networkPolicy,
        NS,
        'ledger.nats',
      ),
    );
    expect(policy.spec.ingress[0]!.from).toContainEqual({
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': OPERATOR_NAMESPACE } },
    });

    // Replicas: the URL, the CA and the replica user, never the watcher's or the config.
    const shard = await eventually('StatefulSet ledger-s0', () => sts('ledger-s0'));
    expect(shard.spec.template.spec.containers[0]!.args).toEqual(
      expect.arrayContaining([
        '--nats-url=nats://ledger-nats.bank.svc:4222',
        '--nats-ca=/etc/shardbank/nats/ca.crt',
        '--nats-creds=/etc/shardbank/nats/credentials.json',
      ]),
    );
    const mounted = shard.spec.template.spec.volumes.find((v) => v.name === 'nats')!.projected!.sources;
    expect(mounted.map((s) => s.secret.name)).toEqual(['ledger-nats-tls', 'ledger-nats-replica']);
    expect(mounted.flatMap((s) => s.secret.items.map((i) => i.key))).toEqual(['ca.crt', 'credentials.json']);

    // Clients: the watcher user, the CA of the NATS certificate, the URL.
    const client = await eventually('client Secret with NATS files', async () => {
      const s = await secret('ledger-client-app');
      return file(s, 'nats-credentials.json') ? s : undefined;
    });
    expect(parseNatsCredentials(file(client, 'nats-credentials.json'), 'client')).toEqual(watcher);
    expect(file(client, 'nats-ca.crt')).toBe(file(natsTls, 'ca.crt'));
    expect(file(client, 'nats-url')).toBe('nats://ledger-nats.bank.svc:4222');

    // The operator's own leader watch: the watcher's files on its disk.
    const ref = await eventually('leader watch with NATS files', () =>
      directory.refs.find((r) => r.name === 'ledger' && r.natsSecurity !== undefined),
    );
    expect(ref.natsUrl).toBe('nats://ledger-nats.bank.svc:4222');
    expect(parseNatsCredentials(readFileSync(ref.natsSecurity!.credentialsFile!, 'utf8'), 'f')).toEqual(watcher);
    expect(readFileSync(ref.natsSecurity!.caFile!, 'utf8')).toBe(file(ca, 'ca.crt'));
    // Never watched without them (a plaintext or anonymous watch would only be refused).
    expect(directory.refs.filter((r) => r.name === 'ledger' && r.natsSecurity === undefined)).toEqual([]);
    const status = await eventually('NatsReady', async () => {
      const c = await getBankCluster(tcp.client, NS, 'ledger');
      return condition(c, 'NatsReady') ? c : undefined;
    });
    expect(condition(status, 'NatsReady')).toMatchObject({ status: 'True', reason: 'ManagedByOperator' });

    // Made once: a later reconcile (a spec change) keeps both passwords.
    await tcp.client.mergePatch(RESOURCES.bankCluster, NS, 'ledger', {
      spec: { podTemplate: { annotations: { touch: '1' } } },
    });
    await eventually('the touch reconciled', async () => {
      const s = await sts('ledger-s0');
      return s?.spec.template.metadata.annotations?.touch === '1' ? true : undefined;
    });
    expect(parseNatsCredentials(file(await secret('ledger-nats-replica'), 'credentials.json'), 'r')).toEqual(replica);
    expect(parseNatsCredentials(file(await secret('ledger-nats-watcher'), 'credentials.json'), 'w')).toEqual(watcher);
  });

  it('the config and certificate it wrote run a real nats-server: replica announces, watcher reads, rogues are refused', async () => {
    const natsTls = (await secret('ledger-nats-tls'))!;
    const dir = mkdtempSync(join(work, 'nats-'));
    writeFileSync(join(dir, 'tls.crt'), file(natsTls, 'tls.crt'));
    writeFileSync(join(dir, 'tls.key'), file(natsTls, 'tls.key'), { mode: 0o600 });
    // The pod's paths, moved to this machine's (startNatsServer's command line sets the store).
    const conf = file(await secret('ledger-nats-config'), 'nats.conf')
      .replaceAll('/etc/nats/', `${dir}/`)
      .replace(/jetstream \{ store_dir: "[^"]*" \}/, 'jetstream: enabled');
    writeFileSync(join(dir, 'nats.conf'), conf, { mode: 0o600 });
    const server: NatsServerHandle = await startNatsServer({ configFile: join(dir, 'nats.conf') });
    cleanups.push(() => server.stop());
    // The replicas' files as their pods see them (the StatefulSet's projected volume, resolved
    // from the Secrets it names) and a client's (its Secret).
    const replicaDir = mkdtempSync(join(dir, 'replica-'));
    const volume = (await sts('ledger-s0'))!.spec.template.spec.volumes.find((v) => v.name === 'nats')!;
    for (const source of volume.projected!.sources) {
      const s = await secret(source.secret.name);
      for (const item of source.secret.items as { key: string; path: string }[])
        writeFileSync(join(replicaDir, item.path), file(s, item.key), { mode: 0o600 });
    }
    const args = (await sts('ledger-s0'))!.spec.template.spec.containers[0]!.args!;
    const flag = (name: string) => args.find((a) => a.startsWith(`${name}=`))!.slice(name.length + 1);
    const replicaFiles = {
      caFile: flag('--nats-ca').replace('/etc/shardbank/nats', replicaDir),
      credentialsFile: flag('--nats-creds').replace('/etc/shardbank/nats', replicaDir),
    };
    const client = (await secret('ledger-client-app'))!;
    const clientFiles = { caFile: join(dir, 'client-ca.crt'), credentialsFile: join(dir, 'client.json') };
    writeFileSync(clientFiles.caFile, file(client, 'nats-ca.crt'));
    writeFileSync(clientFiles.credentialsFile, file(client, 'nats-credentials.json'), { mode: 0o600 });

    const record = (round: number, ordinal: number, address: string, cluster = 'ledger'): LeaderRecord => ({
      cluster,
      namespace: NS,
      shard: 0,
      ballot: { round, ordinal },
      leaderOrdinal: ordinal,
      address,
      incarnation: uid,
      announcedAtMs: Date.now(),
    });
    const announcer = new LeaderAnnouncer({
      servers: server.url,
      security: replicaFiles,
      identity: { namespace: NS, cluster: 'ledger', shard: 0, ordinal: 1 },
      logger,
    });
    cleanups.push(() => announcer.close());
    const genuine = record(3, 1, 'ledger-s0-1.ledger-s0.bank.svc:50051');
    const stored: string[] = [KvOutcome.created, KvOutcome.updated, KvOutcome.unchanged];
    await eventually('the replica user announces', async () =>
      stored.includes((await announcer.announce(genuine)).kv) ? true : undefined,
    );
    const watcher = await LeaderWatcher.start({
      servers: server.url,
      security: clientFiles,
      namespace: NS,
      cluster: 'ledger',
      logger,
    });
    cleanups.push(() => watcher.close());
    expect(await watcher.waitFor(0, (r) => r.ballot.round === 3, 30_000)).toEqual(genuine);

    // The client's (watcher) credentials cannot write the bucket.
    const asWatcher: NatsConnection = await connect({ servers: server.url, ...natsSecurityOptions(clientFiles) });
    cleanups.push(() => asWatcher.close());
    const kv = await openLeaderBucket(asWatcher, 5_000, { create: false });
    const rogue = record(99, 0, '203.0.113.7:50051');
    await expect(kv.put(keyFor(NS, 'ledger', 0), encode(rogue))).rejects.toThrow(/Permissions Violation/);
    // No credentials: refused at connect, with or without TLS.
    await expect(
      connect({ servers: server.url, tls: { caFile: clientFiles.caFile }, reconnect: false }),
    ).rejects.toThrow(/Authorization Violation/i);
    // The replica user of this cluster cannot write another cluster's keys.
    const asReplica = await connect({ servers: server.url, ...natsSecurityOptions(replicaFiles) });
    cleanups.push(() => asReplica.close());
    const replicaKv = await openLeaderBucket(asReplica, 5_000, { create: false });
    await expect(replicaKv.put(keyFor(NS, 'other', 0), encode(record(1, 0, 'x:1', 'other')))).rejects.toThrow(
      /Permissions Violation/,
    );
    // The watcher still sees the genuine leader.
    expect(watcher.leader(0)).toEqual(genuine);
  });

  it("deleting the BankCluster deletes its NATS, its users and the operator's watcher files", async () => {
    const ref = directory.refs.find((r) => r.name === 'ledger' && r.natsSecurity !== undefined)!;
    await tcp.client.delete(RESOURCES.bankCluster, NS, 'ledger');
    await eventually('NATS objects gone', async () => {
      const left = [
        await sts('ledger-nats'),
        await getOrUndefined(tcp.client, RESOURCES.service, NS, 'ledger-nats'),
        await getOrUndefined(tcp.client, RESOURCES.networkPolicy, NS, 'ledger.nats'),
        ...(await Promise.all(
          ['ledger-nats-tls', 'ledger-nats-replica', 'ledger-nats-watcher', 'ledger-nats-config'].map(secret),
        )),
      ].filter((o) => o !== undefined);
      return left.length === 0 ? true : undefined;
    });
    await eventually('watcher files removed', () =>
      existsSync(ref.natsSecurity!.credentialsFile!) ? undefined : true,
    );
  });

  it('an external NATS without a usable credentialsSecret: named in the status and an event, no StatefulSet until it is', async () => {
    await createBankCluster(tcp.client, NS, 'remote', {
      shards: 1,
      replicasPerShard: 1,
      nats: { url: 'tls://nats.platform.svc:4222', credentialsSecret: 'platform-nats' },
    });
    const degraded = await eventually('NatsReady False', async () => {
      const c = await getBankCluster(tcp.client, NS, 'remote');
      return condition(c, 'NatsReady')?.status === 'False' ? c : undefined;
    });
    expect(condition(degraded, 'NatsReady')).toMatchObject({
      reason: 'InvalidNatsSecret',
      message: 'spec.nats.credentialsSecret: Secret platform-nats not found',
    });
    expect(condition(degraded, 'Degraded')).toMatchObject({ status: 'True', reason: 'NatsCredentialsInvalid' });
    const events = await tcp.client.list<KubeObject & { reason?: string; message?: string }>(RESOURCES.event, NS);
    expect(events.items.some((e) => e.reason === 'InvalidNatsSecret' && e.message?.includes('platform-nats'))).toBe(
      true,
    );
    expect(await sts('remote-s0')).toBeUndefined();
    // No operator NATS for an external one.
    expect(await secret('remote-nats-replica')).toBeUndefined();

    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const ca = file(await secret('ledger-ca'), 'ca.crt');
    await tcp.client.create(RESOURCES.secret, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'platform-nats', namespace: NS },
      data: {
        'ca.crt': b64(ca),
        'replica.json': b64('{"user": "bank-replica", "password": "r"}'),
        'watcher.json': b64('{"user": "bank-watcher", "password": "w"}'),
      },
    });
    // The Secret is not watched: a change of the BankCluster (or 5 minutes) looks again.
    await tcp.client.mergePatch(RESOURCES.bankCluster, NS, 'remote', {
      spec: { podTemplate: { annotations: { touch: '1' } } },
    });
    const made = await eventually('StatefulSet remote-s0', () => sts('remote-s0'));
    expect(made.spec.template.spec.containers[0]!.args).toContain('--nats-url=tls://nats.platform.svc:4222');
    expect(made.spec.template.spec.volumes.find((v) => v.name === 'nats')!.projected!.sources[0]!.secret.name).toBe(
      'platform-nats',
    );
    await eventually('NatsReady True', async () =>
      condition(await getBankCluster(tcp.client, NS, 'remote'), 'NatsReady')?.status === 'True' ? true : undefined,
    );
  });
});
