// What each replica's and client's certificate must say, the Secrets that hold them, and the
// checks the operator applies to a certificate it finds (its own, to decide on renewal, or
// one the user provides with spec.tls). Pure functions; issuing is node/security/x509.ts,
// the reconcile step operator/reconcile/certificates.ts.
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import { names, type BankCluster, type ClientSpec } from '../../node/cluster/bankcluster.js';
import { clientIdentityUri, identitiesOf, replicaIdentityUri, sanUris } from '../../node/security/identity.js';
import { parseCertificates } from '../../node/security/x509.js';
import { clusterLabels, namespaceOf, ownedMetadata } from './labels.js';

export const CA_DAYS = 3650;
/** Leaf certificates (replicas, clients) the operator issues live this long by default. */
export const DEFAULT_LEAF_LIFETIME_MS = 90 * 86_400_000;
/** The operator re-issues a leaf once this fraction of its lifetime has passed. */
export const RENEW_AT_FRACTION = 2 / 3;

export const LABEL_COMPONENT = 'app.kubernetes.io/component';
export const LABEL_CLIENT = 'shardbank.io/client';
/** On a client credential Secret: the client's name in spec.clients. */
export const LABEL_CLIENT_NAME = 'shardbank.io/client-name';
/** On each pod template: a digest of its shard's certificates, so a new one rolls the pods. */
export const TLS_DIGEST_ANNOTATION = 'shardbank.io/tls-digest';

export const SECRET_KEYS = { ca: 'ca.crt', cert: 'tls.crt', key: 'tls.key' } as const;

export function replicaUri(cluster: BankCluster, shard: number, ordinal: number): string {
  return replicaIdentityUri({ namespace: namespaceOf(cluster), cluster: cluster.metadata.name, shard, ordinal });
}

export function clientUri(cluster: BankCluster, client: ClientSpec): string {
  return clientIdentityUri({
    namespace: namespaceOf(cluster),
    cluster: cluster.metadata.name,
    role: client.role,
    name: client.name,
  });
}

/**
 * DNS names a replica's certificate carries: its own pod name through the shard's headless
 * Service (what PEER_ADDRESS_TEMPLATE dials), the client Service (clients that verify the
 * server name), and localhost (kubectl port-forward). Shardbank itself decides by the URI.
 */
export function replicaDnsNames(cluster: BankCluster, shard: number, ordinal: number): string[] {
  const ns = namespaceOf(cluster);
  const pod = names.pod(cluster.metadata.name, shard, ordinal);
  const svc = names.headlessService(cluster.metadata.name, shard);
  const client = names.clientService(cluster.metadata.name);
  return [
    `${pod}.${svc}.${ns}.svc`,
    `${pod}.${svc}.${ns}.svc.cluster.local`,
    `${pod}.${svc}.${ns}`,
    `${pod}.${svc}`,
    `${client}.${ns}.svc`,
    `${client}.${ns}.svc.cluster.local`,
    `${client}.${ns}`,
    client,
    'localhost',
  ];
}

/** The decoded PEM files of a Secret (absent keys stay absent). */
export function secretFiles(secret: { data?: Record<string, string> } | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(secret?.data ?? {})) out[key] = Buffer.from(value, 'base64').toString();
  return out;
}

export interface ExpectedLeaf {
  /** Its one shardbank identity; undefined for a certificate that has none (the NATS server's). */
  uri?: string;
  /** DNS names it must carry (the operator's own certificates); unchecked when undefined. */
  dnsNames?: string[];
}

export type LeafCheck =
  { ok: true; notBeforeMs: number; notAfterMs: number; renewAtMs: number } | { ok: false; problem: string };

/**
 * Whether `files` (ca.crt, tls.crt, tls.key) hold a usable certificate for `expected`,
 * trusted by `trust` (CA certificates) at `nowMs`; otherwise what is wrong, in words.
 */
export function checkLeaf(
  files: Record<string, string>,
  trust: X509Certificate[],
  expected: ExpectedLeaf,
  nowMs: number,
): LeafCheck {
  for (const key of [SECRET_KEYS.ca, SECRET_KEYS.cert, SECRET_KEYS.key]) {
    if (!files[key]) return { ok: false, problem: `has no ${key}` };
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(files[SECRET_KEYS.cert]!);
  } catch (error) {
    return { ok: false, problem: `${SECRET_KEYS.cert} is not a PEM certificate (${(error as Error).message})` };
  }
  try {
    if (!leaf.checkPrivateKey(createPrivateKey(files[SECRET_KEYS.key]!)))
      return { ok: false, problem: `${SECRET_KEYS.key} is not the key of ${SECRET_KEYS.cert}` };
  } catch (error) {
    return { ok: false, problem: `${SECRET_KEYS.key} is not a PEM private key (${(error as Error).message})` };
  }
  if (!trust.some((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey)))
    return { ok: false, problem: `${SECRET_KEYS.cert} (issuer ${oneLine(leaf.issuer)}) is not signed by the CA` };
  const notBeforeMs = Date.parse(leaf.validFrom);
  const notAfterMs = Date.parse(leaf.validTo);
  if (nowMs < notBeforeMs) return { ok: false, problem: `${SECRET_KEYS.cert} is not valid before ${leaf.validFrom}` };
  if (nowMs >= notAfterMs) return { ok: false, problem: `${SECRET_KEYS.cert} expired at ${leaf.validTo}` };
  // Exactly one shardbank identity, and it is the expected one (itself a shardbank identity).
  if (
    expected.uri !== undefined &&
    (identitiesOf(leaf.subjectAltName).length !== 1 || !sanUris(leaf.subjectAltName).includes(expected.uri))
  )
    return {
      ok: false,
      problem: `${SECRET_KEYS.cert} must name exactly one shardbank identity, ${expected.uri}; it has SAN ${leaf.subjectAltName ?? '(none)'}`,
    };
  const dns = new Set(
    (leaf.subjectAltName ?? '')
      .split(', ')
      .filter((e) => e.startsWith('DNS:'))
      .map((e) => e.slice(4)),
  );
  const missing = (expected.dnsNames ?? []).filter((d) => !dns.has(d));
  if (missing.length > 0) return { ok: false, problem: `${SECRET_KEYS.cert} lacks DNS names ${missing.join(', ')}` };
  return {
    ok: true,
    notBeforeMs,
    notAfterMs,
    renewAtMs: notBeforeMs + Math.floor((notAfterMs - notBeforeMs) * RENEW_AT_FRACTION),
  };
}

