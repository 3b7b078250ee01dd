// NATS for a BankCluster's leader announcements (docs/SECURITY.md, "NATS in Kubernetes"):
// either one the operator runs for this cluster alone (spec.nats.managed: StatefulSet and
// Service <cluster>-nats, TLS from the cluster CA, the users `replica` and `watcher` with the
// permissions of node/discovery/nats-security.ts), or an external one (spec.nats.url) whose CA
// and credentials the user gives in spec.nats.credentialsSecret. Pure functions of the spec.
import { createHash } from 'node:crypto';
import type { V1Secret, V1Service, V1StatefulSet, V1Volume } from '@kubernetes/client-node';
import { names, type BankCluster } from '../../node/cluster/bankcluster.js';
import {
  natsServerConfig,
  NatsRole,
  parseNatsCredentials,
  type NatsCredentials,
} from '../../node/discovery/nats-security.js';
import { LABEL_CLIENT, LABEL_COMPONENT } from './certificates.js';
import { clusterLabels, namespaceOf, ownedMetadata } from './labels.js';
import { replicaPodSelector, type NetworkPolicy } from './network-policy.js';

export const NATS_PORT = 4222;
export const NATS_MONITOR_PORT = 8222;
/** The image the operator runs for managed NATS unless SHARDBANK_NATS_IMAGE says otherwise. */
export const DEFAULT_NATS_IMAGE = 'nats:2.10-alpine';
/** Where a replica pod finds the NATS CA and its user's credentials. */
export const REPLICA_NATS_DIR = '/etc/shardbank/nats';
/** Keys of the files in a replica pod's NATS directory and in the operator's credentials Secrets. */
export const NATS_KEYS = { ca: 'ca.crt', credentials: 'credentials.json' } as const;
/** Keys of the user's Secret for an external NATS (spec.nats.credentialsSecret). */
export const EXTERNAL_NATS_KEYS = { ca: 'ca.crt', replica: 'replica.json', watcher: 'watcher.json' } as const;
/** Keys a client credentials Secret (spec.clients) gets when the cluster has NATS: the watcher user. */
export const CLIENT_NATS_KEYS = { ca: 'nats-ca.crt', credentials: 'nats-credentials.json', url: 'nats-url' } as const;
/** On the NATS pod template: a digest of its config and certificate, so a change restarts it. */
export const NATS_DIGEST_ANNOTATION = 'shardbank.io/nats-digest';
/** The label of the NATS pod (not shardbank.io/cluster: that selects the replicas). */
export const LABEL_NATS = 'shardbank.io/nats';

const NATS_CONFIG_DIR = '/etc/nats';
const NATS_STORE_DIR = '/data/jetstream';
const NATS_RUN_AS = 1000;

export type NatsMode = 'managed' | 'external' | 'none';

/**
 * Which NATS a cluster uses: its own (spec.nats.managed without url, when the operator has a
 * NATS image to run), the external one of spec.nats.url, or none (leader hints and probing).
 */
export function natsModeOf(cluster: BankCluster, natsImage: string | undefined): NatsMode {
  if (cluster.spec.nats.url) return 'external';
  return cluster.spec.nats.managed && natsImage ? 'managed' : 'none';
}

/** The DNS names of the managed NATS's Service (its certificate names each). */
export function natsDnsNames(cluster: BankCluster): string[] {
  const svc = names.nats(cluster.metadata.name);
  const ns = namespaceOf(cluster);
  return [`${svc}.${ns}.svc`, `${svc}.${ns}.svc.cluster.local`, `${svc}.${ns}`, svc];
}

/** The URL of the managed NATS (TLS is negotiated after the server's INFO, `tls {}` requires it). */
export function managedNatsUrl(cluster: BankCluster): string {
  return `nats://${natsDnsNames(cluster)[0]}:${NATS_PORT}`;
}

/** The NATS URL a cluster's replicas, clients and the operator use; undefined for none. */
export function natsUrlOf(cluster: BankCluster, natsImage: string | undefined): string | undefined {
  const mode = natsModeOf(cluster, natsImage);
  if (mode === 'external') return cluster.spec.nats.url;
  return mode === 'managed' ? managedNatsUrl(cluster) : undefined;
}

/** The replica flags for NATS: URL, CA and the `replica` user's credentials. */
export function replicaNatsArgs(cluster: BankCluster, natsImage: string | undefined): string[] {
  const url = natsUrlOf(cluster, natsImage);
  if (url === undefined) return [];
  return [
    `--nats-url=${url}`,
    `--nats-ca=${REPLICA_NATS_DIR}/${NATS_KEYS.ca}`,
    `--nats-creds=${REPLICA_NATS_DIR}/${NATS_KEYS.credentials}`,
  ];
}

/**
 * The replica pod's NATS files, one projected volume: the CA that signed the NATS server's
 * certificate and the `replica` user's credentials (never the watcher's, never the config).
 */
