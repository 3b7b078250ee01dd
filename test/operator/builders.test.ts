// Desired-state builders are pure functions: their output is compared with the expected
// manifests.
import { describe, expect, it } from 'vitest';
import { defaultBankCluster, type BankCluster } from '../../node/cluster/bankcluster.js';
import { buildPodDisruptionBudget, quorumSize } from '../../operator/builders/pod-disruption-budget.js';
import { buildClientService, buildHeadlessService } from '../../operator/builders/services.js';
import { buildStatefulSet } from '../../operator/builders/statefulset.js';
import { natsUrlOf } from '../../operator/builders/nats.js';
import { buildTopologyConfigMap } from '../../operator/builders/topology-config-map.js';
import { desiredObjects } from '../../operator/reconcile/desired-objects.js';
import { isClusterPvcName } from '../../operator/reconcile/finalize.js';
import { leaderLabelChanges } from '../../operator/reconcile/leader-labels.js';
import { parseReplicaConfig } from '../../node/replica/replica-config.js';

/** The replica side of issue 19 (--founding-replicas) is merged: until then the parse tests are skipped. */
function replicaKnowsMembershipFlags(): boolean {
  try {
    parseReplicaConfig(
      [
        '--cluster=x',
        '--shard=0',
        '--founding-replicas=3',
        '--insecure',
        '--peers=a:1,b:1,c:1;a:1,b:1,c:1;a:1,b:1,c:1',
        '--ordinal=0',
      ],
      {},
    );
    return true;
  } catch (error) {
    if (String((error as Error).message).includes('founding-replicas')) return false;
    throw error;
  }
}

function cluster(overrides: Partial<BankCluster['spec']> = {}): BankCluster {
  const c = defaultBankCluster('demo');
  c.metadata = { name: 'demo', namespace: 'money', uid: '1111-2222', generation: 1 };
  c.spec = { ...c.spec, ...overrides };
  return c;
}

const owner = [
  {
    apiVersion: 'shardbank.io/v1alpha1',
    kind: 'BankCluster',
    name: 'demo',
    uid: '1111-2222',
    controller: true,
    blockOwnerDeletion: true,
  },
];
const labels1 = {
  'app.kubernetes.io/name': 'shardbank',
  'app.kubernetes.io/instance': 'demo',
  'app.kubernetes.io/managed-by': 'shardbank-operator',
  'shardbank.io/cluster': 'demo',
  'app.kubernetes.io/component': 'replica',
  'shardbank.io/shard': '1',
};
const selector1 = { 'shardbank.io/cluster': 'demo', 'shardbank.io/shard': '1' };

