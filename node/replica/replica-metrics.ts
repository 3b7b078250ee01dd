// Counters exported on /metrics in the Prometheus text format.
import { Outcome } from '../gen/shardbank/v1/bank.js';

export class ReplicaMetrics {
  elections = 0;
  persistBatches = 0;
  readonly outcomes = new Map<number, number>();
  grpcRequests = 0;
  forwardedRequests = 0;
  /** Transfers received over TransferStream (each stream message also counts as a gRPC request). */
  transferStreamEntries = 0;

  countOutcome(outcome: number): void {
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
  }

  render(gauges: Record<string, number>, labels: Record<string, string | number>): string {
    const labelText = Object.entries(labels)
      .map(([k, v]) => `${k}="${String(v).replaceAll('"', '')}"`)
      .join(',');
    const lines: string[] = [];
    const metric = (name: string, type: 'counter' | 'gauge', value: number, extra = '') => {
      lines.push(`# TYPE ${name} ${type}`);
      lines.push(`${name}{${labelText}${extra}} ${value}`);
    };
    metric('shardbank_elections_won_total', 'counter', this.elections);
    metric('shardbank_persist_batches_total', 'counter', this.persistBatches);
    metric('shardbank_grpc_requests_total', 'counter', this.grpcRequests);
    metric('shardbank_forwarded_requests_total', 'counter', this.forwardedRequests);
    metric('shardbank_transfer_stream_entries_total', 'counter', this.transferStreamEntries);
    lines.push('# TYPE shardbank_transfers_total counter');
    for (const [outcome, count] of this.outcomes) {
      lines.push(`shardbank_transfers_total{${labelText},outcome="${Outcome[outcome] ?? outcome}"} ${count}`);
    }
    for (const [name, value] of Object.entries(gauges)) metric(`shardbank_${name}`, 'gauge', value);
    return `${lines.join('\n')}\n`;
  }
}
