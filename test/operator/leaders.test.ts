// Leaders announced on a real nats-server (JetStream KV bucket shardbank-leaders) with TLS and
// the two users (an external NATS: spec.nats.url and spec.nats.credentialsSecret, which the
// operator's own leader watch connects with, as the `watcher` user) appear in BankCluster status, the leader pod gets the label shardbank.io/role=leader, and the
// label follows a new leader. Records of another incarnation (an older cluster of the
// same name) are ignored. Pods are created by the test: no kubelet or StatefulSet
// controller runs here.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeaderAnnouncer, KvOutcome } from '../../node/discovery/leader-announcer.js';
import type { LeaderRecord } from '../../node/discovery/leader-record.js';
import type { KubeObject } from '../../operator/kube/kube-object.js';
import type { Operator } from '../../operator/operator.js';

interface PodSpec {
  containers: { args?: string[] }[];
  volumes: { name: string; projected?: { sources: unknown[] } }[];
}
import { readFileSync } from 'node:fs';
import type { NatsServerHandle } from '../support/nats-server.js';
import { makeNatsSecrets, startSecureNatsServer, type NatsSecrets } from '../support/secure-nats.js';
import { startTestControlPlane, RESOURCES, type TestControlPlane } from './support/control-plane.js';
import { eventually } from './support/eventually.js';
import { OPERATOR_NAMESPACE, startTestOperator } from './support/operator.js';
import { condition, createBankCluster, getBankCluster, reportStatefulSetStatus } from './support/bank-clusters.js';

const NS = 'bank';
const CLUSTER = 'ledger';
let nats: NatsServerHandle;
let secrets: NatsSecrets;
let tcp: TestControlPlane;
let operator: Operator;
const announcers: LeaderAnnouncer[] = [];
let uid = '';

beforeAll(async () => {
  secrets = await makeNatsSecrets(NS, CLUSTER);
  nats = await startSecureNatsServer(secrets, NS, CLUSTER);
  tcp = await startTestControlPlane();
  await tcp.createNamespace(OPERATOR_NAMESPACE);
  await tcp.createNamespace(NS);
  const b64 = (file: string) => readFileSync(file).toString('base64');
  await tcp.client.create(RESOURCES.secret, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'platform-nats', namespace: NS },
    data: {
      'ca.crt': b64(secrets.caFile),
      'replica.json': b64(secrets.security.replica.credentialsFile!),
      'watcher.json': b64(secrets.security.watcher.credentialsFile!),
    },
  });
  operator = await startTestOperator(tcp);
});

afterAll(async () => {
  for (const a of announcers) await a.close();
  await operator?.stop();
  await tcp?.stop();
  await nats?.stop();
  secrets?.remove();
});

function announcer(shard: number, ordinal: number): LeaderAnnouncer {
  const a = new LeaderAnnouncer({
    servers: nats.url,
    security: secrets.security.replica,
    identity: { namespace: NS, cluster: CLUSTER, shard, ordinal },
  });
  announcers.push(a);
  return a;
}

function record(shard: number, ordinal: number, round: number, incarnation = uid): LeaderRecord {
  return {
    cluster: CLUSTER,
    namespace: NS,
    shard,
    ballot: { round, ordinal },
    leaderOrdinal: ordinal,
    address: `${CLUSTER}-s${shard}-${ordinal}.${CLUSTER}-s${shard}.${NS}.svc:50051`,
    incarnation,
    announcedAtMs: Date.now(),
  };
}

async function announce(a: LeaderAnnouncer, r: LeaderRecord): Promise<void> {
  const outcome = await eventually('announcement written', async () => {
    const o = await a.announce(r);
    return o.kv === KvOutcome.created || o.kv === KvOutcome.updated || o.kv === KvOutcome.unchanged ? o : undefined;
  });
  expect(outcome.published).toBe(true);
}

async function podLabels(name: string): Promise<Record<string, string>> {
  return (await tcp.client.get(RESOURCES.pod, NS, name)).metadata.labels ?? {};
}

