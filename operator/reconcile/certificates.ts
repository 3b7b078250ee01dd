// The certificate step of a reconcile (docs/SECURITY.md, "Kubernetes").
//
// Without spec.tls the operator is the cluster's CA: Secret <cluster>-ca (made once, owned by
// the BankCluster), one Secret per replica <cluster>-s<s>-<o>-tls and one per declared client
// <cluster>-client-<name>, each with ca.crt, tls.crt and tls.key. A leaf is (re)issued when it
// is missing, unreadable, not signed by the CA, names the wrong identity or DNS names, or has
// lived two thirds of its lifetime; the reconcile is requeued for the next such moment.
//
// With spec.tls the user's issuer (cert-manager) provides one Secret per replica,
// <secretNamePrefix>-s<s>-<o>; the operator only checks them (present, the three files, the
// key matching, signed by the ca.crt of every replica, valid now, exactly the replica's
// identity) and reports what is wrong. It looks again every few minutes (the Secrets are
// not the operator's, so it does not watch them).
//
// Either way the result carries a digest of each shard's certificates for its pod template:
// a new certificate rolls the shard's pods (followers first, the leader last), which is how
// a replica picks up a renewed file (it reads them at start; the operator has no way, and no
// right, to signal a process in a pod).
//
// Pod slots (issue 19): a shard has a certificate for every pod it has or is about to get
// (max of its pods and spec.replicasPerShard), so the membership driver can add a pod at
// once. The digest covers the founding slots only, so adding a slot's certificate rolls no
// pod; a slot beyond them is issued with slot 0's validity window, so it is renewed in the
// same reconcile as slot 0, whose renewal changes the digest and rolls every pod.
import { X509Certificate } from 'node:crypto';
import { names, type BankCluster } from '../../node/cluster/bankcluster.js';
import { createCa, issueLeafCertificate } from '../../node/security/x509.js';
import {
  buildCaSecret,
  buildClientSecret,
  buildNatsTlsSecret,
  buildReplicaSecret,
  CA_DAYS,
  checkLeaf,
  clientUri,
  DEFAULT_LEAF_LIFETIME_MS,
  LABEL_CLIENT_NAME,
  LABEL_COMPONENT,
  replicaDnsNames,
  replicaUri,
  SECRET_KEYS,
  secretFiles,
  tlsDigest,
  trustOf,
} from '../builders/certificates.js';
import { LABEL_CLUSTER, namespaceOf } from '../builders/labels.js';
import { natsDnsNames } from '../builders/nats.js';
import { isNotFound } from '../kube/api-error.js';
import type { KubeClient } from '../kube/kube-client.js';
import type { KubeObject } from '../kube/kube-object.js';
import { RESOURCES } from '../kube/resources.js';
import { ownedBy, type ObjectCache } from './object-cache.js';
import { shapeOf, type ShardShape } from '../builders/shard-shape.js';

/** Pod slots of a shard that need a certificate: its pods, and those a change of size adds. */
export function certificateSlots(cluster: BankCluster, shard: number, shapes?: readonly ShardShape[]): number {
  const shape = shapeOf(cluster, shard, shapes);
  return Math.max(shape.pods, shape.foundingReplicas, cluster.spec.replicasPerShard);
}

export interface CertificateOptions {
  /** Lifetime of the leaves the operator issues (default 90 days). */
  leafLifetimeMs?: number;
  /** How often to look again at user-provided Secrets (default 5 minutes). */
  userSecretRecheckMs?: number;
  now?: () => number;
}

export interface CertificateOutcome {
  /** Every replica has a usable certificate: the StatefulSets may be applied. */
  ready: boolean;
  /** 'operator' (its own CA) or 'user' (spec.tls). */
  source: 'operator' | 'user';
  /** What is wrong, one entry per Secret (user-provided Secrets only). */
  problems: string[];
  /** Per shard, the digest of its replicas' certificates. */
  digests: string[];
  /** Secrets written this time (for the event). */
  issued: string[];
  /** Client credential Secrets deleted because their client left spec.clients. */
  deleted: string[];
  /** When to look again (the next renewal, or the next check of user Secrets). */
  recheckAtMs: number;
  /** The managed NATS's server certificate (its CA and leaf), when one was asked for and is usable. */
  natsTls?: { ca: string; cert: string };
  /**
   * The operator's own `admin` client identity for this cluster (membership changes): issued in
   * memory from the operator's CA, or with spec.tls read from Secret `<prefix>-admin`.
   */
  admin?: { ca: string; cert: string; key: string };
  /** Why there is no admin identity (spec.tls without its Secret, or that Secret unusable). */
  adminProblem?: string;
}

