// Certificates for the local runtime and the tests: a cluster CA and the certificates it
// signs, made by our own X.509 issuer on Node's crypto (x509.ts: no openssl CLI, no npm
// dependency; the operator issues with the same code). Keys are ECDSA P-256 (cheap
// handshakes), written 0600 with O_EXCL so that no key ever exists with wider permissions;
// certificates are 0644. Existing files are kept, so calling
// ensureClusterCertificates() on every start makes them once (like `cockroach cert`).
//
// Identities are SAN URIs (docs/SECURITY.md): a replica is
// shardbank://<namespace>/<cluster>/shard/<s>/replica/<o>, a client
// shardbank://<namespace>/<cluster>/client/<role>/<name>.
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { clientIdentityUri, replicaIdentityUri, type ClientRole } from './identity.js';
import { createCa, issueLeafCertificate } from './x509.js';

/** Days a CA is valid; leaf certificates live shorter (rotation is re-issuing them). */
const CA_DAYS = 3650;
const LEAF_DAYS = 397;

export interface PemPaths {
  cert: string;
  key: string;
  ca: string;
}

export interface ClusterCertificates {
  ca: { cert: string; key: string };
  /** [shard][ordinal] */
  replicas: PemPaths[][];
  clients: Record<string, PemPaths>;
  /** nats-server's TLS server certificate (loopback names only: the local runtime's NATS). */
  natsServer: PemPaths;
}

export interface ClusterIdentity {
  namespace: string;
  cluster: string;
  shards: number;
  replicasPerShard: number;
}

/**
 * The CA and every replica's (and each named client's) certificate in `directory`, made
 * where missing. Clients are name -> role.
 */
export async function ensureClusterCertificates(
  directory: string,
  identity: ClusterIdentity,
  clients: Record<string, ClientRole> = {},
): Promise<ClusterCertificates> {
  await mkdir(directory, { recursive: true, mode: 0o700 });
  const ca = await ensureCa(directory, `shardbank CA ${identity.namespace}/${identity.cluster}`);
  const replicas: PemPaths[][] = [];
  for (let shard = 0; shard < identity.shards; shard += 1) {
    const group: PemPaths[] = [];
    for (let ordinal = 0; ordinal < identity.replicasPerShard; ordinal += 1) {
      group.push(
        await ensureLeaf(directory, ca, `replica-s${shard}-${ordinal}`, {
          commonName: `${identity.cluster} shard ${shard} replica ${ordinal}`,
          uris: [replicaIdentityUri({ ...identity, shard, ordinal })],
          server: true,
        }),
      );
    }
    replicas.push(group);
  }
  const issued: Record<string, PemPaths> = {};
  for (const [name, role] of Object.entries(clients)) {
    issued[name] = await ensureLeaf(directory, ca, `client-${name}`, {
      commonName: `${identity.cluster} client ${name}`,
      uris: [clientIdentityUri({ ...identity, role, name })],
      server: false,
    });
  }
  const natsServer = await ensureLeaf(directory, ca, 'nats-server', {
    commonName: `${identity.cluster} nats-server`,
    uris: [],
    server: true,
  });
  return { ca, replicas, clients: issued, natsServer };
}

/** A self-signed CA (ca.crt, ca.key) in `directory`, made if missing. */
export async function ensureCa(directory: string, commonName: string): Promise<{ cert: string; key: string }> {
  const cert = path.join(directory, 'ca.crt');
  const key = path.join(directory, 'ca.key');
  if ((await exists(cert)) && (await exists(key))) return { cert, key };
  const ca = createCa(commonName, { days: CA_DAYS });
  await rm(key, { force: true });
  await writeKey(key, ca.keyPem);
  await writeCertificate(cert, ca.certPem);
  return { cert, key };
}

export interface LeafRequest {
  commonName: string;
  /** SAN URIs: the identity (none for nats-server, which is not a shardbank identity). */
  uris: string[];
  /** Also a TLS server (replicas): serverAuth and loopback names; clients get clientAuth only. */
  server: boolean;
  /** Extra SAN DNS names (servers). */
  dnsNames?: string[];
  days?: number;
  /** An explicit validity window instead of `days` from now (tests: an expired certificate). */
  validity?: { notBefore: Date; notAfter: Date };
}

/** `<name>.crt` and `<name>.key` in `directory`, signed by `ca`, made if missing. */
export async function ensureLeaf(
  directory: string,
  ca: { cert: string; key: string },
  name: string,
  request: LeafRequest,
): Promise<PemPaths> {
  const cert = path.join(directory, `${name}.crt`);
  const key = path.join(directory, `${name}.key`);
  if (!((await exists(cert)) && (await exists(key)))) await issueLeaf(ca, cert, key, request);
  return { cert, key, ca: ca.cert };
}

/** Writes a new key and certificate (overwriting: this is also how a certificate is rotated). */
export async function issueLeaf(
  ca: { cert: string; key: string },
  cert: string,
  key: string,
  request: LeafRequest,
): Promise<void> {
  const issuer = { certPem: await readFile(ca.cert, 'utf8'), keyPem: await readFile(ca.key, 'utf8') };
  const leaf = issueLeafCertificate(issuer, {
    commonName: request.commonName,
    subjectAltNames: {
      uris: request.uris,
      dnsNames: [...(request.server ? ['localhost'] : []), ...(request.dnsNames ?? [])],
      ips: request.server ? ['127.0.0.1', '::1'] : [],
    },
    server: request.server,
    lifetimeMs: (request.days ?? LEAF_DAYS) * 86_400_000,
    ...(request.validity ? { validity: request.validity } : {}),
  });
  await rm(key, { force: true });
  await writeKey(key, leaf.keyPem);
  await writeCertificate(cert, leaf.certPem);
}

async function writeKey(file: string, keyPem: string): Promise<void> {
  // 'wx' with mode 0600: the file never exists with wider permissions, and an existing key
  // is never silently replaced here.
  await writeFile(file, keyPem, { mode: 0o600, flag: 'wx' });
}

/** Through a rename, so a replica re-reading the files never sees half a certificate. */
async function writeCertificate(file: string, certPem: string): Promise<void> {
  const staged = `${file}.new`;
  await writeFile(staged, certPem, { mode: 0o644 });
  await rename(staged, file);
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}
