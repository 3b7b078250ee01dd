// /metrics of real replica processes (2 shards x 3 replicas on loopback): valid Prometheus text
// format (checked here, and by `promtool check metrics` when it is built), HELP and TYPE on
// every metric, counters named _total and gauges never, and the latency histograms move with
// intra- and cross-shard transfers.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Outcome } from '../../node/gen/shardbank/v1/bank.js';
import { ReplicaCluster, pollUntil } from '../support/replica-cluster.js';
import { parsePrometheusText, type MetricFamily } from '../support/prometheus-text.js';
import { promtoolPath } from '../support/promtool.js';

const topology = { shards: 2, replicasPerShard: 3, itemsPerShard: 20, initialBalance: 100 };

describe('replica /metrics', () => {
  let cluster: ReplicaCluster;

  const scrape = async (
    shard: number,
    ordinal: number,
  ): Promise<{ text: string; families: Map<string, MetricFamily> }> => {
    const response = await fetch(`http://127.0.0.1:${cluster.replicas[shard]![ordinal]!.httpPort}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    return { text, families: parsePrometheusText(text) };
  };
  const value = (families: Map<string, MetricFamily>, name: string, labels: Record<string, string> = {}) => {
    const family = families.get(name.replace(/_(bucket|sum|count)$/, ''));
    const sample = family?.samples.find(
      (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    );
    return sample?.value;
  };

  beforeAll(async () => {
    cluster = await ReplicaCluster.start({ topology });
    await cluster.waitForLeaders();
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it('is valid text format with HELP and the right type on every metric', async () => {
    const leader = await cluster.leaderOf(0);
    const { text, families } = await scrape(0, leader);
    expect(families.size).toBeGreaterThan(30);
    for (const [name, family] of families) {
      expect(family.help, `HELP of ${name}`).toBeTruthy();
      expect(family.type, `TYPE of ${name}`).toBeDefined();
      if (family.type === 'gauge') expect(name, 'a gauge named _total').not.toMatch(/_total$/);
      if (family.type === 'counter') expect(name, 'a counter not named _total').toMatch(/_total$/);
      for (const sample of family.samples) {
        expect(sample.labels.cluster, `${sample.name}: cluster label`).toBe('test');
        expect(sample.labels.shard, `${sample.name}: shard label`).toBe('0');
        expect(sample.labels.replica, `${sample.name}: replica label`).toBe(String(leader));
      }
    }
    // prom-client's process metrics, and the replica's own.
    for (const name of [
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_seconds',
      'shardbank_is_leader',
      'shardbank_leader_known',
      'shardbank_shard_replicas',
      'shardbank_commit_index',
      'shardbank_elections_won_total',
      'shardbank_elections_started_total',
      'shardbank_leader_changes_total',
      'shardbank_transfers_total',
      'shardbank_tx_aborts_total',
      'shardbank_grpc_requests_total',
      'shardbank_forwarded_requests_total',
      'shardbank_log_syncs_total',
      'shardbank_inflight_transactions',
      'shardbank_indoubt_transactions',
      'shardbank_indoubt_oldest_age_seconds',
      'shardbank_transfer_duration_seconds',
      'shardbank_commit_duration_seconds',
      'shardbank_log_fsync_duration_seconds',
      'shardbank_2pc_phase_duration_seconds',
    ])
      expect(families.has(name), name).toBe(true);
    expect(families.get('shardbank_transfer_duration_seconds')!.type).toBe('histogram');
    expect(value(families, 'shardbank_is_leader')).toBe(1);
    expect(value(families, 'shardbank_indoubt_transactions')).toBe(0);
    expect(value(families, 'shardbank_elections_won_total')).toBeGreaterThanOrEqual(1);
    const promtool = promtoolPath();
    if (existsSync(promtool)) {
      const checked = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect(checked.status, `promtool check metrics:\n${checked.stdout}${checked.stderr}`).toBe(0);
    }
  });

  it('a leader serving a lone client writes its log on its own thread, as followers do', async () => {
    const leader = await cluster.leaderOf(0);
    const onThread = (families: Map<string, MetricFamily>) =>
      value(families, 'shardbank_log_fsync_duration_seconds_count', { path: 'sync_now' }) ?? 0;
    const before = onThread((await scrape(0, leader)).families);
    // One transfer at a time within shard 0: the leader has one request waiting per slot.
    for (let r = 1; r <= 5; r += 1)
      expect((await cluster.transfer('lone-client', r, r, r + 10, 1)).outcome).toBe(Outcome.COMMITTED);
    expect(await cluster.leaderOf(0)).toBe(leader);
    // Each transfer's slot is one durable write of the leader, none through the thread pool.
    expect(onThread((await scrape(0, leader)).families) - before).toBeGreaterThanOrEqual(5);
  });

  it('times intra- and cross-shard transfers, commits, fsyncs and the 2PC phases', async () => {
    const leader0 = await cluster.leaderOf(0);
    const before = (await scrape(0, leader0)).families;
    const count = (families: Map<string, MetricFamily>, scope: string) =>
      value(families, 'shardbank_transfer_duration_seconds_count', { scope }) ?? 0;
    const intraBefore = count(before, 'intra');
    const crossBefore = count(before, 'cross');
    // Items 1..20 are shard 0, 21..40 shard 1: three transfers within shard 0, three across.
    for (let r = 1; r <= 3; r += 1) {
      expect((await cluster.transfer('metrics-intra', r, r, r + 5, 1)).outcome).toBe(Outcome.COMMITTED);
      expect((await cluster.transfer('metrics-cross', r, r, 20 + r, 1)).outcome).toBe(Outcome.COMMITTED);
    }
    // The transfers went to the leader of shard 0 (the test client retries elsewhere only on errors).
    const after = await pollUntil(
      'the histograms to count the transfers',
      async () => {
        const { families } = await scrape(0, await cluster.leaderOf(0));
        return count(families, 'intra') >= intraBefore + 3 && count(families, 'cross') >= crossBefore + 3
          ? families
          : undefined;
      },
      60_000,
      200,
    );
    const sum = (scope: string) => value(after, 'shardbank_transfer_duration_seconds_sum', { scope }) ?? 0;
    expect(sum('intra')).toBeGreaterThan(0);
    expect(sum('cross')).toBeGreaterThan(0);
    // Cumulative buckets: +Inf holds every observation.
    expect(value(after, 'shardbank_transfer_duration_seconds_bucket', { scope: 'cross', le: '+Inf' })).toBe(
      count(after, 'cross'),
    );
    expect(value(after, 'shardbank_commit_duration_seconds_count')).toBeGreaterThan(0);
    expect(value(after, 'shardbank_2pc_phase_duration_seconds_count', { phase: 'prepare' })).toBeGreaterThanOrEqual(3);
    expect(value(after, 'shardbank_2pc_phase_duration_seconds_count', { phase: 'decision' })).toBeGreaterThanOrEqual(1);
    expect(value(after, 'shardbank_transfers_total', { outcome: 'COMMITTED' })).toBeGreaterThanOrEqual(6);
    const fsyncs =
      (value(after, 'shardbank_log_fsync_duration_seconds_count', { path: 'async' }) ?? 0) +
      (value(after, 'shardbank_log_fsync_duration_seconds_count', { path: 'sync_now' }) ?? 0);
    expect(fsyncs).toBeGreaterThan(0);
    expect(value(after, 'shardbank_log_syncs_total')).toBeGreaterThanOrEqual(fsyncs);
    // Nothing left in doubt on the participant once the transactions finished.
    const leader1 = await cluster.leaderOf(1);
    await pollUntil(
      'no in-doubt transaction on shard 1',
      async () => {
        const { families } = await scrape(1, leader1);
        return value(families, 'shardbank_indoubt_transactions') === 0 &&
          value(families, 'shardbank_indoubt_oldest_age_seconds') === 0
          ? true
          : undefined;
      },
      60_000,
      200,
    );
  });
});
