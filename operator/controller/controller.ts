// Wires informers to the work queue and the reconciler: a BankCluster event enqueues that
// cluster; an event on an object it owns (StatefulSet, Service, PDB, ConfigMap, Pod)
// enqueues the owner. Workers take keys from the queue; failures are retried with
// rate-limited backoff; a result's requeueAfter schedules a later look.
import type { Logger } from 'pino';
import { KIND } from '../../node/cluster/bankcluster.js';
import { FIELD_MANAGER, LABEL_CLUSTER } from '../builders/labels.js';
import { errorMessage } from '../kube/api-error.js';
import type { KubeClient } from '../kube/kube-client.js';
import type { KubeObject } from '../kube/kube-object.js';
import { RESOURCES, type ResourceKind } from '../kube/resources.js';
import type { OperatorMetrics } from '../observability/metrics.js';
import type { ObjectCache } from '../reconcile/object-cache.js';
import type { Reconciler } from '../reconcile/reconciler.js';
import { Informer, type InformerEventType, type InformerOptions } from './informer.js';
import { WorkQueue } from './work-queue.js';

export interface ControllerOptions {
  workers?: number;
  informer?: InformerOptions;
}

const OWNED: ResourceKind[] = [
  RESOURCES.statefulSet,
  RESOURCES.service,
  RESOURCES.podDisruptionBudget,
  RESOURCES.configMap,
  RESOURCES.secret,
  RESOURCES.networkPolicy,
];

export class Controller implements ObjectCache {
  readonly queue = new WorkQueue();
  private readonly informers = new Map<string, Informer<KubeObject>>();
  private workers: Promise<void>[] = [];
  private reconciler: Reconciler | undefined;
  private stopped = false;

  constructor(
    client: KubeClient,
    private readonly metrics: OperatorMetrics,
    private readonly logger: Logger,
    private readonly options: ControllerOptions = {},
  ) {
    const add = (
      resource: ResourceKind,
      labelSelector: string | undefined,
      handler: (t: InformerEventType, o: KubeObject) => void,
    ) => {
      const informer = new Informer<KubeObject>(
        client,
        resource,
        handler,
        logger.child({ informer: resource.plural }),
        {
          ...options.informer,
          ...(labelSelector ? { labelSelector } : {}),
        },
      );
      this.informers.set(resource.plural, informer);
    };
    add(RESOURCES.bankCluster, undefined, (_t, o) => this.enqueue(o.metadata.namespace ?? 'default', o.metadata.name));
    for (const resource of OWNED) {
      add(resource, `app.kubernetes.io/managed-by=${FIELD_MANAGER}`, (_t, o) => this.enqueueOwner(o));
    }
    add(RESOURCES.pod, LABEL_CLUSTER, (_t, o) => {
      const cluster = o.metadata.labels?.[LABEL_CLUSTER];
      if (cluster) this.enqueue(o.metadata.namespace ?? 'default', cluster);
    });
  }

  setReconciler(reconciler: Reconciler): void {
    this.reconciler = reconciler;
  }

  enqueue(namespace: string, name: string): void {
    this.queue.add(`${namespace}/${name}`);
    this.metrics.queueDepth.set(this.queue.length);
  }

  private enqueueOwner(o: KubeObject): void {
    const owner = (o.metadata.ownerReferences ?? []).find((r) => r.kind === KIND && r.controller);
    if (owner) this.enqueue(o.metadata.namespace ?? 'default', owner.name);
  }

  get(resource: ResourceKind, namespace: string, name: string): KubeObject | undefined {
    return this.informers.get(resource.plural)?.get(`${namespace}/${name}`);
  }

  list(resource: ResourceKind, namespace: string, labels: Record<string, string>): KubeObject[] {
    const informer = this.informers.get(resource.plural);
    if (!informer) return [];
    return informer
      .list()
      .filter(
        (o) =>
          (o.metadata.namespace ?? 'default') === namespace &&
          Object.entries(labels).every(([k, v]) => o.metadata.labels?.[k] === v),
      );
  }

  get synced(): boolean {
    return [...this.informers.values()].every((i) => i.hasSynced);
  }

  informerStats(): { resource: string; relists: number; stalls: number }[] {
    return [...this.informers].map(([resource, i]) => ({ resource, relists: i.stats.relists, stalls: i.stats.stalls }));
  }

  async start(): Promise<void> {
    for (const informer of this.informers.values()) informer.start();
    while (!this.synced && !this.stopped) await new Promise((r) => setTimeout(r, 100));
    if (this.stopped) return;
    const workers = this.options.workers ?? 2;
    this.workers = Array.from({ length: workers }, () => this.work());
  }

  private async work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      this.metrics.queueDepth.set(this.queue.length);
      const [namespace, name] = key.split('/') as [string, string];
      const started = process.hrtime.bigint();
      let result = 'error';
      try {
        const reconciled = await this.reconciler!.reconcile(namespace, name);
        this.queue.forget(key);
        result = reconciled.requeueAfterMs ? 'requeue' : 'success';
        if (reconciled.requeueAfterMs) this.queue.addAfter(key, reconciled.requeueAfterMs);
      } catch (err) {
        const delay = this.queue.addRateLimited(key);
        this.logger.warn({ key, err: errorMessage(err), retryInMs: delay }, 'reconcile failed');
      } finally {
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        this.metrics.reconciled({ kind: KIND, namespace, name }, result, seconds);
        this.queue.done(key);
      }
    }
  }

  /** Stops taking work, lets running reconciles finish, then stops the watches. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.queue.shutDown();
    await Promise.all(this.workers);
    await Promise.all([...this.informers.values()].map((i) => i.stop()));
  }
}
