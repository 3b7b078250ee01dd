// The operator's Prometheus metrics (/metrics): one prom-client Registry per process with its
// default process metrics. Names and meanings: docs/METRICS.md.
import { Counter, Gauge, Histogram } from 'prom-client';
import { processRegistry } from '../../node/util/prometheus.js';

/** Seconds: a reconcile is a few API calls, a slow one waits on the API server. */
const RECONCILE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** What the scrape reads from the running operator. */
export interface OperatorSources {
  isLeader(): boolean;
  informerStats(): { resource: string; relists: number; stalls: number }[];
}

export class OperatorMetrics {
  readonly registry = processRegistry();
  private sources: OperatorSources | undefined;

  readonly reconciles = new Counter({
    name: 'shardbank_operator_reconcile_total',
    help: 'Reconciles by resource (kind, resource_namespace, resource_name) and result (success, error, requeue: success with a later look asked for).',
    labelNames: ['resource', 'resource_namespace', 'resource_name', 'result'] as const,
    registers: [this.registry],
  });
  readonly reconcileErrors = new Counter({
    name: 'shardbank_operator_reconcile_errors_total',
    help: 'Reconciles that failed (retried with backoff), by resource (kind, resource_namespace, resource_name).',
    labelNames: ['resource', 'resource_namespace', 'resource_name'] as const,
    registers: [this.registry],
  });
  readonly reconcileDuration = new Histogram({
    name: 'shardbank_operator_reconcile_duration_seconds',
    help: 'Time one reconcile took, whatever its result, by resource (kind, resource_namespace, resource_name).',
    labelNames: ['resource', 'resource_namespace', 'resource_name'] as const,
    buckets: RECONCILE_BUCKETS,
    registers: [this.registry],
  });
  readonly applies = new Counter({
    name: 'shardbank_operator_apply_total',
    help: 'Server-side applies of owned objects that changed them, by kind.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'shardbank_operator_workqueue_depth',
    help: 'Keys waiting in the work queue.',
    registers: [this.registry],
  });
  readonly clusterReady = new Gauge({
    name: 'shardbank_operator_cluster_ready',
    help: '1 when a BankCluster is Ready, else 0, by resource_namespace and resource_name (not namespace: Prometheus gives that label to the scraped pod).',
    labelNames: ['resource_namespace', 'resource_name'] as const,
    registers: [this.registry],
  });

  constructor() {
    const here = () => this.sources;
    new Gauge({
      name: 'shardbank_operator_leader',
      help: '1 while this operator replica holds the Lease (and reconciles), else 0.',
      registers: [this.registry],
      collect() {
        this.set(here()?.isLeader() ? 1 : 0);
      },
    });
    new Counter({
      name: 'shardbank_operator_informer_relists_total',
      help: 'Full lists per informer (the first list, after 410 Gone, after restarts), by resource.',
      labelNames: ['resource'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of here()?.informerStats() ?? []) this.labels(s.resource).inc(s.relists);
      },
    });
    new Counter({
      name: 'shardbank_operator_informer_stalls_total',
      help: 'Watch streams aborted by the watchdog (no event nor bookmark in time), by resource.',
      labelNames: ['resource'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of here()?.informerStats() ?? []) this.labels(s.resource).inc(s.stalls);
      },
    });
  }

  attach(sources: OperatorSources): void {
    this.sources = sources;
  }

  /** Counts and times one reconcile of a resource. */
  reconciled(resource: { kind: string; namespace: string; name: string }, result: string, seconds: number): void {
    const labels = { resource: resource.kind, resource_namespace: resource.namespace, resource_name: resource.name };
    this.reconciles.inc({ ...labels, result });
    if (result === 'error') this.reconcileErrors.inc(labels);
    this.reconcileDuration.observe(labels, seconds);
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
