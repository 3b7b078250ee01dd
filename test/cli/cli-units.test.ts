import { describe, expect, it } from 'vitest';
import { endpointsTarget, parseDurationMs, parseIntegerOption, parseNumberOption } from '../../node/cli/args.js';
import { benchJson, benchText, parseBenchSettings, progressBar } from '../../node/cli/bench-command.js';
import { UsageError } from '../../node/cli/cli-io.js';
import { chaosJson, chaosText, recoverySummary } from '../../node/cli/chaos-command.js';
import { checkBank, ExpectationLedger } from '../../node/client/bank-invariants.js';
import { escapeHtml, renderHtmlReport } from '../../node/cli/html-report.js';
import { leaderChanges } from '../../node/cli/leader-tracker.js';
import { percentile, RunStats } from '../../node/cli/run-stats.js';
import { ItemSampler, PairGenerator } from '../../node/cli/workload.js';
import { shardOfItem } from '../../node/cluster/topology.js';
import type { ClusterView } from '../../node/client/status-view.js';

function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

describe('argument parsing', () => {
  it('parses durations', () => {
    expect(parseDurationMs('duration', '10s')).toBe(10_000);
    expect(parseDurationMs('duration', '500ms')).toBe(500);
    expect(parseDurationMs('duration', '2m')).toBe(120_000);
    expect(parseDurationMs('duration', '1.5s')).toBe(1500);
    expect(parseDurationMs('duration', '3')).toBe(3000);
    expect(() => parseDurationMs('duration', 'ten')).toThrow(/--duration: expected a duration/);
    expect(() => parseDurationMs('duration', '0s')).toThrow(UsageError);
  });
  it('parses bounded numbers naming the option', () => {
    expect(parseIntegerOption('clients', '8', 1, 1, 10)).toBe(8);
    expect(parseIntegerOption('clients', undefined, 1, 1, 10)).toBe(1);
    expect(() => parseIntegerOption('clients', '1.5', 1, 1, 10)).toThrow(/--clients: expected an integer from 1 to 10/);
    expect(() => parseIntegerOption('clients', '0', 1, 1, 10)).toThrow(UsageError);
    expect(parseNumberOption('cross-shard-ratio', '0.5', 0.67, 0, 1)).toBe(0.5);
    expect(() => parseNumberOption('cross-shard-ratio', '2', 0.67, 0, 1)).toThrow(/--cross-shard-ratio/);
  });
  it('builds a remote target from --endpoints and --cluster', () => {
    const target = endpointsTarget({ endpoints: 'a:1,a:2,a:3;b:1,b:2,b:3', cluster: 'bank', 'items-per-shard': '100' });
    expect(target.options.topology).toEqual({ shards: 2, replicasPerShard: 3, itemsPerShard: 100, initialBalance: 10 });
    expect(target.options.endpoints[1]).toEqual(['b:1', 'b:2', 'b:3']);
    expect(() => endpointsTarget({ endpoints: 'a:1' })).toThrow(/--cluster/);
    expect(() => endpointsTarget({ endpoints: 'a', cluster: 'x' })).toThrow(/not host:port/);
  });
  it('bench defaults follow the reference workload', () => {
    expect(parseBenchSettings({})).toEqual({
      clients: 16,
      durationMs: 10_000,
      warmupMs: 0,
      crossShardRatio: 0.67,
      zipf: 0,
      batchSize: 1,
      amount: 1,
      timeoutMs: 10_000,
    });
    expect(parseBenchSettings({ warmup: '2s' }).warmupMs).toBe(2000);
    expect(parseBenchSettings({ warmup: '0s' }).warmupMs).toBe(0);
    expect(() => parseBenchSettings({ warmup: 'soon' })).toThrow(/--warmup/);
    expect(() => parseBenchSettings({ batch: '0' })).toThrow(/--batch/);
  });
});