/** The CA certificates of a ca.crt, or a problem. */
export function trustOf(caPem: string | undefined): { trust: X509Certificate[] } | { problem: string } {
  if (!caPem) return { problem: `has no ${SECRET_KEYS.ca}` };
  try {
    const trust = parseCertificates(caPem);
    if (trust.length === 0) return { problem: `${SECRET_KEYS.ca} holds no PEM certificate` };
    const notCa = trust.find((c) => !c.ca);
    if (notCa) return { problem: `${SECRET_KEYS.ca} holds ${oneLine(notCa.subject)}, which is not a CA` };
    return { trust };
  } catch (error) {
    return { problem: `${SECRET_KEYS.ca} is not PEM (${(error as Error).message})` };
  }
}

function oneLine(dn: string): string {
  return dn.replaceAll('\n', ', ');
}

/** A digest of a shard's certificates: a change rolls its pods onto the new files. */
export function tlsDigest(files: Record<string, string>[]): string {
  const hash = createHash('sha256');
  for (const f of files) hash.update(`${f[SECRET_KEYS.ca] ?? ''}\0${f[SECRET_KEYS.cert] ?? ''}\0`);
  return hash.digest('hex').slice(0, 16);
}

function encode(files: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(files).map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
}

/**
 * The operator's CA: certificate and key (the key never leaves this Secret). Not owned by the
 * BankCluster, on purpose: like the PVCs it outlives a deleted BankCluster, so that one
 * re-created on the same data keeps its CA and the credentials applications already hold stay
 * valid (a new CA would leave every mounted ca.crt wrong until the kubelet refreshes it).
 */
export function buildCaSecret(cluster: BankCluster, certPem: string, keyPem: string): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: names.caSecret(cluster.metadata.name),
      namespace: namespaceOf(cluster),
      labels: { ...clusterLabels(cluster), [LABEL_COMPONENT]: 'ca' },
    },
    type: 'Opaque',
    data: encode({ [SECRET_KEYS.ca]: certPem, 'ca.key': keyPem }),
  };
}

/** A replica's certificate in cert-manager's layout (type kubernetes.io/tls plus ca.crt). */
export function buildReplicaSecret(
  cluster: BankCluster,
  shard: number,
  ordinal: number,
  files: { ca: string; cert: string; key: string },
): V1Secret {
  return tlsSecret(
    ownedMetadata(cluster, names.replicaTlsSecret(cluster.metadata.name, shard, ordinal), {
      ...clusterLabels(cluster),
      [LABEL_COMPONENT]: 'replica-certificate',
      'shardbank.io/shard': String(shard),
    }),
    files,
  );
}

/** An application's client credentials (mount it, or read it, in the application's pod). */
export function buildClientSecret(
  cluster: BankCluster,
  client: ClientSpec,
  files: { ca: string; cert: string; key: string },
  extra: Record<string, string> = {},
): V1Secret {
  return tlsSecret(
    ownedMetadata(cluster, names.clientSecret(cluster.metadata.name, client.name), {
      ...clusterLabels(cluster),
      [LABEL_COMPONENT]: 'client-credential',
      [LABEL_CLIENT_NAME]: client.name,
    }),
    files,
    extra,
  );
}

/**
 * The managed NATS's server certificate (no shardbank identity: DNS names of its Service),
 * in the same layout; the replicas and clients verify it against ca.crt.
 */
export function buildNatsTlsSecret(cluster: BankCluster, files: { ca: string; cert: string; key: string }): V1Secret {
  return tlsSecret(
    ownedMetadata(cluster, names.natsTlsSecret(cluster.metadata.name), {
      ...clusterLabels(cluster),
      [LABEL_COMPONENT]: 'nats-certificate',
    }),
    files,
  );
}

/**
 * cert-manager's layout: type kubernetes.io/tls with ca.crt, tls.crt and tls.key (and, for a
 * client, the NATS files of operator/builders/nats.ts CLIENT_NATS_KEYS).
 */
function tlsSecret(
  metadata: V1Secret['metadata'],
  files: { ca: string; cert: string; key: string },
  extra: Record<string, string> = {},
): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata,
    type: 'kubernetes.io/tls',
    data: encode({
      ...extra,
      [SECRET_KEYS.ca]: files.ca,
      [SECRET_KEYS.cert]: files.cert,
      [SECRET_KEYS.key]: files.key,
    }),
  };
}
