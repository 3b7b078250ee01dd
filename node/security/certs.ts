// Certificates for the local runtime and the tests: a cluster CA and the certificates it
// signs, made with the `openssl` CLI (Node's crypto verifies X.509 but cannot create it; the
// CLI is in every Debian image and scripts/install-deps.sh ensures it, so there is no npm
// dependency). Keys are ECDSA P-256 (cheap handshakes), written 0600 by this process before
// any byte of them exists on disk; certificates are 0644. Existing files are kept, so calling
// ensureClusterCertificates() on every start makes them once (like `cockroach cert`).
//
// Identities are SAN URIs (docs/SECURITY.md): a replica is
// shardbank://<namespace>/<cluster>/shard/<s>/replica/<o>, a client
// shardbank://<namespace>/<cluster>/client/<role>/<name>.
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { clientIdentityUri, replicaIdentityUri, type ClientRole } from './identity.js';

const run = promisify(execFile);

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
  await writeKey(key);
  await reqX509(['basicConstraints = critical, CA:TRUE', 'keyUsage = critical, keyCertSign, cRLSign'], {
    key,
    commonName,
    days: CA_DAYS,
    out: cert,
  });
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
  /**
   * An explicit validity window instead of `days` from now (tests: an expired certificate).
   * Made with `openssl ca`, whose -startdate/-enddate the installed OpenSSL 3.0 has (its
   * `req -x509` cannot backdate).
   */
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
  await rm(key, { force: true });
  await writeKey(key);
  const san = [
    ...request.uris.map((uri) => `URI:${uri}`),
    ...(request.server ? ['DNS:localhost', 'IP:127.0.0.1', 'IP:::1'] : []),
    ...(request.dnsNames ?? []).map((dns) => `DNS:${dns}`),
  ];
  const staged = `${cert}.new`;
  const extensions = [
    'basicConstraints = critical, CA:FALSE',
    'keyUsage = critical, digitalSignature',
    `extendedKeyUsage = ${request.server ? 'serverAuth, clientAuth' : 'clientAuth'}`,
    `subjectAltName = ${san.join(', ')}`,
  ];
  if (request.validity)
    await caSign(extensions, { key, commonName: request.commonName, out: staged, issuer: ca, ...request.validity });
  else
    await reqX509(extensions, {
      key,
      commonName: request.commonName,
      days: request.days ?? LEAF_DAYS,
      out: staged,
      issuer: ca,
    });
  // A rename, so a replica re-reading the files never sees half a certificate.
  await run('mv', ['-f', staged, cert]);
}

/**
 * `openssl req -x509 -new` with `extensions`: self-signed, or signed by `issuer` (-CA/-CAkey).
 * The one place the CA and the leaf certificates are made.
 */
async function reqX509(
  extensions: string[],
  cert: { key: string; commonName: string; days: number; out: string; issuer?: { cert: string; key: string } },
): Promise<void> {
  const issuer = cert.issuer ? ['-CA', cert.issuer.cert, '-CAkey', cert.issuer.key] : [];
  await withConfig(extensions, async (config) => {
    await openssl([
      'req',
      '-x509',
      '-new',
      '-config',
      config,
      '-extensions',
      'ext',
      '-key',
      cert.key,
      ...issuer,
      '-subj',
      subject(cert.commonName),
      '-days',
      String(cert.days),
      '-sha256',
      '-out',
      cert.out,
    ]);
  });
}

/** `openssl ca` with an explicit validity window (a throwaway CA database). */
async function caSign(
  extensions: string[],
  cert: { key: string; commonName: string; out: string; issuer: { cert: string; key: string } } & {
    notBefore: Date;
    notAfter: Date;
  },
): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'shardbank-openssl-ca-'));
  try {
    const config = path.join(dir, 'ca.cnf');
    await writeFile(path.join(dir, 'index.txt'), '');
    await writeFile(
      config,
      [
        '[ca]',
        'default_ca = d',
        '[d]',
        `database = ${path.join(dir, 'index.txt')}`,
        `new_certs_dir = ${dir}`,
        'rand_serial = yes',
        'default_md = sha256',
        'policy = p',
        'unique_subject = no',
        '[p]',
        'commonName = supplied',
        'organizationName = optional',
        '[req]',
        'distinguished_name = dn',
        '[dn]',
        '[ext]',
        ...extensions,
        '',
      ].join('\n'),
    );
    const csr = path.join(dir, 'leaf.csr');
    await openssl(['req', '-new', '-config', config, '-key', cert.key, '-subj', subject(cert.commonName), '-out', csr]);
    const asn1 = (date: Date) => `${date.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
    await openssl([
      'ca',
      '-batch',
      '-notext',
      '-config',
      config,
      '-cert',
      cert.issuer.cert,
      '-keyfile',
      cert.issuer.key,
      '-in',
      csr,
      '-out',
      cert.out,
      '-startdate',
      asn1(cert.notBefore),
      '-enddate',
      asn1(cert.notAfter),
      '-extfile',
      config,
      '-extensions',
      'ext',
    ]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function writeKey(file: string): Promise<void> {
  const { stdout } = await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']);
  // 'wx' with mode 0600: the file never exists with wider permissions, and an existing key
  // is never silently replaced here.
  await writeFile(file, stdout, { mode: 0o600, flag: 'wx' });
}

/** A throwaway openssl config whose [ext] section holds `extensions` (no system defaults). */
async function withConfig<T>(extensions: string[], body: (config: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'shardbank-openssl-'));
  const config = path.join(dir, 'openssl.cnf');
  await writeFile(config, ['[req]', 'distinguished_name = dn', '[dn]', '[ext]', ...extensions, ''].join('\n'));
  try {
    return await body(config);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function openssl(args: string[]): Promise<{ stdout: string }> {
  try {
    return await run('openssl', args, { encoding: 'utf8' });
  } catch (error) {
    const { code, stderr } = error as { code?: string; stderr?: string };
    if (code === 'ENOENT')
      throw new Error('openssl is not installed (scripts/install-deps.sh installs it): cannot create certificates');
    throw new Error(`openssl ${args[0]} failed: ${stderr?.trim() ?? String(error)}`);
  }
}

function subject(commonName: string): string {
  return `/O=shardbank/CN=${commonName.replaceAll('/', '\\/')}`;
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}
