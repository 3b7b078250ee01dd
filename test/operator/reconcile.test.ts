// The operator against a real kube-apiserver: owned objects, spec edits, self-healing,
// status conditions and deletion. No kube-controller-manager runs here, so nothing is
// garbage-collected by owner references and no StatefulSet controller reports status:
// the operator deletes what it owns itself, and the tests report StatefulSet status.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KubeObject } from '../../operator/kube/kube-object.js';
import type { Operator } from '../../operator/operator.js';
import { pino } from 'pino';
import { FINALIZER } from '../../operator/builders/labels.js';
import { Informer } from '../../operator/controller/informer.js';
import { startTestControlPlane, RESOURCES, type TestControlPlane } from './support/control-plane.js';
import { eventually } from './support/eventually.js';
import { OPERATOR_NAMESPACE, startTestOperator } from './support/operator.js';
import {
  condition,
  createBankCluster,
  getBankCluster,
  getOrUndefined,
  reportStatefulSetStatus,
  type BankClusterObject,
} from './support/bank-clusters.js';

const NS = 'bank';
type Sts = KubeObject & {
  spec: {
    replicas: number;
    template: {
      spec: { containers: { image: string; args: string[]; resources?: Record<string, Record<string, string>> }[] };
    };
  };
};

let tcp: TestControlPlane;
let operator: Operator;

beforeAll(async () => {
  // ConfigMap watches bypass the watch cache, so that etcd compaction yields real 410s.
  tcp = await startTestControlPlane({ extraApiserverArgs: ['--watch-cache-sizes=configmaps#0'] });
  await tcp.createNamespace(OPERATOR_NAMESPACE);
  await tcp.createNamespace(NS);
  operator = await startTestOperator(tcp);
});

afterAll(async () => {
  await operator?.stop();
  await tcp?.stop();
});

