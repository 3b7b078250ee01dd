// The NATS step of a reconcile (docs/SECURITY.md, "NATS in Kubernetes"): which NATS the
// cluster uses and with which credentials.
//
// Managed (spec.nats.managed, no url): the two users' credentials live in Secrets
// <cluster>-nats-replica and <cluster>-nats-watcher, made once (a password never changes by
// itself, so the NATS config and every holder stay in step); the certificate step issues the
// server certificate; operator/builders/nats.ts builds the config, Service and StatefulSet.
// External (spec.nats.url): the user's Secret spec.nats.credentialsSecret is read and checked
// on every reconcile (and at least every 5 minutes, like spec.tls: the operator does not watch
// Secrets it does not own); what is wrong is named, and no StatefulSet is made or changed
// until it is usable (a pod could not mount it).
//
// Either way the `watcher` user's files go to the client Secrets and to the operator's own
// leader directory (files on the operator's disk, written here).
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { names, type BankCluster } from '../../node/cluster/bankcluster.js';
import {
  generateNatsCredentials,
  NatsRole,
  parseNatsCredentials,
  type NatsCredentials,
  type NatsSecurity,
} from '../../node/discovery/nats-security.js';
import { secretFiles } from '../builders/certificates.js';
import { namespaceOf } from '../builders/labels.js';
import {
  checkExternalNatsFiles,
  CLIENT_NATS_KEYS,
  credentialsJson,
  NATS_KEYS,
  natsModeOf,
  natsUrlOf,
  type NatsMode,
} from '../builders/nats.js';
import type { KubeClient } from '../kube/kube-client.js';
import type { KubeObject } from '../kube/kube-object.js';
import { RESOURCES } from '../kube/resources.js';
import type { NatsCertificateRequest } from './certificates.js';
import { ownedBy, type ObjectCache } from './object-cache.js';

export interface NatsOutcome {
  mode: NatsMode;
  /** The StatefulSets may be applied (external: the user's Secret is usable). */
  ready: boolean;
  /** What is wrong with spec.nats.credentialsSecret. */
  problems: string[];
  url?: string;
  /** Managed: both users (the config needs both passwords; the Secrets hold one each). */
  users?: Record<NatsRole, NatsCredentials>;
  /** The watcher's credentials file and, for an external NATS, its CA (managed: the server certificate's). */
  watcher?: { ca?: string; credentials: string };
}

const EXTERNAL_RECHECK_MS = 5 * 60_000;

export class NatsStep {
  constructor(
    private readonly client: KubeClient,
    private readonly cache: ObjectCache,
    private readonly natsImage: string | undefined,
  ) {}

  /** How soon to look again at the user's Secret (external NATS). */
  static readonly externalRecheckMs = EXTERNAL_RECHECK_MS;

  async prepare(cluster: BankCluster): Promise<NatsOutcome> {
    const mode = natsModeOf(cluster, this.natsImage);
    const url = natsUrlOf(cluster, this.natsImage);
    if (mode === 'none') return { mode, ready: true, problems: [] };
    if (mode === 'external') {
      const name = cluster.spec.nats.credentialsSecret;
      if (name === undefined)
        return {
          mode,
          ready: false,
          problems: [
            'spec.nats.credentialsSecret: required with spec.nats.url (a Secret with ca.crt, replica.json, watcher.json)',
          ],
          url: url!,
        };
      const check = checkExternalNatsFiles(name, await this.readSecret(cluster, name, false));
      if (!check.ok) return { mode, ready: false, problems: [check.problem], url: url! };
      return {
        mode,
        ready: true,
        problems: [],
        url: url!,
        watcher: { ca: check.ca, credentials: credentialsJson(check.watcher) },
      };
    }
    const users = {} as Record<NatsRole, NatsCredentials>;
    for (const role of [NatsRole.replica, NatsRole.watcher]) {
      const name = names.natsCredentialsSecret(cluster.metadata.name, role);
      const text = (await this.readSecret(cluster, name, true))?.[NATS_KEYS.credentials];
      let credentials: NatsCredentials | undefined;
      if (text !== undefined) {
        try {
          credentials = parseNatsCredentials(text, `Secret ${name}`);
        } catch {
          credentials = undefined;
        }
      }
      // Made once; a Secret someone emptied or broke (or another user's) gets new credentials,
      // which the config and the pods then follow.
      users[role] = credentials?.user === role ? credentials : generateNatsCredentials(role);
    }
    return {
      mode,
      ready: true,
      problems: [],
      url: url!,
      users,
      watcher: { credentials: credentialsJson(users.watcher) },
    };
  }

  /** What the certificate step must do for NATS: a server certificate, the client Secrets' extra files. */
  static certificateRequest(nats: NatsOutcome): NatsCertificateRequest {
    const watcher = nats.watcher;
    return {
      serverCertificate: nats.mode === 'managed',
      ...(watcher && nats.url
        ? {
            client: (natsCa: string) => ({
              [CLIENT_NATS_KEYS.ca]: watcher.ca ?? natsCa,
              [CLIENT_NATS_KEYS.credentials]: watcher.credentials,
              [CLIENT_NATS_KEYS.url]: nats.url!,
            }),
          }
        : {}),
    };
  }

  /** A Secret's files: the informer cache first (owned Secrets), else the API server. */
  private async readSecret(
    cluster: BankCluster,
    name: string,
    owned: boolean,
  ): Promise<Record<string, string> | undefined> {
    const namespace = namespaceOf(cluster);
    let live: KubeObject | undefined = owned ? this.cache.get(RESOURCES.secret, namespace, name) : undefined;
    live ??= await this.client.getIfExists<KubeObject>(RESOURCES.secret, namespace, name);
    if (!live) return undefined;
    if (owned && !ownedBy(live, cluster.metadata.uid))
      throw new Error(`Secret ${name} exists and is not owned by this BankCluster; not touching it`);
    return secretFiles(live as { data?: Record<string, string> });
  }
}

/**
 * The watcher's files on the operator's disk, for its own leader directory
 * (ClusterRef.natsSecurity): `<dir>/<namespace>/<cluster>/<digest>/`, 0600 in 0700 directories,
 * so that new contents get new paths (the leader directory restarts a watch when they change).
 */
export class OperatorNatsFiles {
  constructor(private readonly dir: string) {}

  write(namespace: string, cluster: string, files: { ca: string; credentials: string }): NatsSecurity {
    const digest = createHash('sha256').update(`${files.ca}\0${files.credentials}`).digest('hex').slice(0, 16);
    const clusterDir = join(this.dir, namespace, cluster);
    const target = join(clusterDir, digest);
    mkdirSync(target, { recursive: true, mode: 0o700 });
    const caFile = join(target, 'ca.crt');
    const credentialsFile = join(target, 'watcher.json');
    writeFileSync(caFile, files.ca, { mode: 0o600 });
    writeFileSync(credentialsFile, files.credentials, { mode: 0o600 });
    for (const old of readdirSync(clusterDir))
      if (old !== digest) rmSync(join(clusterDir, old), { recursive: true, force: true });
    return { caFile, credentialsFile };
  }

  forget(namespace: string, cluster: string): void {
    rmSync(join(this.dir, namespace, cluster), { recursive: true, force: true });
  }
}