describe('buildStatefulSet', () => {
  it('builds the expected StatefulSet for shard 1 of a default cluster', () => {
    const spread = (topologyKey: string) => ({
      maxSkew: 1,
      topologyKey,
      whenUnsatisfiable: 'ScheduleAnyway',
      labelSelector: { matchLabels: selector1 },
    });
    expect(buildStatefulSet(cluster(), 1, { natsImage: 'nats:2.10-alpine' })).toEqual({
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: { name: 'demo-s1', namespace: 'money', labels: labels1, ownerReferences: owner },
      spec: {
        serviceName: 'demo-s1',
        replicas: 3,
        podManagementPolicy: 'Parallel',
        updateStrategy: { type: 'OnDelete' },
        persistentVolumeClaimRetentionPolicy: { whenDeleted: 'Retain', whenScaled: 'Retain' },
        selector: { matchLabels: selector1 },
        template: {
          metadata: { labels: labels1 },
          spec: {
            terminationGracePeriodSeconds: 60,
            enableServiceLinks: false,
            automountServiceAccountToken: false,
            securityContext: {
              runAsNonRoot: true,
              runAsUser: 10001,
              runAsGroup: 10001,
              fsGroup: 10001,
              seccompProfile: { type: 'RuntimeDefault' },
            },
            topologySpreadConstraints: [spread('kubernetes.io/hostname'), spread('topology.kubernetes.io/zone')],
            containers: [
              {
                name: 'replica',
                image: 'shardbank/node:0.1.0',
                imagePullPolicy: 'IfNotPresent',
                args: [
                  '--cluster=demo',
                  '--namespace=money',
                  '--incarnation=1111-2222',
                  '--shard=1',
                  '--shards=3',
                  '--replicas-per-shard=3',
                  '--founding-replicas=3',
                  '--items-per-shard=3000',
                  '--initial-balance=10',
                  '--max-transfer-amount=1000000000',
                  '--peer-address-template={cluster}-s{shard}-{ordinal}.{cluster}-s{shard}.{namespace}.svc:50051',
                  '--data-dir=/var/lib/shardbank',
                  '--grpc-port=50051',
                  '--http-port=8080',
                  '--tls-cert=/etc/shardbank/tls/$(POD_NAME)/tls.crt',
                  '--tls-key=/etc/shardbank/tls/$(POD_NAME)/tls.key',
                  '--tls-ca=/etc/shardbank/tls/$(POD_NAME)/ca.crt',
                  '--nats-url=nats://demo-nats.money.svc:4222',
                  '--nats-ca=/etc/shardbank/nats/ca.crt',
                  '--nats-creds=/etc/shardbank/nats/credentials.json',
                ],
                env: [
                  { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                  { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
                ],
                ports: [
                  { name: 'grpc', containerPort: 50051, protocol: 'TCP' },
                  { name: 'http', containerPort: 8080, protocol: 'TCP' },
                ],
                readinessProbe: {
                  httpGet: { path: '/readyz', port: 'http' },
                  periodSeconds: 5,
                  timeoutSeconds: 3,
                  failureThreshold: 3,
                },
                livenessProbe: {
                  httpGet: { path: '/healthz', port: 'http' },
                  periodSeconds: 10,
                  timeoutSeconds: 5,
                  failureThreshold: 6,
                },
                startupProbe: {
                  httpGet: { path: '/healthz', port: 'http' },
                  periodSeconds: 5,
                  timeoutSeconds: 3,
                  failureThreshold: 60,
                },
                resources: {},
                volumeMounts: [
                  { name: 'data', mountPath: '/var/lib/shardbank' },
                  { name: 'tmp', mountPath: '/tmp' },
                  { name: 'tls', mountPath: '/etc/shardbank/tls', readOnly: true },
                  { name: 'nats', mountPath: '/etc/shardbank/nats', readOnly: true },
                ],
                securityContext: {
                  allowPrivilegeEscalation: false,
                  readOnlyRootFilesystem: true,
                  runAsNonRoot: true,
                  capabilities: { drop: ['ALL'] },
                },
              },
            ],
            volumes: [
              { name: 'tmp', emptyDir: { sizeLimit: '64Mi' } },
              {
                name: 'tls',
                projected: {
                  defaultMode: 0o440,
                  sources: [0, 1, 2, 3, 4, 5, 6, 7, 8].map((o) => ({
                    secret: {
                      name: `demo-s1-${o}-tls`,
                      optional: true,
                      items: [
                        { key: 'ca.crt', path: `demo-s1-${o}/ca.crt` },
                        { key: 'tls.crt', path: `demo-s1-${o}/tls.crt` },
                        { key: 'tls.key', path: `demo-s1-${o}/tls.key` },
                      ],
                    },
                  })),
                },
              },
              {
                // The CA of the cluster's own NATS and the `replica` user (never the watcher's).
                name: 'nats',
                projected: {
                  defaultMode: 0o440,
                  sources: [
                    { secret: { name: 'demo-nats-tls', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
                    {
                      secret: {
                        name: 'demo-nats-replica',
                        items: [{ key: 'credentials.json', path: 'credentials.json' }],
                      },
                    },
                  ],
                },
              },
            ],
          },
        },
        volumeClaimTemplates: [
          {
            apiVersion: 'v1',
            kind: 'PersistentVolumeClaim',
            metadata: { name: 'data', labels: selector1 },
            spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
          },
        ],
      },
    });
  });

  it('carries resources, storage class, retention, TLS and pod template overrides', () => {
    const sts = buildStatefulSet(
      cluster({
        resources: { limits: { memory: '1Gi' } },
        storage: { size: '5Gi', storageClassName: 'fast', retainOnDelete: false },
        tls: { secretNamePrefix: 'bank-tls' },
        podTemplate: {
          labels: { team: 'payments', 'shardbank.io/shard': 'spoofed' },
          annotations: { a: 'b' },
          nodeSelector: { disk: 'ssd' },
          tolerations: [{ key: 'k', operator: 'Exists' }],
        },
      }),
      0,
    );
    const pod = sts.spec!.template.spec!;
    expect(pod.containers[0]!.resources).toEqual({ limits: { memory: '1Gi' } });
    expect(sts.spec!.volumeClaimTemplates![0]!.spec).toEqual({
      accessModes: ['ReadWriteOnce'],
      resources: { requests: { storage: '5Gi' } },
      storageClassName: 'fast',
    });
    expect(sts.spec!.persistentVolumeClaimRetentionPolicy).toEqual({ whenDeleted: 'Delete', whenScaled: 'Retain' });
    // spec.tls: the user's Secrets, one per replica, <prefix>-s<shard>-<ordinal>.
    const tls = pod.volumes!.find((v) => v.name === 'tls')!.projected!.sources!.map((s) => s.secret!.name);
    expect(tls).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8].map((o) => `bank-tls-s0-${o}`));
    // A certificate digest goes on the pod template (a new certificate rolls the pods).
    const rolled = buildStatefulSet(cluster({ podTemplate: { annotations: { a: 'b' } } }), 2, {
      tlsDigests: ['x', 'y', 'z'],
    });
    expect(rolled.spec!.template.metadata!.annotations).toEqual({ a: 'b', 'shardbank.io/tls-digest': 'z' });
    expect(pod.containers[0]!.volumeMounts).toContainEqual({
      name: 'tls',
      mountPath: '/etc/shardbank/tls',
      readOnly: true,
    });
    expect(sts.spec!.template.metadata!.labels!['team']).toBe('payments');
    // Overrides never change the selector labels.
    expect(sts.spec!.template.metadata!.labels!['shardbank.io/shard']).toBe('0');
    expect(sts.spec!.template.metadata!.annotations).toEqual({ a: 'b' });
    expect(pod.nodeSelector).toEqual({ disk: 'ssd' });
    expect(pod.tolerations).toEqual([{ key: 'k', operator: 'Exists' }]);
  });

  it('uses spec.nats.url, the managed NATS, or none', () => {
    expect(
      natsUrlOf(cluster({ nats: { url: 'nats://mine:4222', managed: false, credentialsSecret: 's' } }), 'nats:2'),
    ).toBe('nats://mine:4222');
    expect(natsUrlOf(cluster(), 'nats:2')).toBe('nats://demo-nats.money.svc:4222');
    expect(natsUrlOf(cluster({ nats: { managed: false } }), 'nats:2')).toBeUndefined();
    // An operator without a NATS image runs none.
    expect(natsUrlOf(cluster(), undefined)).toBeUndefined();
    expect(
      buildStatefulSet(cluster(), 0).spec!.template.spec!.containers[0]!.args!.some((a) => a.startsWith('--nats-url')),
    ).toBe(false);
  });

  it('keeps the pod template the same whatever spec.replicasPerShard is: the founding size, every pod slot', () => {
    // A shard founded with 3, now asked to have 5 (the driver has scaled it to 4 pods).
    const shapes = [0, 1, 2].map(() => ({ foundingReplicas: 3, pods: 4 }));
    const before = buildStatefulSet(cluster({ replicasPerShard: 3 }), 1, {
      shapes: shapes.map(() => ({ foundingReplicas: 3, pods: 3 })),
    });
    const after = buildStatefulSet(cluster({ replicasPerShard: 5 }), 1, { shapes });
    expect(after.spec!.template).toEqual(before.spec!.template);
    expect([before.spec!.replicas, after.spec!.replicas]).toEqual([3, 4]);
    const args = after.spec!.template.spec!.containers[0]!.args!;
    expect(args).toContain('--founding-replicas=3');
    expect(args).toContain('--replicas-per-shard=3');
    // A new shard is founded with the spec's size.
    expect(buildStatefulSet(cluster({ replicasPerShard: 5 }), 1).spec!.template.spec!.containers[0]!.args).toContain(
      '--founding-replicas=5',
    );
  });

  it.skipIf(!replicaKnowsMembershipFlags())(
    'a pod beyond the founding size gets arguments the replica accepts (needs the replica side of issue 19)',
    () => {
      const c = cluster({ shards: 2, replicasPerShard: 5 });
      const container = buildStatefulSet(c, 1, { shapes: [0, 1].map(() => ({ foundingReplicas: 3, pods: 5 })) }).spec!
        .template.spec!.containers[0]!;
      const args = container.args!.map((a) => a.replaceAll('$(POD_NAME)', 'demo-s1-4'));
      const config = parseReplicaConfig(args, { POD_NAME: 'demo-s1-4', POD_NAMESPACE: 'money' });
      expect(config).toMatchObject({ shard: 1, ordinal: 4 });
    },
  );

  it.skipIf(!replicaKnowsMembershipFlags())(
    'passes arguments the replica itself accepts (its own flag parser, env as the pod gets it)',
    () => {
      const c = cluster({ shards: 2, itemsPerShard: 50, initialBalance: 7, maxTransferAmount: 99 });
      const container = buildStatefulSet(c, 1, { natsImage: 'nats:2' }).spec!.template.spec!.containers[0]!;
      // The kubelet expands $(POD_NAME) in args from the container's env.
      const args = container.args!.map((a) => a.replaceAll('$(POD_NAME)', 'demo-s1-2'));
      expect(container.env!.map((e) => e.name)).toContain('POD_NAME');
      const config = parseReplicaConfig(args, { POD_NAME: 'demo-s1-2', POD_NAMESPACE: 'money' });
      expect(config).toMatchObject({
        cluster: 'demo',
        namespace: 'money',
        incarnation: '1111-2222',
        shard: 1,
        ordinal: 2,
        topology: { shards: 2, replicasPerShard: 3, itemsPerShard: 50, initialBalance: 7 },
        maxTransferAmount: 99,
        dataDir: '/var/lib/shardbank',
        natsUrl: 'nats://demo-nats.money.svc:4222',
        natsSecurity: { caFile: '/etc/shardbank/nats/ca.crt', credentialsFile: '/etc/shardbank/nats/credentials.json' },
        grpcPort: 50051,
        httpPort: 8080,
        peerTls: {
          cert: '/etc/shardbank/tls/demo-s1-2/tls.crt',
          key: '/etc/shardbank/tls/demo-s1-2/tls.key',
          ca: '/etc/shardbank/tls/demo-s1-2/ca.crt',
        },
      });
      expect(config.peers[1]).toEqual([
        'demo-s1-0.demo-s1.money.svc:50051',
        'demo-s1-1.demo-s1.money.svc:50051',
        'demo-s1-2.demo-s1.money.svc:50051',
      ]);
      expect(config.peers[0]![0]).toBe('demo-s0-0.demo-s0.money.svc:50051');
    },
  );

  it('is pure: same input, same output, input untouched', () => {
    const c = cluster();
    const copy = structuredClone(c);
    expect(buildStatefulSet(c, 2)).toEqual(buildStatefulSet(c, 2));
    expect(c).toEqual(copy);
  });
});

describe('Services, PodDisruptionBudget, ConfigMap', () => {
  it('builds a headless Service that publishes not-ready replicas', () => {
    expect(buildHeadlessService(cluster(), 1)).toEqual({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'demo-s1', namespace: 'money', labels: labels1, ownerReferences: owner },
      spec: {
        clusterIP: 'None',
        publishNotReadyAddresses: true,
        selector: selector1,
        ports: [
          { name: 'grpc', port: 50051, targetPort: 'grpc', protocol: 'TCP' },
          { name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' },
        ],
      },
    });
  });

  it('builds a client Service over every replica of the cluster', () => {
    const svc = buildClientService(cluster());
    expect(svc.metadata!.name).toBe('demo-client');
    expect(svc.spec!.selector).toEqual({ 'shardbank.io/cluster': 'demo' });
    expect(svc.spec!.type).toBe('ClusterIP');
    expect(svc.spec!.ports![0]).toEqual({
      name: 'grpc',
      port: 50051,
      targetPort: 'grpc',
      protocol: 'TCP',
      appProtocol: 'grpc',
    });
  });

  it('keeps a majority of the current voters with the PodDisruptionBudget and builds none for one voter', () => {
    expect([1, 3, 5, 7].map(quorumSize)).toEqual([1, 2, 3, 4]);
    expect(buildPodDisruptionBudget(cluster({ replicasPerShard: 5 }), 1)).toEqual({
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: { name: 'demo-s1', namespace: 'money', labels: labels1, ownerReferences: owner },
      spec: { maxUnavailable: 2, selector: { matchLabels: selector1 } },
    });
    expect(buildPodDisruptionBudget(cluster({ replicasPerShard: 1 }), 0)).toBeUndefined();
    // During 3 -> 5: 3 voters and a learner's pod: still one pod at a time.
    const growing = [{ foundingReplicas: 3, pods: 4, voters: 3 }];
    expect(buildPodDisruptionBudget(cluster({ shards: 1, replicasPerShard: 5 }), 0, growing)!.spec).toMatchObject({
      maxUnavailable: 1,
    });
    const grown = [{ foundingReplicas: 3, pods: 5, voters: 5 }];
    expect(buildPodDisruptionBudget(cluster({ shards: 1, replicasPerShard: 5 }), 0, grown)!.spec).toMatchObject({
      maxUnavailable: 2,
    });
    // A lost disk being replaced: 4 voters, one of them gone for good: no slack left.
    const replacing = [{ foundingReplicas: 3, pods: 3, voters: 4, deadVoters: 1 }];
    expect(buildPodDisruptionBudget(cluster({ shards: 1, replicasPerShard: 3 }), 0, replacing)!.spec).toMatchObject({
      maxUnavailable: 0,
    });
    // Voters unknown: no more than the pods that exist may vote.
    const unknown = [{ foundingReplicas: 3, pods: 3 }];
    expect(buildPodDisruptionBudget(cluster({ shards: 1, replicasPerShard: 5 }), 0, unknown)!.spec).toMatchObject({
      maxUnavailable: 1,
    });
    // Shrinking 3 -> 1: the last two voters allow nothing; one voter gets no budget.
    expect(
      buildPodDisruptionBudget(cluster({ shards: 1, replicasPerShard: 1 }), 0, [
        { foundingReplicas: 3, pods: 2, voters: 2 },
      ])!.spec,
    ).toMatchObject({ maxUnavailable: 0 });
    expect(
      buildPodDisruptionBudget(cluster({ shards: 1, replicasPerShard: 1 }), 0, [
        { foundingReplicas: 3, pods: 1, voters: 1 },
      ]),
    ).toBeUndefined();
  });

  it('writes the topology ConfigMap with item ranges and replica addresses', () => {
    const cm = buildTopologyConfigMap(cluster({ shards: 2, itemsPerShard: 100, replicasPerShard: 1 }));
    expect(JSON.parse(cm.data!['topology.json']!)).toEqual({
      cluster: 'demo',
      namespace: 'money',
      incarnation: '1111-2222',
      shards: [
        { shard: 0, items: [1, 100], statefulSet: 'demo-s0', replicas: ['demo-s0-0.demo-s0.money.svc:50051'] },
        { shard: 1, items: [101, 200], statefulSet: 'demo-s1', replicas: ['demo-s1-0.demo-s1.money.svc:50051'] },
      ],
      itemsPerShard: 100,
      replicasPerShard: 1,
      initialBalance: 10,
      maxTransferAmount: 1_000_000_000,
      clientService: 'demo-client.money.svc:50051',
    });
  });

  it('lists every desired object once, each owned by the cluster', () => {
    const objects = desiredObjects(cluster(), {});
    expect(objects.map((o) => `${o.resource.kind}/${o.object.metadata.name}`)).toEqual([
      'NetworkPolicy/demo',
      'ConfigMap/demo-topology',
      'Service/demo-client',
      'Service/demo-s0',
      'PodDisruptionBudget/demo-s0',
      'StatefulSet/demo-s0',
      'Service/demo-s1',
      'PodDisruptionBudget/demo-s1',
      'StatefulSet/demo-s1',
      'Service/demo-s2',
      'PodDisruptionBudget/demo-s2',
      'StatefulSet/demo-s2',
    ]);
    for (const o of objects) expect(o.object.metadata.ownerReferences).toEqual(owner);
  });

  it('refuses to build for a cluster without a uid (it must come from the API server)', () => {
    const c = cluster();
    delete c.metadata.uid;
    expect(() => buildStatefulSet(c, 0)).toThrow(/no uid/);
  });
});

describe('deletion and leader label helpers', () => {
  it('recognises only the PVC names the StatefulSets make', () => {
    const c = cluster({ shards: 2 });
    expect(isClusterPvcName(c, 'data-demo-s0-0')).toBe(true);
    expect(isClusterPvcName(c, 'data-demo-s1-12')).toBe(true);
    expect(isClusterPvcName(c, 'data-demo-s2-0')).toBe(false);
    expect(isClusterPvcName(c, 'data-demo-s0-x')).toBe(false);
    expect(isClusterPvcName(c, 'other-demo-s0-0')).toBe(false);
  });

  it('moves the leader label to the leader pod only', () => {
    const pods = [
      { name: 'demo-s0-0', labeled: true },
      { name: 'demo-s0-1', labeled: false },
      { name: 'demo-s0-2', labeled: false },
    ];
    expect(leaderLabelChanges(cluster(), 0, 1, pods)).toEqual([
      ['demo-s0-0', false],
      ['demo-s0-1', true],
    ]);
    expect(leaderLabelChanges(cluster(), 0, undefined, pods)).toEqual([['demo-s0-0', false]]);
    expect(leaderLabelChanges(cluster(), 0, 0, pods)).toEqual([]);
  });
});