describe('leaders from NATS', () => {
  it('shows the announced leader and ballot in status and labels the leader pod', async () => {
    const created = await createBankCluster(tcp.client, NS, CLUSTER, {
      shards: 2,
      replicasPerShard: 3,
      itemsPerShard: 10,
      nats: { url: nats.url, credentialsSecret: 'platform-nats' },
    });
    uid = created.metadata.uid!;
    for (const shard of [0, 1]) {
      for (const ordinal of [0, 1, 2]) {
        await tcp.client.create(RESOURCES.pod, {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: {
            name: `${CLUSTER}-s${shard}-${ordinal}`,
            namespace: NS,
            labels: { 'shardbank.io/cluster': CLUSTER, 'shardbank.io/shard': String(shard) },
          },
          spec: { containers: [{ name: 'replica', image: 'shardbank/node:0.1.0' }] },
        });
      }
    }
    await eventually(
      'StatefulSets created',
      async () => (await tcp.client.list(RESOURCES.statefulSet, NS)).items.length === 2,
    );
    // The replicas get the `replica` user's file and the CA from the user's Secret, never the watcher's.
    const sts = await tcp.client.get<KubeObject & { spec: { template: { spec: PodSpec } } }>(
      RESOURCES.statefulSet,
      NS,
      `${CLUSTER}-s0`,
    );
    const podSpec = sts.spec.template.spec;
    expect(podSpec.containers[0]!.args).toEqual(
      expect.arrayContaining([
        `--nats-url=${nats.url}`,
        '--nats-ca=/etc/shardbank/nats/ca.crt',
        '--nats-creds=/etc/shardbank/nats/credentials.json',
      ]),
    );
    expect(podSpec.volumes.find((v) => v.name === 'nats')?.projected?.sources).toEqual([
      {
        secret: {
          name: 'platform-nats',
          items: [
            { key: 'ca.crt', path: 'ca.crt' },
            { key: 'replica.json', path: 'credentials.json' },
          ],
        },
      },
    ]);
    await eventually('NatsReady', async () =>
      condition(await getBankCluster(tcp.client, NS, CLUSTER), 'NatsReady')?.reason === 'CredentialsSecretValid'
        ? true
        : undefined,
    );
    await reportStatefulSetStatus(tcp.client, NS, `${CLUSTER}-s0`, 3);
    await reportStatefulSetStatus(tcp.client, NS, `${CLUSTER}-s1`, 3);

    await announce(announcer(0, 1), record(0, 1, 3));
    const o = await eventually('leader of shard 0 in status', async () => {
      const c = await getBankCluster(tcp.client, NS, CLUSTER);
      return c.status?.shards?.[0]?.leader ? c : undefined;
    });
    expect(o.status!.shards![0]!.leader).toEqual({
      ordinal: 1,
      pod: `${CLUSTER}-s0-1`,
      address: `${CLUSTER}-s0-1.${CLUSTER}-s0.${NS}.svc:50051`,
      ballot: { round: 3, ordinal: 1 },
    });
    expect(o.status!.leaders).toBe('1/2');
    expect(condition(o, 'Ready')?.status).toBe('False');
    await eventually(
      'leader pod labeled',
      async () => (await podLabels(`${CLUSTER}-s0-1`))['shardbank.io/role'] === 'leader',
    );
    expect((await podLabels(`${CLUSTER}-s0-0`))['shardbank.io/role']).toBeUndefined();
  });

  it('moves the label to a new leader, ignores another incarnation, and is Ready once every shard has a leader', async () => {
    // A stale record of an older cluster with the same name, with a higher ballot.
    await announce(announcer(1, 0), record(1, 0, 99, 'an-older-incarnation'));
    await announce(announcer(0, 2), record(0, 2, 4));
    const moved = await eventually('new leader of shard 0 in status', async () => {
      const c = await getBankCluster(tcp.client, NS, CLUSTER);
      return c.status?.shards?.[0]?.leader?.ordinal === 2 ? c : undefined;
    });
    expect(moved.status!.shards![0]!.leader!.ballot).toEqual({ round: 4, ordinal: 2 });
    expect(moved.status!.shards![1]!.leader).toBeUndefined();
    await eventually('label moved', async () => {
      const [old, next] = [await podLabels(`${CLUSTER}-s0-1`), await podLabels(`${CLUSTER}-s0-2`)];
      return old['shardbank.io/role'] === undefined && next['shardbank.io/role'] === 'leader';
    });

    await announce(announcer(1, 2), record(1, 2, 1));
    const ready = await eventually('Ready with leaders', async () => {
      const c = await getBankCluster(tcp.client, NS, CLUSTER);
      return c.status?.phase === 'Ready' ? c : undefined;
    });
    expect(ready.status!.leaders).toBe('2/2');
    expect(condition(ready, 'Ready')).toMatchObject({ status: 'True', reason: 'AllShardsServing' });
  });
});