/** The operator's admin identity's name (SAN URI shardbank://<ns>/<cluster>/client/admin/operator). */
export const ADMIN_CLIENT_NAME = 'operator';
const ADMIN_LIFETIME_MS = 86_400_000;

export function adminUri(cluster: BankCluster): string {
  return `shardbank://${namespaceOf(cluster)}/${cluster.metadata.name}/client/admin/${ADMIN_CLIENT_NAME}`;
}

/** With spec.tls: the Secret holding the operator's admin certificate. */
export function adminSecretName(prefix: string): string {
  return `${prefix}-admin`;
}

/** What the NATS step (operator/reconcile/nats.ts) needs from the certificate step. */
export interface NatsCertificateRequest {
  /** The cluster runs the operator's NATS: issue (or, with spec.tls, check) its server certificate. */
  serverCertificate: boolean;
  /**
   * Files each client Secret gets besides its certificate (the watcher's NATS credentials):
   * `ca` undefined means the CA of the NATS server certificate.
   */
  client?: (natsCa: string) => Record<string, string>;
}

const USER_RECHECK_MS = 5 * 60_000;
const WRITTEN_MAX = 100_000;

type Files = Record<string, string>;

export class Certificates {
  /** The resourceVersion of what this process wrote last, by namespace/name. */
  private readonly written = new Map<string, string>();
  /** Per namespace/name: the admin identity issued in memory, and when to issue the next. */
  private readonly admins = new Map<string, { ca: string; cert: string; key: string; renewAtMs: number }>();

  constructor(
    private readonly client: KubeClient,
    private readonly cache: ObjectCache,
    private readonly options: CertificateOptions = {},
  ) {}

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  async ensure(
    cluster: BankCluster,
    nats: NatsCertificateRequest = { serverCertificate: false },
    shapes?: readonly ShardShape[],
  ): Promise<CertificateOutcome> {
    return cluster.spec.tls ? this.checkUserSecrets(cluster, nats, shapes) : this.issue(cluster, nats, shapes);
  }

  forget(namespace: string, name: string): void {
    for (const key of this.written.keys()) if (key.startsWith(`${namespace}/${name}-`)) this.written.delete(key);
    this.admins.delete(`${namespace}/${name}`);
  }

  /** The operator's admin client certificate, kept in memory (never in a Secret) and renewed daily. */
  private adminFrom(cluster: BankCluster, ca: { certPem: string; keyPem: string }, nowMs: number) {
    const key = `${namespaceOf(cluster)}/${cluster.metadata.name}`;
    const known = this.admins.get(key);
    if (known && known.ca === ca.certPem && known.renewAtMs > nowMs) return known;
    const leaf = issueLeafCertificate(ca, {
      commonName: `${cluster.metadata.name} operator (admin)`,
      subjectAltNames: { uris: [adminUri(cluster)], dnsNames: [], ips: [] },
      server: false,
      lifetimeMs: ADMIN_LIFETIME_MS,
      now: new Date(nowMs),
    });
    const admin = { ca: ca.certPem, cert: leaf.certPem, key: leaf.keyPem, renewAtMs: nowMs + ADMIN_LIFETIME_MS / 2 };
    this.admins.set(key, admin);
    return admin;
  }

  /**
   * A Secret's files, from the informer cache when it holds the version this process wrote
   * last (or any version, if we wrote none); otherwise from the API server (the cache may lag
   * behind our own write, or the Secret may have been deleted or changed since).
   */
  private async read(
    cluster: BankCluster,
    name: string,
    owned: boolean,
    labelled?: Record<string, string>,
  ): Promise<Files | undefined> {
    const namespace = namespaceOf(cluster);
    const written = this.written.get(`${namespace}/${name}`);
    let live: KubeObject | undefined =
      owned || labelled ? this.cache.get(RESOURCES.secret, namespace, name) : undefined;
    if (!live || (written !== undefined && live.metadata.resourceVersion !== written)) {
      live = await this.client.getIfExists<KubeObject>(RESOURCES.secret, namespace, name);
      if (!live) return undefined;
    }
    if (owned && !ownedBy(live, cluster.metadata.uid))
      throw new Error(`Secret ${name} exists and is not owned by this BankCluster; not touching it`);
    if (labelled && Object.entries(labelled).some(([key, value]) => live.metadata.labels?.[key] !== value))
      throw new Error(
        `Secret ${name} exists and is not labelled as this cluster's CA (${Object.entries(labelled)
          .map(([key, value]) => `${key}=${value}`)
          .join(', ')}); not touching it`,
      );
    return secretFiles(live as { data?: Record<string, string> });
  }