export function replicaNatsVolume(cluster: BankCluster, natsImage: string | undefined): V1Volume | undefined {
  const mode = natsModeOf(cluster, natsImage);
  if (mode === 'none') return undefined;
  const sources =
    mode === 'external'
      ? [
          {
            secret: {
              name: cluster.spec.nats.credentialsSecret!,
              items: [
                { key: EXTERNAL_NATS_KEYS.ca, path: NATS_KEYS.ca },
                { key: EXTERNAL_NATS_KEYS.replica, path: NATS_KEYS.credentials },
              ],
            },
          },
        ]
      : [
          {
            secret: {
              name: names.natsTlsSecret(cluster.metadata.name, cluster.spec.tls?.secretNamePrefix),
              items: [{ key: 'ca.crt', path: NATS_KEYS.ca }],
            },
          },
          {
            secret: {
              name: names.natsCredentialsSecret(cluster.metadata.name, NatsRole.replica),
              items: [{ key: NATS_KEYS.credentials, path: NATS_KEYS.credentials }],
            },
          },
        ];
  return { name: 'nats', projected: { defaultMode: 0o440, sources } };
}

/** Labels of the operator's NATS objects (cached by its informers) ... */
export function natsObjectLabels(cluster: BankCluster, component = 'nats'): Record<string, string> {
  return { ...clusterLabels(cluster), [LABEL_COMPONENT]: component };
}

/** ... and of the NATS pod, which the replicas' selectors (shardbank.io/cluster) must not match. */
export function natsPodLabels(cluster: BankCluster): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'nats',
    'app.kubernetes.io/instance': cluster.metadata.name,
    'app.kubernetes.io/managed-by': clusterLabels(cluster)['app.kubernetes.io/managed-by']!,
    [LABEL_COMPONENT]: 'nats',
    [LABEL_NATS]: cluster.metadata.name,
  };
}

function encode(files: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(files).map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
}

/** A credentials file's text (what `--nats-creds` reads). */
export function credentialsJson(credentials: NatsCredentials): string {
  return `${JSON.stringify(credentials, null, 2)}\n`;
}

/** The operator's Secret of one NATS user of the managed NATS (made once: the password stays). */
export function buildNatsCredentialsSecret(
  cluster: BankCluster,
  role: NatsRole,
  credentials: NatsCredentials,
): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: ownedMetadata(
      cluster,
      names.natsCredentialsSecret(cluster.metadata.name, role),
      natsObjectLabels(cluster, `nats-${role}-credentials`),
    ),
    type: 'Opaque',
    data: encode({ [NATS_KEYS.credentials]: credentialsJson(credentials) }),
  };
}

/** The managed NATS's config: JetStream in the pod's store, TLS required, the two users. */
export function natsConfFor(cluster: BankCluster, users: Record<NatsRole, NatsCredentials>): string {
  return natsServerConfig({
    storeDir: NATS_STORE_DIR,
    tls: { cert: `${NATS_CONFIG_DIR}/tls.crt`, key: `${NATS_CONFIG_DIR}/tls.key` },
    namespace: namespaceOf(cluster),
    cluster: cluster.metadata.name,
    users,
  });
}

export function buildNatsConfigSecret(cluster: BankCluster, conf: string): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: ownedMetadata(
      cluster,
      names.natsConfigSecret(cluster.metadata.name),
      natsObjectLabels(cluster, 'nats-config'),
    ),
    type: 'Opaque',
    data: encode({ 'nats.conf': conf }),
  };
}

/** A digest of the managed NATS's config and certificate for its pod template. */
export function natsDigest(conf: string, tls: { ca?: string; cert?: string }): string {
  return createHash('sha256')
    .update(`${conf}\0${tls.ca ?? ''}\0${tls.cert ?? ''}`)
    .digest('hex')
    .slice(0, 16);
}

export function buildNatsService(cluster: BankCluster): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: ownedMetadata(cluster, names.nats(cluster.metadata.name), natsObjectLabels(cluster)),
    spec: {
      type: 'ClusterIP',
      selector: { [LABEL_NATS]: cluster.metadata.name },
      ports: [{ name: 'client', port: NATS_PORT, targetPort: 'client', protocol: 'TCP' }],
    },
  };
}

/**
 * One nats-server with JetStream on an emptyDir: leader records are hints, and after a
 * restart every announcer re-announces on reconnect (node/discovery/leader-announcer.ts), so
 * a lost store costs nothing but a moment of unknown leaders. Pod Security `restricted`.
 */
