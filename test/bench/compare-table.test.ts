import { describe, expect, it } from 'vitest';

import { loneClientRatios, medianRows, ratios, table, type Row } from '../../node/bench/compare-table.js';

const row = (system: string, clients: number, transfersPerS: number, p50Ms = 1, p99Ms = 2, batchSize = 1): Row => ({
  system,
  clients,
  batchSize,
  transfersPerS,
  p50Ms,
  p99Ms,
});

describe('bench:compare table', () => {
  it("reports each row as the median of its rounds, keeping every round's throughput", () => {
    const rounds = [
      [row('shardbank 3x3', 64, 3000, 18, 40), row('postgresql', 64, 3500, 16, 30)],
      [row('shardbank 3x3', 64, 3900, 15, 38), row('postgresql', 64, 2900, 19, 35)],
      [row('shardbank 3x3', 64, 3600, 16, 45), row('postgresql', 64, 3300, 17, 33)],
    ];
    const rows = medianRows(rounds);
    expect(rows).toEqual([
      {
        system: 'shardbank 3x3',
        clients: 64,
        batchSize: 1,
        transfersPerS: 3600,
        p50Ms: 16,
        p99Ms: 40,
        samples: [3000, 3900, 3600],
      },
      {
        system: 'postgresql',
        clients: 64,
        batchSize: 1,
        transfersPerS: 3300,
        p50Ms: 17,
        p99Ms: 33,
        samples: [3500, 2900, 3300],
      },
    ]);
    expect(ratios(rows)).toEqual({ 'shardbank/postgresql throughput @64': 1.09 });
  });

  it('an even number of rounds takes the mean of the middle two; a system missing from a round is a median of fewer', () => {
    const rows = medianRows([[row('etcd', 1, 100), row('shardbank 3x3', 1, 400)], [row('etcd', 1, 300)]]);
    expect(rows.find((r) => r.system === 'etcd')!.transfersPerS).toBe(200);
    expect(rows.find((r) => r.system === 'shardbank 3x3')!.samples).toEqual([400]);
  });

  it('ratios compare like with like: same client count, batch 1, never the unbatched variant', () => {
    const rows = [
      row('shardbank 3x3', 64, 3000),
      row('shardbank 3x3 (no client batching)', 64, 2000),
      row('shardbank 3x3 (cross-shard only)', 1, 300),
      row('shardbank 3x3', 16, 25000, 500, 900, 1000),
      row('etcd', 64, 1000),
      row('postgresql', 1, 1000),
    ];
    expect(ratios(rows)).toEqual({
      'shardbank/etcd throughput @64': 3,
      // The lone-client rows by kind are compared by latency only (below).
      'shardbank cross-shard/postgresql p50 @1': 1,
      'shardbank cross-shard/postgresql p99 @1': 1,
    });
    expect(table(rows).split('\n')).toHaveLength(rows.length + 1);
  });

  it("compares a lone client's latency by kind with PostgreSQL's lone client, p50 and p99", () => {
    const rows = [
      row('shardbank 3x3 (intra-shard only)', 1, 1200, 0.6, 2.4),
      row('shardbank 3x3 (cross-shard only)', 1, 500, 1.6, 6),
      row('shardbank 3x3 insecure (intra-shard only)', 1, 1300, 0.5, 2),
      row('shardbank 3x3 (intra-shard only)', 64, 9000, 7, 20), // not a lone client: no ratio
      row('postgresql 15, one node, fsync on', 1, 1500, 0.8, 1.6),
    ];
    expect(loneClientRatios(rows)).toEqual({
      'shardbank intra-shard/postgresql p50 @1': 0.75,
      'shardbank intra-shard/postgresql p99 @1': 1.5,
      'shardbank cross-shard/postgresql p50 @1': 2,
      'shardbank cross-shard/postgresql p99 @1': 3.75,
      'shardbank insecure intra-shard/postgresql p50 @1': 0.63,
      'shardbank insecure intra-shard/postgresql p99 @1': 1.25,
    });
    // Without PostgreSQL's lone client there is nothing to compare with.
    expect(loneClientRatios(rows.slice(0, 4))).toEqual({});
  });

  it('gives what TLS costs: the TLS cluster against `up --insecure`, per client count', () => {
    const rows = [
      row('shardbank 3x3', 64, 2700),
      row('shardbank 3x3', 1, 400),
      row('shardbank 3x3 insecure', 64, 3000),
      row('shardbank 3x3 insecure', 1, 400),
      row('postgresql', 64, 3000),
    ];
    expect(ratios(rows)).toEqual({
      'shardbank tls/insecure throughput @64': 0.9,
      'shardbank tls/insecure throughput @1': 1,
      'shardbank/postgresql throughput @64': 0.9,
    });
    // Insecure alone: compared with the others, no TLS ratio.
    expect(ratios([row('shardbank 3x3 insecure', 64, 3000), row('postgresql', 64, 3000)])).toEqual({
      'shardbank/postgresql throughput @64': 1,
    });
  });
});
