// The replica's own histogram (a typed-array series bound once, node/replica/replica-metrics.ts)
// renders exactly as prom-client's Histogram does for the same observations; the transfer
// latency follows tokens (a reply for an unknown or reused token is not observed).
import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { FastHistogram, LATENCY_BUCKETS, ReplicaMetrics } from '../../node/replica/replica-metrics.js';
import type { Metric } from 'prom-client';

describe('replica metrics', () => {
  it('FastHistogram renders like prom-client Histogram, default labels included', async () => {
    const values = [0, 0.0004, 0.0005, 0.003, 0.2, 0.2, 7, 11, 1e-9];
    const reference = new Registry();
    reference.setDefaultLabels({ cluster: 'c', shard: '1', replica: '2' });
    const h = new Histogram({
      name: 'x_seconds',
      help: 'help text',
      labelNames: ['scope'],
      buckets: LATENCY_BUCKETS,
      registers: [reference],
    });
    const ours = new Registry();
    ours.setDefaultLabels({ cluster: 'c', shard: '1', replica: '2' });
    const fast = new FastHistogram('x_seconds', 'help text', LATENCY_BUCKETS);
    ours.registerMetric(fast as unknown as Metric);
    const intra = fast.bind({ scope: 'intra' });
    const cross = fast.bind({ scope: 'cross' });
    for (const v of values) {
      h.labels('intra').observe(v);
      intra.observe(v);
    }
    h.labels('cross').observe(0.5);
    cross.observe(0.5);
    expect(await ours.metrics()).toBe(await reference.metrics());
  });

  it('times a transfer from its arrival to its reply, only for the token that arrived', async () => {
    const metrics = new ReplicaMetrics({ cluster: 'c', shard: 0, replica: 0 });
    const count = async (scope: string) =>
      Number(
        new RegExp(`shardbank_transfer_duration_seconds_count\\{[^}]*scope="${scope}"[^}]*\\} (\\d+)`).exec(
          await metrics.render(),
        )?.[1],
      );
    metrics.transferArrived(7, false);
    metrics.transferArrived(8, true);
    metrics.endTurn();
    metrics.replied({ token: 9, kind: 'transfer', outcome: 1, index: 1 }); // never arrived
    metrics.replied({ token: 7 + (1 << 18), kind: 'transfer', outcome: 1, index: 1 }); // same ring slot, other token
    expect(await count('intra')).toBe(0);
    metrics.replied({ token: 7, kind: 'transfer', outcome: 1, index: 1 });
    metrics.replied({ token: 7, kind: 'transfer', outcome: 1, index: 1 }); // twice: counted once
    metrics.replied({ token: 8, kind: 'error', code: 'aborted', message: '', leaderOrdinal: 0 });
    expect(await count('intra')).toBe(1);
    expect(await count('cross')).toBe(0);
    const text = await metrics.render();
    expect(text).toMatch(/shardbank_transfers_total\{outcome="COMMITTED"[^}]*\} 1$/m);
    expect(text).toMatch(/shardbank_transfers_total\{outcome="ABORTED"[^}]*\} 1$/m);
  });
});