describe('operator reconcile', () => {
  let demo: BankClusterObject;

  it('creates the per-shard Services, StatefulSets and PDBs, the client Service and the ConfigMap, all owned', async () => {
    demo = await createBankCluster(tcp.client, NS, 'demo', { shards: 2, replicasPerShard: 3, itemsPerShard: 100 });
    const uid = demo.metadata.uid!;
    const owned = (o: KubeObject | undefined) =>
      o?.metadata.ownerReferences?.some((r) => r.uid === uid && r.controller && r.kind === 'BankCluster');
    for (const shard of [0, 1]) {
      const sts = await eventually(`StatefulSet demo-s${shard}`, () =>
        getOrUndefined<Sts>(tcp.client, RESOURCES.statefulSet, NS, `demo-s${shard}`),
      );
      expect(owned(sts)).toBe(true);
      expect(sts.spec.replicas).toBe(3);
      const args = sts.spec.template.spec.containers[0]!.args;
      expect(args).toContain(`--incarnation=${uid}`);
      expect(args).toContain(`--shard=${shard}`);
      expect(args).toContain(
        '--peer-address-template={cluster}-s{shard}-{ordinal}.{cluster}-s{shard}.{namespace}.svc:50051',
      );
      const svc = await eventually(`Service demo-s${shard}`, () =>
        getOrUndefined<KubeObject & { spec: { clusterIP: string } }>(
          tcp.client,
          RESOURCES.service,
          NS,
          `demo-s${shard}`,
        ),
      );
      expect(svc.spec.clusterIP).toBe('None');
      expect(owned(svc)).toBe(true);
      const pdb = await eventually(`PDB demo-s${shard}`, () =>
        getOrUndefined<KubeObject & { spec: { maxUnavailable: number } }>(
          tcp.client,
          RESOURCES.podDisruptionBudget,
          NS,
          `demo-s${shard}`,
        ),
      );
      expect(pdb.spec.maxUnavailable).toBe(1);
      expect(owned(pdb)).toBe(true);
    }
    const client = await eventually('client Service', () =>
      getOrUndefined(tcp.client, RESOURCES.service, NS, 'demo-client'),
    );
    expect(owned(client)).toBe(true);
    const cm = await eventually('topology ConfigMap', () =>
      getOrUndefined<KubeObject & { data: Record<string, string> }>(
        tcp.client,
        RESOURCES.configMap,
        NS,
        'demo-topology',
      ),
    );
    expect(owned(cm)).toBe(true);
    const topology = JSON.parse(cm.data['topology.json']!);
    expect(topology.shards[1].items).toEqual([101, 200]);
    expect(topology.incarnation).toBe(uid);
    const withFinalizer = await eventually('finalizer', async () => {
      const o = await getBankCluster(tcp.client, NS, 'demo');
      return o.metadata.finalizers?.includes(FINALIZER) ? o : undefined;
    });
    expect(withFinalizer.metadata.finalizers).toContain(FINALIZER);
  });

  it('reports observedGeneration and Progressing until the StatefulSets are ready, then Ready, then Degraded below a majority', async () => {
    const progressing = await eventually('Progressing status', async () => {
      const o = await getBankCluster(tcp.client, NS, 'demo');
      return o.status?.observedGeneration === o.metadata.generation && condition(o, 'Progressing')?.status === 'True'
        ? o
        : undefined;
    });
    expect(condition(progressing, 'Ready')?.status).toBe('False');
    expect(progressing.status?.phase).toBe('Progressing');
    for (const c of progressing.status!.conditions!) expect(c.reason.length).toBeGreaterThan(0);

    await reportStatefulSetStatus(tcp.client, NS, 'demo-s0', 3);
    await reportStatefulSetStatus(tcp.client, NS, 'demo-s1', 3);
    const ready = await eventually('Ready status', async () => {
      const o = await getBankCluster(tcp.client, NS, 'demo');
      return o.status?.phase === 'Ready' ? o : undefined;
    });
    expect(condition(ready, 'Ready')).toMatchObject({ status: 'True', reason: 'AllShardsServing' });
    expect(condition(ready, 'Progressing')?.status).toBe('False');
    expect(condition(ready, 'Degraded')?.status).toBe('False');
    expect(ready.status?.ready).toBe('6/6');

    await reportStatefulSetStatus(tcp.client, NS, 'demo-s0', 1);
    const degraded = await eventually('Degraded status', async () => {
      const o = await getBankCluster(tcp.client, NS, 'demo');
      return o.status?.phase === 'Degraded' ? o : undefined;
    });
    expect(condition(degraded, 'Degraded')).toMatchObject({ status: 'True', reason: 'QuorumLost' });
    expect(condition(degraded, 'Ready')?.status).toBe('False');
    await reportStatefulSetStatus(tcp.client, NS, 'demo-s0', 3);
  });

  it('applies spec edits (image, resources) to the StatefulSets and follows the new generation', async () => {
    const before = await getBankCluster(tcp.client, NS, 'demo');
    await tcp.client.mergePatch(RESOURCES.bankCluster, NS, 'demo', {
      spec: {
        image: 'shardbank/node:0.2.0',
        resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { memory: '512Mi' } },
      },
    });
    for (const shard of [0, 1]) {
      const sts = await eventually(`StatefulSet demo-s${shard} updated`, async () => {
        const s = await tcp.client.get<Sts>(RESOURCES.statefulSet, NS, `demo-s${shard}`);
        return s.spec.template.spec.containers[0]!.image === 'shardbank/node:0.2.0' ? s : undefined;
      });
      expect(sts.spec.template.spec.containers[0]!.resources).toEqual({
        requests: { cpu: '250m', memory: '256Mi' },
        limits: { memory: '512Mi' },
      });
    }
    const after = await eventually('observedGeneration follows', async () => {
      const o = await getBankCluster(tcp.client, NS, 'demo');
      return o.status?.observedGeneration === o.metadata.generation &&
        o.metadata.generation! > before.metadata.generation!
        ? o
        : undefined;
    });
    expect(condition(after, 'Progressing')?.observedGeneration).toBe(after.metadata.generation);
  });

  it('keeps labels that others add to owned objects', async () => {
    await tcp.client.mergePatch(RESOURCES.service, NS, 'demo-client', {
      metadata: { labels: { 'team.example/owner': 'payments' } },
    });
    await tcp.client.mergePatch(RESOURCES.bankCluster, NS, 'demo', { spec: { maxTransferAmount: 5000 } });
    await eventually('ConfigMap reflects the new spec', async () => {
      const cm = await tcp.client.get<KubeObject & { data: Record<string, string> }>(
        RESOURCES.configMap,
        NS,
        'demo-topology',
      );
      return JSON.parse(cm.data['topology.json']!).maxTransferAmount === 5000;
    });
    const svc = await tcp.client.get(RESOURCES.service, NS, 'demo-client');
    expect(svc.metadata.labels?.['team.example/owner']).toBe('payments');
  });

  it('recreates a deleted StatefulSet', async () => {
    const old = await tcp.client.get(RESOURCES.statefulSet, NS, 'demo-s1');
    await tcp.client.delete(RESOURCES.statefulSet, NS, 'demo-s1');
    const recreated = await eventually('StatefulSet demo-s1 recreated', async () => {
      const s = await getOrUndefined(tcp.client, RESOURCES.statefulSet, NS, 'demo-s1');
      return s && s.metadata.uid !== old.metadata.uid ? s : undefined;
    });
    expect(recreated.metadata.ownerReferences?.[0]?.uid).toBe(demo.metadata.uid);
  });

  it('gives a single-replica cluster no PodDisruptionBudget and says so in a condition and an event', async () => {
    const solo = await createBankCluster(tcp.client, NS, 'solo', { shards: 1, replicasPerShard: 1 });
    await eventually('StatefulSet solo-s0', () => getOrUndefined(tcp.client, RESOURCES.statefulSet, NS, 'solo-s0'));
    const o = await eventually('QuorumProtected condition', async () => {
      const c = await getBankCluster(tcp.client, NS, 'solo');
      return condition(c, 'QuorumProtected') ? c : undefined;
    });
    expect(condition(o, 'QuorumProtected')).toMatchObject({ status: 'False', reason: 'SingleReplica' });
    expect(await getOrUndefined(tcp.client, RESOURCES.podDisruptionBudget, NS, 'solo-s0')).toBeUndefined();
    const events = await eventually('NoDisruptionBudget event', async () => {
      const list = await tcp.client.list<KubeObject & { reason: string; involvedObject: { uid: string } }>(
        RESOURCES.event,
        NS,
      );
      const mine = list.items.filter(
        (e) => e.involvedObject.uid === solo.metadata.uid && e.reason === 'NoDisruptionBudget',
      );
      return mine.length > 0 ? mine : undefined;
    });
    expect(events.length).toBeGreaterThan(0);
  });

  it('never takes over an object it does not own: Degraded with a message that says which', async () => {
    await tcp.client.create(RESOURCES.configMap, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'taken-topology', namespace: NS },
      data: { mine: 'yes' },
    });
    await createBankCluster(tcp.client, NS, 'taken', { shards: 1 });
    const o = await eventually('Degraded ReconcileFailed', async () => {
      const c = await getBankCluster(tcp.client, NS, 'taken');
      return condition(c, 'Degraded')?.reason === 'ReconcileFailed' ? c : undefined;
    });
    expect(condition(o, 'Degraded')?.message).toContain(
      'ConfigMap taken-topology exists and is not owned by this BankCluster',
    );
    expect(o.status?.phase).toBe('Degraded');
    const cm = await tcp.client.get<KubeObject & { data: Record<string, string> }>(
      RESOURCES.configMap,
      NS,
      'taken-topology',
    );
    expect(cm.data).toEqual({ mine: 'yes' });
    expect(cm.metadata.ownerReferences).toBeUndefined();
  });

  it('leaves the workloads alone while paused', async () => {
    await createBankCluster(tcp.client, NS, 'resting', { shards: 1, paused: true });
    const o = await eventually('Paused phase', async () => {
      const c = await getBankCluster(tcp.client, NS, 'resting');
      return c.status?.phase === 'Paused' ? c : undefined;
    });
    expect(condition(o, 'Progressing')).toMatchObject({ status: 'False', reason: 'Paused' });
    expect(await getOrUndefined(tcp.client, RESOURCES.statefulSet, NS, 'resting-s0')).toBeUndefined();
    await tcp.client.mergePatch(RESOURCES.bankCluster, NS, 'resting', { spec: { paused: false } });
    await eventually('StatefulSet once unpaused', () =>
      getOrUndefined(tcp.client, RESOURCES.statefulSet, NS, 'resting-s0'),
    );
  });

  it('on deletion removes the workloads it owns and keeps the PVCs when retainOnDelete is true (the default)', async () => {
    // The PVC the StatefulSet controller would have made for demo-s0-0.
    await tcp.client.create(RESOURCES.persistentVolumeClaim, {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: {
        name: 'data-demo-s0-0',
        namespace: NS,
        labels: { 'shardbank.io/cluster': 'demo', 'shardbank.io/shard': '0' },
      },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
    });
    await tcp.client.delete(RESOURCES.bankCluster, NS, 'demo');
    await eventually(
      'BankCluster demo gone',
      async () => (await getOrUndefined(tcp.client, RESOURCES.bankCluster, NS, 'demo')) === undefined,
    );
    for (const [resource, name] of [
      [RESOURCES.statefulSet, 'demo-s0'],
      [RESOURCES.statefulSet, 'demo-s1'],
      [RESOURCES.service, 'demo-s0'],
      [RESOURCES.service, 'demo-client'],
      [RESOURCES.podDisruptionBudget, 'demo-s1'],
      [RESOURCES.configMap, 'demo-topology'],
    ] as const) {
      const live = await getOrUndefined(tcp.client, resource, NS, name);
      expect(
        live === undefined || live.metadata.deletionTimestamp !== undefined,
        `${resource.kind} ${name} deleted`,
      ).toBe(true);
    }
    const pvc = await getOrUndefined(tcp.client, RESOURCES.persistentVolumeClaim, NS, 'data-demo-s0-0');
    expect(pvc?.metadata.deletionTimestamp).toBeUndefined();
  });

  it('deletes the PVCs when retainOnDelete is false', async () => {
    await createBankCluster(tcp.client, NS, 'scratch', { shards: 1, storage: { retainOnDelete: false } });
    await eventually('StatefulSet scratch-s0', () =>
      getOrUndefined(tcp.client, RESOURCES.statefulSet, NS, 'scratch-s0'),
    );
    await eventually('finalizer on scratch', async () =>
      (await getBankCluster(tcp.client, NS, 'scratch')).metadata.finalizers?.includes(FINALIZER),
    );
    await tcp.client.create(RESOURCES.persistentVolumeClaim, {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: {
        name: 'data-scratch-s0-2',
        namespace: NS,
        labels: { 'shardbank.io/cluster': 'scratch', 'shardbank.io/shard': '0' },
      },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
    });
    await tcp.client.delete(RESOURCES.bankCluster, NS, 'scratch');
    // With no kube-controller-manager the pvc-protection finalizer stays: a PVC whose
    // deletion was requested shows a deletionTimestamp instead of disappearing.
    await eventually('PVC deletion requested', async () => {
      const pvc = await getOrUndefined(tcp.client, RESOURCES.persistentVolumeClaim, NS, 'data-scratch-s0-2');
      return pvc === undefined || pvc.metadata.deletionTimestamp !== undefined;
    });
  });
});