export function buildNatsStatefulSet(cluster: BankCluster, image: string, digest: string): V1StatefulSet {
  const name = names.nats(cluster.metadata.name);
  const podLabels = natsPodLabels(cluster);
  const tlsSecret = names.natsTlsSecret(cluster.metadata.name, cluster.spec.tls?.secretNamePrefix);
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: ownedMetadata(cluster, name, natsObjectLabels(cluster)),
    spec: {
      serviceName: name,
      replicas: 1,
      selector: { matchLabels: { [LABEL_NATS]: cluster.metadata.name } },
      template: {
        metadata: { labels: podLabels, annotations: { [NATS_DIGEST_ANNOTATION]: digest } },
        spec: {
          enableServiceLinks: false,
          automountServiceAccountToken: false,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: NATS_RUN_AS,
            runAsGroup: NATS_RUN_AS,
            fsGroup: NATS_RUN_AS,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          containers: [
            {
              name: 'nats',
              image,
              imagePullPolicy: 'IfNotPresent',
              args: ['--config', `${NATS_CONFIG_DIR}/nats.conf`, '--http_port', String(NATS_MONITOR_PORT)],
              ports: [
                { name: 'client', containerPort: NATS_PORT, protocol: 'TCP' },
                { name: 'monitor', containerPort: NATS_MONITOR_PORT, protocol: 'TCP' },
              ],
              readinessProbe: { httpGet: { path: '/healthz?js-enabled-only=true', port: 'monitor' }, periodSeconds: 5 },
              livenessProbe: { httpGet: { path: '/healthz', port: 'monitor' }, periodSeconds: 10, failureThreshold: 6 },
              resources: { requests: { cpu: '20m', memory: '32Mi' }, limits: { memory: '256Mi' } },
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                runAsNonRoot: true,
                capabilities: { drop: ['ALL'] },
              },
              volumeMounts: [
                { name: 'config', mountPath: NATS_CONFIG_DIR, readOnly: true },
                { name: 'data', mountPath: '/data' },
              ],
            },
          ],
          volumes: [
            {
              name: 'config',
              projected: {
                defaultMode: 0o440,
                sources: [
                  {
                    secret: {
                      name: names.natsConfigSecret(cluster.metadata.name),
                      items: [{ key: 'nats.conf', path: 'nats.conf' }],
                    },
                  },
                  {
                    secret: {
                      name: tlsSecret,
                      items: [
                        { key: 'tls.crt', path: 'tls.crt' },
                        { key: 'tls.key', path: 'tls.key' },
                      ],
                    },
                  },
                ],
              },
            },
            { name: 'data', emptyDir: { sizeLimit: '256Mi' } },
          ],
        },
      },
    },
  };
}

/**
 * Ingress to the managed NATS: its client port only from the cluster's replica pods, pods
 * labelled shardbank.io/client=<cluster> (they hold the watcher's files) and the operator's
 * namespace (its leader watch); the monitor port from the monitoring namespace. TLS and the
 * passwords decide who may do what; the policy keeps everyone else off the port.
 */
export function buildNatsNetworkPolicy(
  cluster: BankCluster,
  options: { operatorNamespace?: string; monitoringNamespace?: string } = {},
): NetworkPolicy {
  const namespace = (ns: string) => ({ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } } });
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: ownedMetadata(cluster, names.natsNetworkPolicy(cluster.metadata.name), natsObjectLabels(cluster)),
    spec: {
      podSelector: { matchLabels: { [LABEL_NATS]: cluster.metadata.name } },
      policyTypes: ['Ingress'],
      ingress: [
        {
          from: [
            { podSelector: { matchLabels: replicaPodSelector(cluster) } },
            { podSelector: { matchLabels: { [LABEL_CLIENT]: cluster.metadata.name } } },
            ...(options.operatorNamespace ? [namespace(options.operatorNamespace)] : []),
          ],
          ports: [{ protocol: 'TCP', port: NATS_PORT }],
        },
        ...(options.monitoringNamespace
          ? [{ from: [namespace(options.monitoringNamespace)], ports: [{ protocol: 'TCP', port: NATS_MONITOR_PORT }] }]
          : []),
      ],
    },
  };
}

/** The files of an external NATS's Secret, checked: CA PEM and both credentials files. */
export function checkExternalNatsFiles(
  secretName: string,
  files: Record<string, string> | undefined,
): { ok: true; ca: string; replica: NatsCredentials; watcher: NatsCredentials } | { ok: false; problem: string } {
  const field = `spec.nats.credentialsSecret: Secret ${secretName}`;
  if (files === undefined) return { ok: false, problem: `${field} not found` };
  const ca = files[EXTERNAL_NATS_KEYS.ca];
  if (!ca?.includes('-----BEGIN CERTIFICATE-----'))
    return { ok: false, problem: `${field} has no ${EXTERNAL_NATS_KEYS.ca} (the PEM CA of the NATS server)` };
  const parse = (key: string): NatsCredentials | string => {
    const text = files[key];
    if (text === undefined) return `${field} has no ${key}`;
    try {
      return parseNatsCredentials(text, `${field} ${key}`);
    } catch (error) {
      return (error as Error).message;
    }
  };
  const replica = parse(EXTERNAL_NATS_KEYS.replica);
  if (typeof replica === 'string') return { ok: false, problem: replica };
  const watcher = parse(EXTERNAL_NATS_KEYS.watcher);
  if (typeof watcher === 'string') return { ok: false, problem: watcher };
  if (replica.user === watcher.user)
    return {
      ok: false,
      problem: `${field}: ${EXTERNAL_NATS_KEYS.replica} and ${EXTERNAL_NATS_KEYS.watcher} name the same user ${replica.user}; the watcher must not be able to write leader records`,
    };
  return { ok: true, ca, replica, watcher };
}
