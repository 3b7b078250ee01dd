// The bench and chaos reports: the generator on a constructed chaos run (a stalled second, a
// second with only failures, faults at the same second), the per-fault lines chaos prints,
// bench's live rate, a real bench run against scripted replicas with a stall, and both
// reports loaded in a real headless Chromium (renders, no console or log errors, nothing
// requested but the file, the expected series and markers present and not overlapping).
// The Chromium part is skipped only when no Chromium is installed (CI installs it).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { progressBar, progressLine, progressLineIntervalMs, RateWindow } from '../../node/cli/bench-command.js';
import { faultJson, faultText, isNewLeader, reportFault, type FaultEvent } from '../../node/cli/chaos-command.js';
import { MARKER_LEVELS_MAX, renderHtmlReport, reportEvents, type ReportInput } from '../../node/cli/html-report.js';
import { runCli } from '../../node/cli/main.js';
import {
  committed,
  replicaStatus,
  startFakeReplica,
  unavailable,
  type FakeReplica,
} from '../client/fake-bank-server.js';
import { captureIo } from './capture-io.js';
import { findChromium } from './headless-chromium.js';
import { checkReport, SKIP_REASON } from './report-check.js';

const leaderKill: FaultEvent = {
  target: 'replica',
  atMs: 0,
  atS: 4.02,
  action: 'kill',
  label: 'SIGKILL replica s1-2 (pid 4242, leader)',
  shard: 1,
  replica: 2,
  leader: true,
  detail: 'pid 4242',
  oldBallot: [4, 2],
  newLeader: { replica: 0, ballot: [5, 0] },
  failoverMs: 840,
  recoveredMs: 1_310,
};
const natsKill: FaultEvent = { target: 'nats-server', atS: 4.05, action: 'kill', detail: 'pid 77' };
const followerKill: FaultEvent = {
  target: 'replica',
  atMs: 0,
  atS: 8.01,
  action: 'kill',
  label: 'SIGKILL replica s0-1 (pid 4243)',
  shard: 0,
  replica: 1,
  leader: false,
  detail: 'pid 4243',
};
const lostLeader: FaultEvent = { ...leaderKill, atS: 8.05, newLeader: null, failoverMs: null, recoveredMs: undefined };

/** A chaos run of 10.4 s: second 5 failed only, second 6 had nothing at all; three events in second 4. */
export function constructedChaosReport(): ReportInput {
  const series = Array.from({ length: 11 }, (_, second) => ({
    second,
    ...(second === 10 ? { spanS: 0.4 } : {}),
    definite: second === 5 || second === 6 ? 0 : second === 10 ? 80 : 200,
    failed: second === 5 ? 12 : second === 4 ? 3 : 0,
    p99Ms: second === 6 ? null : second === 5 ? 900 : 12,
  }));
  return {
    title: 'shardbank chaos: leader kills every 4 s + nats-server',
    generatedAt: '2026-12-01T00:00:00Z',
    series,
    markers: [{ atS: 4.1, kind: 'leader-change', label: 'shard 1: leader 0 ballot 5.0' }],
    faults: [leaderKill, natsKill, followerKill, lostLeader].map(reportFault),
    summary: [['verdict', 'PASS']],
    verdict: { ok: true, text: 'every invariant held' },
    details: '{"ok": true}',
  };
}

