// Desired StatefulSet of one shard: stable pod identity `<cluster>-s<shard>-<ordinal>`,
// one PVC per replica, probes on the replica's HTTP port, replicas spread across nodes
// and zones, and the replica flags of docs/CONTRACTS.md. A pure function of the spec and the
// shard's shape (builders/shard-shape.ts). The pod template does not depend on the shard's
// current size (spec.replicasPerShard): a change of size is an online membership change
// (reconcile/membership-driver.ts) that only moves spec.replicas, so no pod restarts.
import type { V1Container, V1PodSpec, V1StatefulSet, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import { names, type BankCluster } from '../../node/cluster/bankcluster.js';
import { SECRET_KEYS, TLS_DIGEST_ANNOTATION } from './certificates.js';
import { namespaceOf, ownedMetadata, shardLabels, shardSelector } from './labels.js';
import { REPLICA_NATS_DIR, replicaNatsArgs, replicaNatsVolume } from './nats.js';
import { DATA_DIR, DATA_VOLUME, GRPC_PORT, HTTP_PORT, PEER_ADDRESS_TEMPLATE } from './ports.js';
import { POD_SLOTS, shapeOf, type ShardShape } from './shard-shape.js';

export interface BuildOptions {
  /**
   * The nats-server image the operator runs for a BankCluster with spec.nats.managed (one NATS
   * per cluster, operator/builders/nats.ts); undefined: such clusters get no NATS.
   */
  natsImage?: string;
  /**
   * Per shard, a digest of its replicas' certificates (operator/reconcile/certificates.ts): a
   * re-issued or replaced certificate changes the pod template, so the operator's rolling
   * update (followers first, the leader last) moves every pod onto it.
   */
  tlsDigests?: string[];
  /** Namespace whose pods may reach the replicas' HTTP port (operator/builders/network-policy.ts). */
  monitoringNamespace?: string;
  /** The operator's own namespace: its leader watch may reach the managed NATS. */
  operatorNamespace?: string;
  /**
   * Per shard, its founding size and current pod count (reconcile/membership-driver.ts);
   * undefined for a shard: one being created now, founded with spec.replicasPerShard.
   */
  shapes?: ShardShape[];
}

/** Each replica's files are under `<TLS_DIR>/<pod name>/` (see tlsVolume). */
export const TLS_DIR = '/etc/shardbank/tls';
const RUN_AS_USER = 10001;
export const TERMINATION_GRACE_SECONDS = 60;

export function replicaArgs(cluster: BankCluster, shard: number, options: BuildOptions = {}): string[] {
  const s = cluster.spec;
  const founding = shapeOf(cluster, shard, options.shapes).foundingReplicas;
  const args = [
    `--cluster=${cluster.metadata.name}`,
    `--namespace=${namespaceOf(cluster)}`,
    `--incarnation=${cluster.metadata.uid ?? ''}`,
    `--shard=${shard}`,
    `--shards=${s.shards}`,
    // The founding size, never the current one: it fixes the shard's initial configuration
    // (members 0..n-1) forever; members added since are in the configuration itself.
    `--replicas-per-shard=${founding}`,
    `--founding-replicas=${founding}`,
    `--items-per-shard=${s.itemsPerShard}`,
    `--initial-balance=${s.initialBalance}`,
    `--max-transfer-amount=${s.maxTransferAmount}`,
    `--peer-address-template=${PEER_ADDRESS_TEMPLATE}`,
    `--data-dir=${DATA_DIR}`,
    `--grpc-port=${GRPC_PORT}`,
    `--http-port=${HTTP_PORT}`,
    // Each pod of the shard sees every replica's files (one projected volume per StatefulSet)
    // and takes its own: the kubelet expands $(POD_NAME) from the env below.
    `--tls-cert=${TLS_DIR}/$(POD_NAME)/${SECRET_KEYS.cert}`,
    `--tls-key=${TLS_DIR}/$(POD_NAME)/${SECRET_KEYS.key}`,
    `--tls-ca=${TLS_DIR}/$(POD_NAME)/${SECRET_KEYS.ca}`,
  ];
  args.push(...replicaNatsArgs(cluster, options.natsImage));
  return args;
}

function container(cluster: BankCluster, shard: number, options: BuildOptions): V1Container {
  const mounts: V1VolumeMount[] = [
    { name: DATA_VOLUME, mountPath: DATA_DIR },
    { name: 'tmp', mountPath: '/tmp' },
  ];
  mounts.push({ name: 'tls', mountPath: TLS_DIR, readOnly: true });
  if (replicaNatsVolume(cluster, options.natsImage))
    mounts.push({ name: 'nats', mountPath: REPLICA_NATS_DIR, readOnly: true });
  return {
    name: 'replica',
    image: cluster.spec.image,
    imagePullPolicy: cluster.spec.imagePullPolicy,
    args: replicaArgs(cluster, shard, options),
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
    ],
    ports: [
      { name: 'grpc', containerPort: GRPC_PORT, protocol: 'TCP' },
      { name: 'http', containerPort: HTTP_PORT, protocol: 'TCP' },
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
    resources: (cluster.spec.resources ?? {}) as V1Container['resources'],
    volumeMounts: mounts,
    securityContext: {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
    },
  };
}

/**
 * A StatefulSet cannot mount a different Secret in each pod, so every pod of a shard mounts
 * all of its shard's replica Secrets, each under `<pod name>/`, and picks its own by name.
 * It lists every pod slot a configuration can use (POD_SLOTS), each optional: the operator
 * issues a slot's certificate before it adds that pod, and the template stays the same
 * whatever the shard's size.
 * A replica can therefore read its shard siblings' keys; that widens nothing, because a
 * replica key already has full power over its shard (docs/SECURITY.md), and no pod sees
 * another shard's keys or the CA key.
 */
export function tlsVolume(cluster: BankCluster, shard: number): V1Volume {
  const prefix = cluster.spec.tls?.secretNamePrefix;
  return {
    name: 'tls',
    projected: {
      // Owner and fsGroup read (the replica runs as RUN_AS_USER with fsGroup RUN_AS_USER).
      defaultMode: 0o440,
      sources: Array.from({ length: POD_SLOTS }, (_, ordinal) => {
        const pod = names.pod(cluster.metadata.name, shard, ordinal);
        return {
          secret: {
            name: names.replicaTlsSecret(cluster.metadata.name, shard, ordinal, prefix),
            optional: true,
            items: [SECRET_KEYS.ca, SECRET_KEYS.cert, SECRET_KEYS.key].map((key) => ({ key, path: `${pod}/${key}` })),
          },
        };
      }),
    },
  };
}

function podSpec(cluster: BankCluster, shard: number, options: BuildOptions): V1PodSpec {
  const overrides = cluster.spec.podTemplate ?? {};
  const volumes: V1Volume[] = [{ name: 'tmp', emptyDir: { sizeLimit: '64Mi' } }];
  volumes.push(tlsVolume(cluster, shard));
  const nats = replicaNatsVolume(cluster, options.natsImage);
  if (nats) volumes.push(nats);
  const spread = (topologyKey: string) => ({
    maxSkew: 1,
    topologyKey,
    whenUnsatisfiable: 'ScheduleAnyway',
    labelSelector: { matchLabels: shardSelector(cluster, shard) },
  });
  const spec: V1PodSpec = {
    terminationGracePeriodSeconds: TERMINATION_GRACE_SECONDS,
    enableServiceLinks: false,
    automountServiceAccountToken: false,
    securityContext: {
      runAsNonRoot: true,
      runAsUser: RUN_AS_USER,
      runAsGroup: RUN_AS_USER,
      fsGroup: RUN_AS_USER,
      seccompProfile: { type: 'RuntimeDefault' },
    },
    topologySpreadConstraints: [spread('kubernetes.io/hostname'), spread('topology.kubernetes.io/zone')],
    containers: [container(cluster, shard, options)],
    volumes,
  };
  if (overrides.affinity) spec.affinity = overrides.affinity as V1PodSpec['affinity'];
  if (overrides.tolerations) spec.tolerations = overrides.tolerations as V1PodSpec['tolerations'];
  if (overrides.nodeSelector) spec.nodeSelector = overrides.nodeSelector;
  return spec;
}

export function buildStatefulSet(cluster: BankCluster, shard: number, options: BuildOptions = {}): V1StatefulSet {
  const name = names.statefulSet(cluster.metadata.name, shard);
  const labels = shardLabels(cluster, shard);
  const overrides = cluster.spec.podTemplate ?? {};
  const storage = cluster.spec.storage;
  const tlsDigest = options.tlsDigests?.[shard];
  const digest = tlsDigest ? { [TLS_DIGEST_ANNOTATION]: tlsDigest } : undefined;
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: ownedMetadata(cluster, name, labels),
    spec: {
      serviceName: names.headlessService(cluster.metadata.name, shard),
      // The membership driver's pod count (one pod at a time during a change of size).
      replicas: shapeOf(cluster, shard, options.shapes).pods,
      // Paxos needs a majority up before any replica is ready: start them all at once.
      podManagementPolicy: 'Parallel',
      // The operator rolls pods itself, followers first and the leader last
      // (operator/reconcile/rollout.ts); the StatefulSet controller only re-creates them.
      updateStrategy: { type: 'OnDelete' },
      persistentVolumeClaimRetentionPolicy: {
        whenDeleted: storage.retainOnDelete ? 'Retain' : 'Delete',
        whenScaled: 'Retain',
      },
      selector: { matchLabels: shardSelector(cluster, shard) },
      template: {
        metadata: {
          labels: { ...(overrides.labels ?? {}), ...labels },
          ...(overrides.annotations || digest ? { annotations: { ...(overrides.annotations ?? {}), ...digest } } : {}),
        },
        spec: podSpec(cluster, shard, options),
      },
      volumeClaimTemplates: [
        {
          apiVersion: 'v1',
          kind: 'PersistentVolumeClaim',
          metadata: { name: DATA_VOLUME, labels: shardSelector(cluster, shard) },
          spec: {
            accessModes: ['ReadWriteOnce'],
            resources: { requests: { storage: storage.size } },
            ...(storage.storageClassName ? { storageClassName: storage.storageClassName } : {}),
          },
        },
      ],
    },
  };
}
