// Leader election on a coordination.k8s.io/v1 Lease, after client-go's leaderelection:
// a candidate takes the Lease only when the holder has not renewed it for a whole
// leaseDuration as measured on the candidate's own clock (no clock comparison across
// machines); the leader renews every retryPeriod and steps down if it cannot renew
// within renewDeadline; on shutdown it releases the Lease so a standby takes over at once.
import type { Logger } from 'pino';
import { errorMessage, isNotFound } from '../kube/api-error.js';
import type { KubeClient } from '../kube/kube-client.js';
import type { KubeObject } from '../kube/kube-object.js';
import { RESOURCES } from '../kube/resources.js';

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

interface Lease extends KubeObject {
  spec?: LeaseSpec;
}

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

export function microTime(date = new Date()): string {
  return date.toISOString().replace(/Z$/, '000Z');
}

export class LeaderElector {
  private leading = false;
  private stopped = false;
  private observedRecord = '';
  private observedAtMs = 0;
  private lastRenewMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;

  constructor(
    private readonly client: KubeClient,
    private readonly options: LeaderElectionOptions,
    private readonly logger: Logger,
  ) {
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    void this.tick();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), this.retryPeriodMs);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    try {
      const ok = await this.tryAcquireOrRenew();
      if (ok) {
        this.lastRenewMs = Date.now();
        if (!this.leading && !this.stopped) {
          this.leading = true;
          this.logger.info({ lease: this.options.name, identity: this.options.identity }, 'became leader');
          this.options.onStartedLeading();
        }
      } else this.checkRenewDeadline();
    } catch (err) {
      this.logger.warn({ err: errorMessage(err) }, 'lease update failed');
      this.checkRenewDeadline();
    }
    this.schedule();
  }

  private checkRenewDeadline(): void {
    if (this.leading && Date.now() - this.lastRenewMs > this.renewDeadlineMs) {
      this.leading = false;
      this.logger.error({ lease: this.options.name }, 'could not renew the lease in time: stepping down');
      this.options.onStoppedLeading();
    }
  }

  private desired(existing: LeaseSpec | undefined, now: Date): LeaseSpec {
    const sameHolder = existing?.holderIdentity === this.options.identity;
    return {
      holderIdentity: this.options.identity,
      leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
      acquireTime: sameHolder && existing?.acquireTime ? existing.acquireTime : microTime(now),
      renewTime: microTime(now),
      leaseTransitions: (existing?.leaseTransitions ?? 0) + (sameHolder ? 0 : 1),
    };
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name } = this.options;
    const now = new Date();
    let lease: Lease;
    try {
      lease = await this.client.get<Lease>(RESOURCES.lease, namespace, name);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await this.client.create(RESOURCES.lease, {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name, namespace },
        spec: { ...this.desired(undefined, now), leaseTransitions: 0 },
      });
      return true;
    }
    const record = JSON.stringify(lease.spec ?? {});
    if (record !== this.observedRecord) {
      this.observedRecord = record;
      this.observedAtMs = Date.now();
    }
    const holder = lease.spec?.holderIdentity ?? '';
    const durationMs = (lease.spec?.leaseDurationSeconds ?? 0) * 1000;
    if (holder !== '' && holder !== this.options.identity && Date.now() < this.observedAtMs + durationMs) return false;
    lease.spec = this.desired(lease.spec, now);
    await this.client.replace(RESOURCES.lease, lease);
    return true;
  }

  /** Stops campaigning; a leader releases the Lease so a standby can take over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (!this.leading) return;
    this.leading = false;
    try {
      const lease = await this.client.get<Lease>(RESOURCES.lease, this.options.namespace, this.options.name);
      if (lease.spec?.holderIdentity === this.options.identity) {
        lease.spec = { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime() };
        await this.client.replace(RESOURCES.lease, lease);
      }
    } catch (err) {
      this.logger.warn({ err: errorMessage(err) }, 'could not release the lease');
    }
  }
}