  private async write(secret: KubeObject): Promise<void> {
    const result = await this.client.apply<KubeObject>(RESOURCES.secret, secret);
    if (this.written.size >= WRITTEN_MAX) this.written.clear();
    this.written.set(`${secret.metadata.namespace}/${secret.metadata.name}`, result.metadata.resourceVersion ?? '');
  }

  private async issue(
    cluster: BankCluster,
    nats: NatsCertificateRequest,
    shapes?: readonly ShardShape[],
  ): Promise<CertificateOutcome> {
    const nowMs = this.now();
    const lifetimeMs = this.options.leafLifetimeMs ?? DEFAULT_LEAF_LIFETIME_MS;
    const issued: string[] = [];
    const ca = await this.ensureCa(cluster, issued);
    const trust = trustOf(ca.certPem);
    if ('problem' in trust) throw new Error(`Secret ${names.caSecret(cluster.metadata.name)} ${trust.problem}`);
    let recheckAtMs = Number.POSITIVE_INFINITY;
    const ensureLeaf = async (
      name: string,
      expected: { uri?: string; dnsNames?: string[] },
      make: (files: { ca: string; cert: string; key: string }) => KubeObject,
      commonName: string,
      server: boolean,
      extra: Files = {},
      validity?: { notBefore: Date; notAfter: Date },
    ): Promise<Files> => {
      const files = await this.read(cluster, name, true);
      const check = files ? checkLeaf(files, trust.trust, expected, nowMs) : undefined;
      // The CA file in the Secret must be the current CA too (a re-made CA re-issues everything).
      // A slot beyond the founding ones keeps slot 0's window (a slot 0 re-issued early, e.g.
      // after its Secret was deleted, re-issues it in the same reconcile).
      const aligned = !validity || (check?.ok === true && check.notBeforeMs === validity.notBefore.getTime());
      if (files && check?.ok && aligned && check.renewAtMs > nowMs && files[SECRET_KEYS.ca] === ca.certPem) {
        recheckAtMs = Math.min(recheckAtMs, check.renewAtMs);
        // The same certificate, other extra files (a client's NATS credentials): rewrite them.
        if (Object.entries(extra).some(([key, value]) => files[key] !== value)) {
          const current = { ca: ca.certPem, cert: files[SECRET_KEYS.cert]!, key: files[SECRET_KEYS.key]! };
          await this.write(make(current));
          issued.push(name);
          return { ...files, ...extra };
        }
        return files;
      }
      const leaf = issueLeafCertificate(ca, {
        commonName,
        subjectAltNames: {
          uris: expected.uri === undefined ? [] : [expected.uri],
          dnsNames: expected.dnsNames ?? [],
          ips: server ? ['127.0.0.1', '::1'] : [],
        },
        server,
        lifetimeMs,
        now: new Date(nowMs),
        ...(validity ? { validity } : {}),
      });
      const written = {
        ...extra,
        [SECRET_KEYS.ca]: ca.certPem,
        [SECRET_KEYS.cert]: leaf.certPem,
        [SECRET_KEYS.key]: leaf.keyPem,
      };
      await this.write(make({ ca: ca.certPem, cert: leaf.certPem, key: leaf.keyPem }));
      issued.push(name);
      // notBefore is a minute early (clock skew): renew at two thirds from there.
      const renewAtMs = validity
        ? validity.notBefore.getTime() +
          Math.floor((validity.notAfter.getTime() - validity.notBefore.getTime()) * (2 / 3))
        : nowMs - 60_000 + Math.floor((lifetimeMs + 60_000) * (2 / 3));
      recheckAtMs = Math.min(recheckAtMs, renewAtMs);
      return written;
    };
    const digests: string[] = [];
    for (let shard = 0; shard < cluster.spec.shards; shard++) {
      const shardFiles: Files[] = [];
      const founding = shapeOf(cluster, shard, shapes).foundingReplicas;
      const slots = certificateSlots(cluster, shard, shapes);
      for (let ordinal = 0; ordinal < slots; ordinal++) {
        // Slot 0 comes first: a later slot takes its (current) validity window.
        const first = shardFiles[0]?.[SECRET_KEYS.cert];
        const window = ordinal >= founding && first ? new X509Certificate(first) : undefined;
        shardFiles.push(
          await ensureLeaf(
            names.replicaTlsSecret(cluster.metadata.name, shard, ordinal),
            { uri: replicaUri(cluster, shard, ordinal), dnsNames: replicaDnsNames(cluster, shard, ordinal) },
            (files) => buildReplicaSecret(cluster, shard, ordinal, files) as KubeObject,
            `${cluster.metadata.name} shard ${shard} replica ${ordinal}`,
            true,
            {},
            window ? { notBefore: new Date(window.validFrom), notAfter: new Date(window.validTo) } : undefined,
          ),
        );
      }
      digests.push(tlsDigest(shardFiles.slice(0, founding)));
    }
    let natsTls: CertificateOutcome['natsTls'];
    if (nats.serverCertificate) {
      const files = await ensureLeaf(
        names.natsTlsSecret(cluster.metadata.name),
        // localhost too: kubectl port-forward (nats.js checks a loopback IP as localhost).
        { dnsNames: [...natsDnsNames(cluster), 'localhost'] },
        (f) => buildNatsTlsSecret(cluster, f) as KubeObject,
        `${cluster.metadata.name} NATS`,
        true,
      );
      natsTls = { ca: files[SECRET_KEYS.ca]!, cert: files[SECRET_KEYS.cert]! };
    }
    const clientExtra = nats.client?.(natsTls?.ca ?? ca.certPem) ?? {};
    for (const client of cluster.spec.clients) {
      await ensureLeaf(
        names.clientSecret(cluster.metadata.name, client.name),
        { uri: clientUri(cluster, client) },
        (files) => buildClientSecret(cluster, client, files, clientExtra) as KubeObject,
        `${cluster.metadata.name} client ${client.name} (${client.role})`,
        false,
        clientExtra,
      );
    }
    const deleted = await this.deleteStaleClientSecrets(cluster);
    const admin = this.adminFrom(cluster, ca, nowMs);
    return {
      ready: true,
      source: 'operator',
      problems: [],
      digests,
      issued,
      deleted,
      // The admin identity needs no requeue: it is re-issued by the reconcile that uses it.
      recheckAtMs,
      ...(natsTls ? { natsTls } : {}),
      admin: { ca: admin.ca, cert: admin.cert, key: admin.key },
    };
  }