describe('watch resourceVersion handling on the real API server', () => {
  async function compactEtcd(): Promise<void> {
    // Move the revision past every ConfigMap event (two writes: a watch from `old` starts at
    // old+1, and compacting at R keeps R itself), then compact up to it.
    const secrets = { apiVersion: 'v1', kind: 'Secret', plural: 'secrets', namespaced: true } as const;
    for (let i = 0; i < 2; i++) {
      await tcp.client.create(secrets, {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { generateName: 'bump-', namespace: NS } as never,
      });
    }
    const etcd = `http://127.0.0.1:${tcp.cp.etcdPort}`;
    const range = await fetch(`${etcd}/v3/kv/range`, {
      method: 'POST',
      body: JSON.stringify({ key: Buffer.from('/none').toString('base64') }),
    });
    const revision = ((await range.json()) as { header: { revision: string } }).header.revision;
    const r = await fetch(`${etcd}/v3/kv/compaction`, {
      method: 'POST',
      body: JSON.stringify({ revision, physical: true }),
    });
    expect(r.status).toBe(200);
  }

  it('answers a watch from a compacted resourceVersion with a 410 Gone ERROR event', async () => {
    const old = (await tcp.client.list(RESOURCES.configMap, NS)).metadata.resourceVersion!;
    await compactEtcd();
    const events: { type: string; code?: number }[] = [];
    const handle = await tcp.client.watch(RESOURCES.configMap, { resourceVersion: old, timeoutSeconds: 30 }, (e) =>
      events.push({ type: e.type, code: e.object.code }),
    );
    try {
      await eventually('410 ERROR event', () => events.some((e) => e.type === 'ERROR' && e.code === 410));
    } finally {
      handle.abort();
    }
  });

  it('an informer whose resourceVersion was compacted away relists and keeps up', async () => {
    const seen: string[] = [];
    const informer = new Informer<KubeObject>(
      tcp.client,
      RESOURCES.configMap,
      (t, o) => seen.push(`${t}:${o.metadata.name}`),
      pino({ level: 'silent' }),
      {
        watchTimeoutSeconds: 2,
        retryMs: 100,
      },
    );
    informer.start();
    try {
      await eventually('informer synced', () => informer.hasSynced);
      await compactEtcd();
      await eventually('relist after 410', () => informer.stats.relists >= 2);
      await tcp.client.create(RESOURCES.configMap, {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'after-relist', namespace: NS },
        data: {},
      });
      await eventually('informer sees a new object', () => seen.includes('add:after-relist'));
    } finally {
      await informer.stop();
    }
  });
});