describe('chaos fault lines', () => {
  it('say what was killed, the new leader and how long failover took', () => {
    expect(faultText(leaderKill)).toBe(
      '4.0s kill shard 1 replica 2 (leader, pid 4242) -> new leader replica 0 (ballot 5.0) after 0.84s',
    );
    expect(faultText(followerKill)).toBe('8.0s kill shard 0 replica 1 (pid 4243)');
    expect(faultText(natsKill)).toBe('4.0s kill nats-server (pid 77)');
    expect(faultText(lostLeader)).toBe('8.1s kill shard 1 replica 2 (leader, pid 4242) -> no new leader within 30s');
    expect(faultText({ target: 'failed', atS: 1, action: 'delete pod', message: 'forbidden' })).toBe(
      '1.0s delete pod failed: forbidden',
    );
  });
  it('as JSON, one object per fault with the same keys for every replica fault', () => {
    expect(faultJson(leaderKill)).toEqual({
      type: 'fault',
      atS: 4.02,
      action: 'kill',
      target: 'replica',
      shard: 1,
      replica: 2,
      leader: true,
      detail: 'pid 4242',
      newLeader: { replica: 0, ballot: [5, 0] },
      failoverS: 0.84,
    });
    expect(Object.keys(faultJson(followerKill))).toEqual(Object.keys(faultJson(leaderKill)));
    expect(faultJson(followerKill)).toMatchObject({ leader: false, newLeader: null, failoverS: null });
    expect(faultJson(natsKill)).toEqual({
      type: 'fault',
      atS: 4.05,
      action: 'kill',
      target: 'nats-server',
      detail: 'pid 77',
    });
  });
  it('a new leader is one with a higher ballot than the killed one (or another replica when unknown)', () => {
    const fault = leaderKill as Extract<FaultEvent, { target: 'replica' }>;
    const leader = (ordinal: number, round: number) => ({
      ordinal,
      ballot: [round, ordinal] as [number, number],
      address: '',
    });
    expect(isNewLeader(fault, null)).toBe(false);
    expect(isNewLeader(fault, leader(2, 4))).toBe(false);
    expect(isNewLeader(fault, leader(2, 5))).toBe(true);
    expect(isNewLeader({ ...fault, oldBallot: undefined }, leader(2, 9))).toBe(false);
    expect(isNewLeader({ ...fault, oldBallot: undefined }, leader(0, 1))).toBe(true);
  });
});

describe('bench progress', () => {
  it('shows the rate over the last second, so a stall shows as it happens', () => {
    const window = new RateWindow(1_000);
    expect(window.add(0, 0)).toBe(0);
    expect(window.add(500, 100)).toBe(200);
    expect(window.add(1_000, 200)).toBe(200);
    expect(window.add(1_500, 200)).toBe(100);
    expect(window.add(2_000, 200)).toBe(0);
    const state = { elapsedMs: 2_000, totalMs: 10_000, transfers: 200, failed: 7, nowPerS: 0 };
    expect(progressLine(state)).toBe('bench: 2.0s of 10s  200 transfers  now 0/s  avg 100/s  7 failed');
    expect(progressBar(state, 10)).toContain('] 20%  200 transfers  now 0/s');
    expect([progressLineIntervalMs(2_000), progressLineIntervalMs(10_000), progressLineIntervalMs(600_000)]).toEqual([
      1_000, 2_000, 5_000,
    ]);
  });
});

