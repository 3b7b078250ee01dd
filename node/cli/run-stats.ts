// Latency and outcome statistics of a bench or chaos run: overall percentiles and a
// per-second series (throughput, p99) for the HTML report. Bounded memory: reservoirs.
import type { ReportPoint } from './html-report.js';

export const LATENCY_SAMPLES_MAX = 500_000;
export const SECOND_SAMPLES_MAX = 5_000;

export interface LatencySummary {
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export interface SecondPoint {
  second: number;
  transfers: number;
  committed: number;
  /** COMMITTED or INSUFFICIENT_FUNDS: the cluster answered. */
  definite: number;
  /** Finished without a definite answer (UNKNOWN, ABORTED, refused). */
  failed: number;
  p99Ms: number | null;
}

/** Outcomes that are the cluster's definite answer. */
export function isDefinite(outcome: string): boolean {
  return outcome === 'COMMITTED' || outcome === 'INSUFFICIENT_FUNDS';
}

/** Reservoir sampling (Algorithm R): a uniform sample of at most `capacity` values. */
class Reservoir {
  readonly values: number[] = [];
  seen = 0;
  max = 0;
  constructor(private readonly capacity: number) {}
  add(value: number): void {
    this.seen += 1;
    this.max = Math.max(this.max, value);
    if (this.values.length < this.capacity) {
      this.values.push(value);
      return;
    }
    const slot = Math.floor(Math.random() * this.seen);
    if (slot < this.capacity) this.values[slot] = value;
  }
}

/** Nearest-rank percentile of sorted values (q in 0..1). */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

export class RunStats {
  private readonly latencies = new Reservoir(LATENCY_SAMPLES_MAX);
  private readonly seconds: { transfers: number; committed: number; definite: number; latencies: Reservoir }[] = [];
  readonly outcomes: Record<string, number> = {};
  transfers = 0;

  constructor(readonly startedAtMs: number) {}

  record(outcome: string, latencyMs: number, atMs: number): void {
    this.transfers += 1;
    this.outcomes[outcome] = (this.outcomes[outcome] ?? 0) + 1;
    this.latencies.add(latencyMs);
    const second = Math.max(0, Math.floor((atMs - this.startedAtMs) / 1000));
    while (this.seconds.length <= second)
      this.seconds.push({ transfers: 0, committed: 0, definite: 0, latencies: new Reservoir(SECOND_SAMPLES_MAX) });
    const bucket = this.seconds[second]!;
    bucket.transfers += 1;
    if (outcome === 'COMMITTED') bucket.committed += 1;
    if (isDefinite(outcome)) bucket.definite += 1;
    bucket.latencies.add(latencyMs);
  }

  latencySummary(): LatencySummary {
    const sorted = [...this.latencies.values].sort((a, b) => a - b);
    return {
      p50: round(percentile(sorted, 0.5)),
      p95: round(percentile(sorted, 0.95)),
      p99: round(percentile(sorted, 0.99)),
      max: round(this.latencies.max),
    };
  }

  /** One point per elapsed second up to `seconds` (empty seconds included, as zero). */
  series(seconds = this.seconds.length): SecondPoint[] {
    const points: SecondPoint[] = [];
    for (let second = 0; second < seconds; second += 1) {
      const bucket = this.seconds[second];
      if (bucket === undefined) {
        points.push({ second, transfers: 0, committed: 0, definite: 0, failed: 0, p99Ms: null });
        continue;
      }
      const sorted = [...bucket.latencies.values].sort((a, b) => a - b);
      points.push({
        second,
        transfers: bucket.transfers,
        committed: bucket.committed,
        definite: bucket.definite,
        failed: bucket.transfers - bucket.definite,
        p99Ms: sorted.length === 0 ? null : round(percentile(sorted, 0.99)),
      });
    }
    return points;
  }

  /** The report's series over `elapsedMs`: every second, the last one as far as the run went. */
  reportSeries(elapsedMs: number): ReportPoint[] {
    const seconds = Math.max(1, Math.ceil(elapsedMs / 1000));
    return this.series(seconds).map((point) => ({
      second: point.second,
      ...(point.second === seconds - 1 && elapsedMs < seconds * 1000
        ? { spanS: Math.max(0.001, elapsedMs / 1000 - point.second) }
        : {}),
      definite: point.definite,
      failed: point.failed,
      p99Ms: point.p99Ms,
    }));
  }
}
