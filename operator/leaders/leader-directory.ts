// One LeaderWatcher (node/discovery) per BankCluster, fed from the NATS leader bucket.
// The operator reads leaders from here for status and pod labels; a change enqueues the
// cluster. Only records of the cluster's current incarnation (its UID) are used.
import type { Logger } from 'pino';
import { LeaderWatcher } from '../../node/discovery/leader-watcher.js';
import type { NatsSecurity } from '../../node/discovery/nats-security.js';
import { errorMessage } from '../kube/api-error.js';

export interface KnownLeader {
  ordinal: number;
  address: string;
  ballot: { round: number; ordinal: number };
}

/** What the reconciler needs; tests may pass a fake. */
export interface LeaderDirectory {
  /** Starts (or keeps, or replaces) the watch of one cluster. */
  ensure(key: ClusterRef): Promise<void>;
  leader(key: ClusterRef, shard: number): KnownLeader | undefined;
  forget(key: Pick<ClusterRef, 'namespace' | 'name'>): Promise<void>;
  close(): Promise<void>;
}

export interface ClusterRef {
  namespace: string;
  name: string;
  incarnation: string;
  natsUrl: string | undefined;
  /** NATS TLS and the `watcher` user's credentials files for this cluster (docs/SECURITY.md). */
  natsSecurity?: NatsSecurity;
}

interface Entry {
  natsUrl: string;
  /** The files the watcher was started with: a change starts it again. */
  natsSecurityKey: string;
  incarnation: string;
  watcher: LeaderWatcher;
  unsubscribe: () => void;
}

const clustersMax = 10_000;

export class NatsLeaderDirectory implements LeaderDirectory {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly onChange: (namespace: string, name: string) => void,
    private readonly logger: Logger,
  ) {}

  private static id(ref: ClusterRef): string {
    return `${ref.namespace}/${ref.name}`;
  }

  async ensure(ref: ClusterRef): Promise<void> {
    const id = NatsLeaderDirectory.id(ref);
    const existing = this.entries.get(id);
    const natsSecurityKey = JSON.stringify(ref.natsSecurity ?? {});
    if (
      existing &&
      existing.natsUrl === ref.natsUrl &&
      existing.incarnation === ref.incarnation &&
      existing.natsSecurityKey === natsSecurityKey
    )
      return;
    if (existing) await this.forget(ref);
    if (!ref.natsUrl) return;
    if (this.entries.size >= clustersMax) throw new Error(`leader directory: more than ${clustersMax} clusters`);
    const watcher = await LeaderWatcher.start({
      servers: ref.natsUrl,
      ...(ref.natsSecurity ? { security: ref.natsSecurity } : {}),
      namespace: ref.namespace,
      cluster: ref.name,
      incarnation: ref.incarnation,
      logger: this.logger,
    });
    const unsubscribe = watcher.onChange(() => this.onChange(ref.namespace, ref.name));
    this.entries.set(id, { natsUrl: ref.natsUrl, natsSecurityKey, incarnation: ref.incarnation, watcher, unsubscribe });
  }

  leader(ref: ClusterRef, shard: number): KnownLeader | undefined {
    const entry = this.entries.get(NatsLeaderDirectory.id(ref));
    const record = entry?.watcher.leader(shard);
    if (!record || record.incarnation !== ref.incarnation) return undefined;
    return {
      ordinal: record.leaderOrdinal,
      address: record.address,
      ballot: { round: record.ballot.round, ordinal: record.ballot.ordinal },
    };
  }

  async forget(ref: Pick<ClusterRef, 'namespace' | 'name'>): Promise<void> {
    const id = `${ref.namespace}/${ref.name}`;
    const entry = this.entries.get(id);
    if (!entry) return;
    this.entries.delete(id);
    entry.unsubscribe();
    await entry.watcher
      .close()
      .catch((err: unknown) => this.logger.warn({ err: errorMessage(err) }, 'closing leader watcher failed'));
  }

  async close(): Promise<void> {
    for (const [id] of [...this.entries]) {
      const [namespace, name] = id.split('/') as [string, string];
      await this.forget({ namespace, name });
    }
  }
}