  private async ensureCa(cluster: BankCluster, issued: string[]): Promise<{ certPem: string; keyPem: string }> {
    const name = names.caSecret(cluster.metadata.name);
    // Kept when the BankCluster is deleted (buildCaSecret), so not owned: the labels say it is
    // this cluster's CA, made by the operator; any other Secret of that name is left alone.
    const files = await this.read(cluster, name, false, {
      [LABEL_CLUSTER]: cluster.metadata.name,
      [LABEL_COMPONENT]: 'ca',
    });
    if (files?.[SECRET_KEYS.ca] && files['ca.key'])
      return { certPem: files[SECRET_KEYS.ca]!, keyPem: files['ca.key']! };
    // Made once per cluster. Losing it (a deleted Secret) re-issues every certificate under
    // a new CA: the pods then roll onto it (docs/SECURITY.md, CA rotation).
    const ca = createCa(`shardbank CA ${namespaceOf(cluster)}/${cluster.metadata.name}`, {
      days: CA_DAYS,
      now: new Date(this.now()),
    });
    await this.write(buildCaSecret(cluster, ca.certPem, ca.keyPem) as KubeObject);
    issued.push(name);
    return ca;
  }

  private async deleteStaleClientSecrets(cluster: BankCluster): Promise<string[]> {
    const namespace = namespaceOf(cluster);
    const wanted = new Set(cluster.spec.clients.map((c) => c.name));
    const deleted: string[] = [];
    const cached = this.cache.list(RESOURCES.secret, namespace, {
      [LABEL_CLUSTER]: cluster.metadata.name,
      [LABEL_COMPONENT]: 'client-credential',
    });
    for (const secret of cached) {
      const client = secret.metadata.labels?.[LABEL_CLIENT_NAME];
      if (client === undefined || wanted.has(client) || !ownedBy(secret, cluster.metadata.uid)) continue;
      try {
        await this.client.delete(RESOURCES.secret, namespace, secret.metadata.name);
        deleted.push(secret.metadata.name);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      this.written.delete(`${namespace}/${secret.metadata.name}`);
    }
    return deleted;
  }

  private async checkUserSecrets(
    cluster: BankCluster,
    nats: NatsCertificateRequest,
    shapes?: readonly ShardShape[],
  ): Promise<CertificateOutcome> {
    const nowMs = this.now();
    const prefix = cluster.spec.tls!.secretNamePrefix;
    const problems: string[] = [];
    const replicas: { name: string; shard: number; ordinal: number; files?: Files; trust?: X509Certificate[] }[] = [];
    let recheckAtMs = nowMs + (this.options.userSecretRecheckMs ?? USER_RECHECK_MS);
    for (let shard = 0; shard < cluster.spec.shards; shard++) {
      for (let ordinal = 0; ordinal < certificateSlots(cluster, shard, shapes); ordinal++) {
        const name = names.replicaTlsSecret(cluster.metadata.name, shard, ordinal, prefix);
        const files = await this.read(cluster, name, false);
        if (!files) {
          problems.push(`Secret ${name} (replica ${shard}/${ordinal}) not found`);
          replicas.push({ name, shard, ordinal });
          continue;
        }
        const trust = trustOf(files[SECRET_KEYS.ca]);
        if ('problem' in trust) {
          problems.push(`Secret ${name} ${trust.problem}`);
          replicas.push({ name, shard, ordinal, files });
          continue;
        }
        const check = checkLeaf(files, trust.trust, { uri: replicaUri(cluster, shard, ordinal) }, nowMs);
        if (!check.ok) problems.push(`Secret ${name} ${check.problem}`);
        else recheckAtMs = Math.min(recheckAtMs, check.notAfterMs);
        replicas.push({ name, shard, ordinal, files, trust: trust.trust });
      }
    }
    // Peers verify each other with their own ca.crt: every replica's CA file must trust
    // every other replica's certificate (a CA rotation adds the new CA to all first).
    if (problems.length === 0) {
      const untrusted = (() => {
        for (const a of replicas)
          for (const b of replicas) {
            const leaf = new X509Certificate(b.files![SECRET_KEYS.cert]!);
            if (!a.trust!.some((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey))) return [a.name, b.name];
          }
        return undefined;
      })();
      if (untrusted)
        problems.push(
          `the ca.crt of Secret ${untrusted[0]} does not trust the certificate of Secret ${untrusted[1]}: those replicas would refuse each other`,
        );
    }
    // The operator's NATS needs a server certificate from the same issuer: <prefix>-nats,
    // naming the NATS Service's DNS names (no shardbank identity).
    let natsTls: CertificateOutcome['natsTls'];
    if (nats.serverCertificate) {
      const name = names.natsTlsSecret(cluster.metadata.name, prefix);
      const files = await this.read(cluster, name, false);
      const trust = files ? trustOf(files[SECRET_KEYS.ca]) : undefined;
      if (!files) problems.push(`Secret ${name} (the NATS server certificate) not found`);
      else if (trust && 'problem' in trust) problems.push(`Secret ${name} ${trust.problem}`);
      else {
        const check = checkLeaf(files, trust!.trust, { dnsNames: natsDnsNames(cluster) }, nowMs);
        if (!check.ok) problems.push(`Secret ${name} ${check.problem}`);
        else {
          recheckAtMs = Math.min(recheckAtMs, check.notAfterMs);
          natsTls = { ca: files[SECRET_KEYS.ca]!, cert: files[SECRET_KEYS.cert]! };
        }
      }
    }
    // The operator's admin identity, from the same issuer (optional: only membership changes need it).
    let admin: CertificateOutcome['admin'];
    let adminProblem: string | undefined;
    {
      const name = adminSecretName(prefix);
      const files = await this.read(cluster, name, false);
      const trust = files ? trustOf(files[SECRET_KEYS.ca]) : undefined;
      if (!files) adminProblem = `Secret ${name} (the operator's admin identity, ${adminUri(cluster)}) not found`;
      else if (trust && 'problem' in trust) adminProblem = `Secret ${name} ${trust.problem}`;
      else {
        const check = checkLeaf(files, trust!.trust, { uri: adminUri(cluster) }, nowMs);
        if (!check.ok) adminProblem = `Secret ${name} ${check.problem}`;
        else {
          recheckAtMs = Math.min(recheckAtMs, check.notAfterMs);
          admin = { ca: files[SECRET_KEYS.ca]!, cert: files[SECRET_KEYS.cert]!, key: files[SECRET_KEYS.key]! };
        }
      }
    }
    const digests = Array.from({ length: cluster.spec.shards }, (_, shard) =>
      tlsDigest(
        replicas
          .filter((r) => r.shard === shard && r.ordinal < shapeOf(cluster, shard, shapes).foundingReplicas)
          .map((r) => r.files ?? {}),
      ),
    );
    return {
      ready: problems.length === 0,
      source: 'user',
      problems,
      digests,
      issued: [],
      deleted: [],
      recheckAtMs,
      ...(natsTls ? { natsTls } : {}),
      ...(admin ? { admin } : {}),
      ...(adminProblem ? { adminProblem } : {}),
    };
  }
}