describe('workload', () => {
  const topology = { shards: 3, itemsPerShard: 3000, replicasPerShard: 3, initialBalance: 10 };
  it('crosses shards at the requested ratio and never pairs an item with itself', () => {
    const generator = new PairGenerator({ topology, crossShardRatio: 0.67, zipfExponent: 0 }, seeded(1));
    let cross = 0;
    const total = 6000;
    for (let index = 0; index < total; index += 1) {
      const { from, to } = generator.next();
      expect(from).not.toBe(to);
      if (shardOfItem(topology, from) !== shardOfItem(topology, to)) cross += 1;
    }
    expect(cross / total).toBeGreaterThan(0.62);
    expect(cross / total).toBeLessThan(0.72);
  });
  it('keeps every pair within one shard at ratio 0 and across at ratio 1, even when skewed', () => {
    for (const [ratio, zipf] of [
      [0, 0],
      [1, 0],
      [0, 1.5],
      [1, 3],
    ] as const) {
      const generator = new PairGenerator({ topology, crossShardRatio: ratio, zipfExponent: zipf }, seeded(7));
      for (let index = 0; index < 500; index += 1) {
        const { from, to } = generator.next();
        expect(from).not.toBe(to);
        expect(shardOfItem(topology, from) !== shardOfItem(topology, to)).toBe(ratio === 1);
      }
    }
  });
  it('zipf concentrates on few items, spread over shards', () => {
    const sampler = new ItemSampler(9000, 1.2, seeded(3));
    const counts = new Map<number, number>();
    for (let index = 0; index < 20_000; index += 1) {
      const item = sampler.next();
      expect(item).toBeGreaterThanOrEqual(1);
      expect(item).toBeLessThanOrEqual(9000);
      counts.set(item, (counts.get(item) ?? 0) + 1);
    }
    const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 10);
    expect(top.reduce((sum, [, count]) => sum + count, 0)).toBeGreaterThan(20_000 * 0.2);
    expect(new Set(top.map(([item]) => shardOfItem(topology, item))).size).toBeGreaterThan(1);
  });
});

describe('run statistics and bench output', () => {
  it('computes nearest-rank percentiles', () => {
    const sorted = Array.from({ length: 100 }, (_, index) => index + 1);
    expect(percentile(sorted, 0.5)).toBe(50);
    expect(percentile(sorted, 0.99)).toBe(99);
    expect(percentile([], 0.5)).toBe(0);
  });
  it('keeps a per-second series, with empty seconds', () => {
    const stats = new RunStats(0);
    stats.record('COMMITTED', 2, 100);
    stats.record('INSUFFICIENT_FUNDS', 4, 900);
    stats.record('COMMITTED', 8, 2500);
    stats.record('UNKNOWN', 9, 2600);
    expect(stats.series(4)).toEqual([
      { second: 0, transfers: 2, committed: 1, definite: 2, failed: 0, p99Ms: 4 },
      { second: 1, transfers: 0, committed: 0, definite: 0, failed: 0, p99Ms: null },
      { second: 2, transfers: 2, committed: 1, definite: 1, failed: 1, p99Ms: 9 },
      { second: 3, transfers: 0, committed: 0, definite: 0, failed: 0, p99Ms: null },
    ]);
    // The report's series: the last second only as far as the run went.
    expect(stats.reportSeries(2_500)).toEqual([
      { second: 0, definite: 2, failed: 0, p99Ms: 4 },
      { second: 1, definite: 0, failed: 0, p99Ms: null },
      { second: 2, spanS: 0.5, definite: 1, failed: 1, p99Ms: 9 },
    ]);
    expect(stats.latencySummary()).toEqual({ p50: 4, p95: 9, p99: 9, max: 9 });
  });
  it('bench --json has exactly the SPEC keys', () => {
    const stats = new RunStats(0);
    for (let index = 0; index < 10; index += 1) stats.record('COMMITTED', index, index * 100);
    const result = benchJson(parseBenchSettings({ clients: '64' }), stats, 2000);
    expect(Object.keys(result)).toEqual([
      'clients',
      'durationS',
      'crossShardRatio',
      'batchSize',
      'transfers',
      'transfersPerS',
      'latencyMs',
      'outcomes',
    ]);
    expect(Object.keys(result.latencyMs)).toEqual(['p50', 'p95', 'p99', 'max']);
    expect(result).toMatchObject({
      clients: 64,
      durationS: 2,
      crossShardRatio: 0.67,
      batchSize: 1,
      transfers: 10,
      transfersPerS: 5,
      outcomes: { COMMITTED: 10 },
    });
    expect(benchText(result)).toContain('p99 9');
    expect(progressBar({ elapsedMs: 500, totalMs: 1000, transfers: 10, failed: 0, nowPerS: 12 }, 10)).toBe(
      '\r[#####.....] 50%  10 transfers  now 12/s  avg 20/s\u001b[K',
    );
  });
});

