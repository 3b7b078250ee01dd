// A small Prometheus registry: counters and gauges with labels, rendered as text format.
type Labels = Record<string, string>;

const seriesMax = 10_000;

function labelKey(labels: Labels): string {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k]!.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

class Metric {
  protected readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge',
  ) {}

  protected update(labels: Labels, f: (v: number) => number): void {
    const key = labelKey(labels);
    if (!this.values.has(key) && this.values.size >= seriesMax) return;
    this.values.set(key, f(this.values.get(key) ?? 0));
  }

  value(labels: Labels = {}): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    for (const [key, v] of this.values) lines.push(`${this.name}${key} ${v}`);
    return lines.join('\n');
  }
}

export class Counter extends Metric {
  constructor(name: string, help: string) {
    super(name, help, 'counter');
  }
  inc(labels: Labels = {}, by = 1): void {
    this.update(labels, (v) => v + by);
  }
}

export class Gauge extends Metric {
  constructor(name: string, help: string) {
    super(name, help, 'gauge');
  }
  set(value: number, labels: Labels = {}): void {
    this.update(labels, () => value);
  }
}

export class OperatorMetrics {
  readonly reconciles = new Counter(
    'shardbank_operator_reconcile_total',
    'Reconciles by result (success, error, requeue).',
  );
  readonly reconcileSeconds = new Counter('shardbank_operator_reconcile_seconds_total', 'Time spent reconciling.');
  readonly applies = new Counter('shardbank_operator_apply_total', 'Server-side applies by kind.');
  readonly queueDepth = new Gauge('shardbank_operator_workqueue_depth', 'Keys waiting in the work queue.');
  readonly isLeader = new Gauge('shardbank_operator_leader', '1 while this replica holds the Lease.');
  readonly relists = new Gauge(
    'shardbank_operator_informer_relists',
    'Full lists per informer (410 Gone and restarts).',
  );
  readonly stalls = new Gauge('shardbank_operator_informer_stalls', 'Watch streams aborted by the watchdog.');
  readonly clusterPhase = new Gauge('shardbank_operator_cluster_ready', '1 when a BankCluster is Ready.');

  render(): string {
    const all = [
      this.reconciles,
      this.reconcileSeconds,
      this.applies,
      this.queueDepth,
      this.isLeader,
      this.relists,
      this.stalls,
      this.clusterPhase,
    ];
    return all.map((m) => m.render()).join('\n') + '\n';
  }
}