describe('bench progress while running, against scripted replicas', () => {
  let replicas: FakeReplica[] = [];
  beforeAll(async () => {
    replicas = await Promise.all(
      [0, 1].map((shard) =>
        startFakeReplica({
          transfer: () => committed(9, shard),
          clusterStatus: () => replicaStatus(shard, 0, 'leader', { round: 2 }),
        }),
      ),
    );
  });
  afterAll(async () => {
    await Promise.all(replicas.map((replica) => replica.stop()));
  });
  const bench = (extra: string[]) => [
    'bench',
    '--clients',
    '2',
    '--duration',
    '1500ms',
    '--no-coalesce',
    '--endpoints',
    `${replicas[0]!.address};${replicas[1]!.address}`,
    '--cluster',
    'test',
    ...extra,
  ];

  it('on a terminal: a bar with the current rate on stderr, even with --json; stdout only the result', async () => {
    const chunks: string[] = [];
    const io = { ...captureIo(), stderrIsTTY: true, progress: (text: string) => void chunks.push(text) };
    expect(await runCli(bench(['--json']), io)).toBe(0);
    expect(io.stdout).toHaveLength(1);
    expect(JSON.parse(io.stdout[0]!).transfers).toBeGreaterThan(0);
    expect(chunks.length).toBeGreaterThan(1);
    expect(chunks[0]).toMatch(/^\r\[[#.]+\] \d+% {2}\d+ transfers {2}now \d+\/s {2}avg \d+\/s/);
    expect(chunks.at(-1)).toMatch(/\] 100% {2}.*\n$/);
  });

  it('not a terminal: progress lines on stderr in text mode', async () => {
    const io = captureIo();
    expect(await runCli(bench([]), io)).toBe(0);
    expect(io.stderr.length).toBeGreaterThan(0);
    for (const line of io.stderr) expect(line).toMatch(/^bench: \d+\.\ds of 1\.5s {2}\d+ transfers {2}now \d+\/s/);
    expect(io.stdout.join('\n')).toMatch(/^bench: 2 clients/);
    expect(io.stdout.join('\n')).not.toMatch(/ now /);
  });
});

function attribute(html: string, selector: RegExp): string[] {
  return [...html.matchAll(selector)].map((m) => m[1]!);
}

describe('report generator', () => {
  const html = renderHtmlReport(constructedChaosReport());
  const throughput = html.slice(html.indexOf('data-chart="throughput"'), html.indexOf('data-chart="latency"'));
  it('marks a second without a completed transfer as a stall, and failures as their own series', () => {
    expect(attribute(throughput, /data-series="stall" data-second="(\d+)"/g)).toEqual(['5', '6']);
    expect(attribute(throughput, /data-series="failed" data-second="(\d+)"/g)).toEqual(['4', '5']);
    expect(html).toContain('Stalls (no transfer completed): 5s, 6s');
    // The p99 line breaks at second 6 (no sample) instead of bridging it.
    const latency = html.slice(html.indexOf('data-chart="latency"'));
    expect(latency.match(/<polyline data-series="p99"/g)).toHaveLength(2);
  });
  it('stacks markers of the same second on distinct levels; far apart ones reuse the first', () => {
    const levels = attribute(throughput, /<g class="marker" data-kind="[a-z-]+" data-index="\d+" data-level="(\d+)"/g);
    // Events in order: leader kill 4.02, nats 4.05, leader change 4.1, follower 8.01, lost leader 8.05.
    expect(levels.slice(0, 3)).toEqual(['0', '1', '2']);
    expect(new Set(levels.slice(3, 5)).size).toBe(2);
    const many = reportEvents(
      [],
      Array.from({ length: 20 }, () => ({ atS: 1, kind: 'kill' as const, label: 'x' })),
      10,
    );
    expect(new Set(many.map((e) => e.level)).size).toBe(MARKER_LEVELS_MAX);
    const apart = reportEvents(
      [],
      [0, 3, 6].map((atS) => ({ atS, kind: 'kill' as const, label: 'x' })),
      10,
    );
    expect(apart.map((e) => e.level)).toEqual([0, 0, 0]);
  });
  it("shows each fault's failover, as a span and in the events table", () => {
    expect(attribute(throughput, /class="failover" data-failover-s="([0-9.]+)"/g)).toEqual(['0.84']);
    expect(html).toMatch(/<td>replica 0 \(ballot 5\.0\)<\/td><td>0\.84s<\/td><td>1\.31s<\/td>/);
    expect(html).toMatch(/<td>no new leader seen<\/td><td><\/td><td>none in the run<\/td>/);
  });
});

const chromium = findChromium();
// CI installs Chromium (scripts/ci.d/10-chromium.sh): there, a missing one is a failure, not a skip.
const required = process.env.CI === 'true';
if (!chromium && !required) console.warn(`reports.test.ts: headless Chromium checks skipped: ${SKIP_REASON}`);

describe.skipIf(!chromium && !required)(
  `reports in headless Chromium${chromium ? '' : ` (skipped: ${SKIP_REASON})`}`,
  () => {
    beforeAll(() => {
      if (!chromium) throw new Error(`CI=true but ${SKIP_REASON}`);
    });
    let dir = '';
    let replicas: FakeReplica[] = [];
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'shardbank-reports-'));
    });
    afterAll(async () => {
      await Promise.all(replicas.map((replica) => replica.stop()));
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    const check = async (name: string, html: string) => {
      const file = join(dir, name);
      writeFileSync(file, html);
      return checkReport(chromium!, file);
    };

    it('the chaos report renders cleanly with its series, stacked markers and failover spans', async () => {
      const { problems, dom } = await check('chaos.html', renderHtmlReport(constructedChaosReport()));
      expect(problems).toEqual([]);
      expect(dom).toMatchObject({
        title: 'shardbank chaos: leader kills every 4 s + nats-server',
        charts: 2,
        completed: 1,
        failed: 2,
        stalls: 2,
        p99: 2,
        markers: 5,
        failoverSpans: 1,
        overlaps: 0,
        eventRows: 5,
      });
      expect(dom.throughputWidth).toBeGreaterThan(0);
    });

    it('a real bench run with a stall: the report shows it, and renders cleanly', async () => {
      // No transfer succeeds from 0.5 s to 2.9 s after the first one arrived: bench's second 1
      // (bench starts its clock a little before its first call) lies inside.
      let firstAtMs: number | undefined;
      const stalled = () => {
        const sinceMs = Date.now() - (firstAtMs ??= Date.now());
        return sinceMs >= 500 && sinceMs < 2_900;
      };
      // Two shards of one replica; the leader's ballot rises at 1.5 s (a leader-change marker).
      replicas = await Promise.all(
        [0, 1].map((shard) =>
          startFakeReplica({
            transfer: () => (stalled() ? unavailable('no quorum') : committed(9, shard)),
            clusterStatus: () =>
              replicaStatus(shard, 0, 'leader', {
                round: firstAtMs !== undefined && Date.now() - firstAtMs > 1_500 ? 3 : 2,
              }),
          }),
        ),
      );
      const report = join(dir, 'bench.html');
      const io = captureIo();
      const code = await runCli(
        [
          'bench',
          '--clients',
          '2',
          '--duration',
          '4s',
          '--timeout',
          '300ms',
          '--no-coalesce',
          '--json',
          '--report',
          report,
          '--endpoints',
          `${replicas[0]!.address};${replicas[1]!.address}`,
          '--cluster',
          'test',
        ],
        io,
      );
      expect(code, io.stderr.join('\n')).toBe(0);
      // --json: stdout is the one result line, stderr stays empty (no progress lines when not a terminal).
      expect(io.stdout).toHaveLength(1);
      expect(JSON.parse(io.stdout[0]!).outcomes.UNKNOWN).toBeGreaterThan(0);
      expect(io.stderr).toEqual([]);
      const html = readFileSync(report, 'utf8');
      expect(html).toMatch(/data-series="stall" data-second="1"/);
      const { problems, dom } = await check('bench-copy.html', html);
      expect(problems).toEqual([]);
      expect(dom.charts).toBe(2);
      expect(dom.completed).toBe(1);
      expect(dom.stalls).toBeGreaterThanOrEqual(1);
      expect(dom.failed).toBeGreaterThanOrEqual(1);
      expect(dom.markers).toBeGreaterThanOrEqual(1);
      expect(dom.overlaps).toBe(0);
    });

    it('the check fails for a report with a script error or a remote asset', async () => {
      const html = renderHtmlReport(constructedChaosReport());
      // Without the report's CSP a script runs and throws; with it, the script is refused: both are errors.
      const throwing = html
        .replace(/<meta http-equiv="Content-Security-Policy"[^>]*>/, '')
        .replace('</body>', '<script>document.querySelector("#none").click()</script></body>');
      expect((await check('throwing.html', throwing)).problems.join('\n')).toMatch(/uncaught: TypeError/);
      // Without the CSP a remote image is fetched: it reaches the counting proxy, not the network.
      const fetching = throwing.replace('</body>', '<img src="https://assets.invalid/x.png"></body>');
      const fetched = (await check('fetching.html', fetching)).problems.join('\n');
      expect(fetched).toMatch(/connections to the network/);
      const remote = html.replace('</body>', '<img src="https://assets.invalid/x.png"><script>1</script></body>');
      const problems = (await check('remote.html', remote)).problems.join('\n');
      expect(problems).toMatch(/Content Security Policy/);
      expect(problems).toMatch(/names an http\(s\) URL/);
    });
  },
);