describe('HTML report', () => {
  const html = renderHtmlReport({
    title: 'chaos <test>',
    generatedAt: '2026-01-01T00:00:00Z',
    series: [
      { second: 0, definite: 10, failed: 0, p99Ms: 5 },
      { second: 1, definite: 0, failed: 0, p99Ms: null },
      { second: 2, definite: 20, failed: 0, p99Ms: 7.5 },
    ],
    markers: [
      { atS: 1.2, kind: 'kill', label: 'SIGKILL replica s0-1' },
      { atS: 1.9, kind: 'leader-change', label: 'shard 0: leader 2' },
    ],
    summary: [
      ['transfers', 30],
      ['verdict', 'PASS'],
    ],
    verdict: { ok: true, text: 'every invariant held' },
  });
  it('is self-contained: inline SVG, no scripts, no external assets', () => {
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html.match(/<svg /g)).toHaveLength(2);
    expect(html).not.toMatch(/<script|<link|src=|url\(|https?:\/\//);
    expect(html).toContain(`content="default-src 'none'; style-src 'unsafe-inline'"`);
  });
  it('shows series, markers and final numbers, escaped', () => {
    expect(html).toContain('chaos &lt;test&gt;');
    expect(html).toContain('SIGKILL replica s0-1');
    expect(html).toContain('<th>transfers</th><td>30</td>');
    expect(html).toContain('PASS: every invariant held');
    expect(html).toContain('<polyline');
    expect(escapeHtml(`<a href="x">'&`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;');
  });
});

describe('leader change markers', () => {
  const view = (leaders: ([number, number, number] | null)[]): ClusterView => ({
    cluster: 'c',
    shards: leaders.map((leader, shard) => ({
      shard,
      items: [1, 2],
      replicas: [],
      inflightTransactions: 0,
      voters: [0, 1, 2],
      learners: [],
      membershipChangeInFlight: false,
      leader: leader === null ? null : { ordinal: leader[0], ballot: [leader[1], leader[2]], address: 'a' },
    })),
  });
  it('reports a new leader or ballot, not the first view or an unchanged one', () => {
    expect(leaderChanges(undefined, view([[0, 1, 0]]), 0)).toEqual([]);
    expect(leaderChanges(view([[0, 1, 0]]), view([[0, 1, 0]]), 1)).toEqual([]);
    expect(
      leaderChanges(
        view([
          [0, 1, 0],
          [1, 1, 1],
        ]),
        view([[2, 2, 2], null]),
        2.5,
      ),
    ).toEqual([{ atS: 2.5, kind: 'leader-change', label: 'shard 0: leader 2 ballot 2.2' }]);
  });
});

describe('chaos output', () => {
  it('prints the verdict with the counts it checked', () => {
    const ledger = new ExpectationLedger();
    ledger.record({ from: 1, to: 2, amount: 1, outcome: 'COMMITTED' });
    const balances = new Map([
      [1, 9],
      [2, 11],
    ]);
    const verdict = checkBank({
      initialTotal: 20,
      startBalances: new Map([
        [1, 10],
        [2, 10],
      ]),
      finalBalances: balances,
      ledger,
      replicaReads: [
        {
          shard: 0,
          replicas: [
            { ordinal: 0, appliedIndex: 3, balances },
            { ordinal: 1, appliedIndex: 3, balances },
          ],
        },
      ],
    });
    const stats = new RunStats(0);
    stats.record('COMMITTED', 3, 10);
    const settings = {
      durationMs: 1000,
      intervalMs: 500,
      target: 'leader' as const,
      nats: true,
      clients: 1,
      crossShardRatio: 0.67,
      settleMs: 1000,
      callTimeoutMs: 1000,
    };
    const json = JSON.parse(
      JSON.stringify(
        chaosJson(verdict, { replicaKills: 2, natsKills: 1 }, settings, stats, 1000, {
          outcomeUnknown: 1,
          pendingAtEnd: 0,
        }),
      ),
    );
    expect(Object.keys(json)).toEqual([
      'type',
      'ok',
      'durationS',
      'target',
      'faults',
      'resolution',
      'transfers',
      'outcomes',
      'checks',
      'counts',
    ]);
    expect(json).toMatchObject({
      ok: true,
      durationS: 1,
      faults: { replicaKills: 2, natsKills: 1 },
      counts: { committed: 1, items: 2, replicasCompared: 2 },
    });
    const text = chaosText(verdict, { replicaKills: 2, natsKills: 1 }, { outcomeUnknown: 1, pendingAtEnd: 0 });
    expect(text.split('\n').at(-1)).toBe('PASS: every invariant held');
    expect(text).toMatch(/ok {3}exactlyOnce: 1 committed transfers applied exactly once/);
  });

  it('summarizes leader fault to next new commit on the shard (p50, max, unmeasured)', () => {
    const recovery = recoverySummary([
      { label: 'a', shard: 0, atMs: 0, recoveredMs: 900 },
      { label: 'b', shard: 1, atMs: 0, recoveredMs: 300 },
      { label: 'c', shard: 2, atMs: 0, recoveredMs: 2_000 },
      { label: 'd', shard: 2, atMs: 0 },
    ]);
    expect(recovery).toEqual({ measured: 3, unmeasured: 1, p50Ms: 900, maxMs: 2_000, samplesMs: [900, 300, 2_000] });
    expect(recoverySummary([])).toMatchObject({ measured: 0, p50Ms: null, maxMs: null });
  });
});
