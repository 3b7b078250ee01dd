// `npm run bench:stages -- [--kind intra,cross] [--security tls,insecure] [--duration 8] [--warmup 10] [--json]`:
// where a lone client's transfer spends its time. Starts a local 3x3 cluster with the stage
// trace on (SHARDBANK_TRACE_DIR, node/util/stage-trace.ts), runs `shardbank bench --clients 1`
// once unmeasured and once traced, and lines the stamps of the client and of all nine replicas
// up per transfer: each stamp belongs to the transfer whose window (client.transfer ..
// client.done) it falls in, since one client has one transfer in flight. For every stage it
// prints the median time since the transfer started, and the median step from the stage
// before. Replica stages are named by role: `coord` is the shard whose leader took the
// client's stream message, `part` any other (the cross-shard participant); L the leader, F a
// follower. A stage seen in fewer than half the transfers is left out (a heartbeat that
// happened to fall inside a window, say).
//
// Measured, never asserted; the numbers and how to read them are in docs/PERFORMANCE.md.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const MAIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
/** Stamps are written about once a second (stage-trace.ts); wait for the last batch. */
const TRACE_FLUSH_WAIT_MS = 1_500;

interface Stamp {
  stage: string;
  ns: bigint;
}

export interface StageRow {
  stage: string;
  /** Median time from client.transfer to this stage, µs. */
  sinceStartUs: number;
  /** Median of (this stage − the row before), per transfer, µs. */
  stepUs: number;
  /** Share of transfers in which the stage was seen. */
  seen: number;
}

export interface Breakdown {
  kind: string;
  security: string;
  transfers: number;
  totalP50Us: number;
  rows: StageRow[];
}

function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function readStamps(directory: string): { client: Stamp[]; replicas: Stamp[] } {
  const client: Stamp[] = [];
  const replicas: Stamp[] = [];
  for (const file of readdirSync(directory)) {
    if (!file.endsWith('.trace')) continue;
    const into = file.startsWith('client-') ? client : replicas;
    for (const line of readFileSync(path.join(directory, file), 'utf8').split('\n')) {
      const space = line.lastIndexOf(' ');
      if (space <= 0) continue;
      into.push({ stage: line.slice(0, space), ns: BigInt(line.slice(space + 1)) });
    }
  }
  const byTime = (a: Stamp, b: Stamp) => (a.ns < b.ns ? -1 : a.ns > b.ns ? 1 : 0);
  client.sort(byTime);
  replicas.sort(byTime);
  return { client, replicas };
}

/** `s1L.persist-start` → `coord L.persist-start` when shard 1 took the client's message. */
function roleName(stage: string, coordinatorShard: string | undefined): string {
  const match = /^s(\d+)([LF])\.(.*)$/.exec(stage);
  if (!match) return stage;
  const [, shard, role, rest] = match;
  return `${shard === coordinatorShard ? 'coord' : 'part'} ${role}.${rest}`;
}

export function analyse(directory: string, kind: string, security: string): Breakdown {
  const { client, replicas } = readStamps(directory);
  const offsets = new Map<string, number[]>();
  const totals: number[] = [];
  let cursor = 0;
  let start: bigint | undefined;
  let windowStamps: Stamp[] = [];
  const perTransfer: Map<string, number>[] = [];
  // Only the measured part of the bench (after its own warm-up).
  const measured = client.findIndex((stamp) => stamp.stage === 'client.measured');
  for (const stamp of client.slice(measured + 1)) {
    if (stamp.stage === 'client.transfer') {
      start = stamp.ns;
      windowStamps = [stamp];
      continue;
    }
    if (start === undefined) continue;
    windowStamps.push(stamp);
    if (stamp.stage !== 'client.done') continue;
    const end = stamp.ns;
    while (cursor < replicas.length && replicas[cursor]!.ns < start) cursor += 1;
    let k = cursor;
    while (k < replicas.length && replicas[k]!.ns <= end) windowStamps.push(replicas[k++]!);
    windowStamps.sort((a, b) => (a.ns < b.ns ? -1 : a.ns > b.ns ? 1 : 0));
    const coordinator = /^s(\d+)L\.stream-data$/.exec(
      windowStamps.find((s) => /^s\d+L\.stream-data$/.test(s.stage))?.stage ?? '',
    )?.[1];
    const seen = new Map<string, number>();
    for (const s of windowStamps) {
      const base = roleName(s.stage, coordinator);
      let name = base;
      for (let n = 2; seen.has(name); n += 1) name = `${base} #${n}`;
      seen.set(name, Number(s.ns - start) / 1_000);
    }
    perTransfer.push(seen);
    totals.push(Number(end - start) / 1_000);
    start = undefined;
  }
  for (const seen of perTransfer)
    for (const [name, us] of seen) {
      const list = offsets.get(name) ?? [];
      list.push(us);
      offsets.set(name, list);
    }
  const count = perTransfer.length;
  const stages = [...offsets.entries()]
    .filter(([, list]) => list.length >= count / 2)
    .map(([stage, list]) => ({ stage, sinceStartUs: median(list), seen: list.length / count }))
    .sort((a, b) => a.sinceStartUs - b.sinceStartUs);
  const rows: StageRow[] = stages.map((row, index) => {
    const previous = stages[index - 1];
    const steps: number[] = [];
    if (previous)
      for (const seen of perTransfer) {
        const here = seen.get(row.stage);
        const before = seen.get(previous.stage);
        if (here !== undefined && before !== undefined) steps.push(here - before);
      }
    return { ...row, stepUs: previous ? median(steps) : 0 };
  });
  return { kind, security, transfers: count, totalP50Us: median(totals), rows };
}

function run(args: string[], env: NodeJS.ProcessEnv): void {
  const result = spawnSync(process.execPath, [MAIN, ...args], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  if (result.status !== 0) throw new Error(`shardbank ${args.join(' ')} exited with ${result.status}`);
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function clearTraces(directory: string): void {
  for (const file of readdirSync(directory)) if (file.endsWith('.trace')) rmSync(path.join(directory, file));
}

export function formatBreakdown(b: Breakdown): string {
  const lines = [
    `${b.kind}, ${b.security}: ${b.transfers} transfers, p50 ${(b.totalP50Us / 1000).toFixed(3)} ms`,
    '| stage | since start µs (median) | step µs (median) | seen |',
    '| --- | ---: | ---: | ---: |',
  ];
  for (const row of b.rows)
    lines.push(
      `| ${row.stage} | ${row.sinceStartUs.toFixed(0)} | ${row.stepUs.toFixed(0)} | ${(row.seen * 100).toFixed(0)}% |`,
    );
  return lines.join('\n');
}

function main(): void {
  const { values } = parseArgs({
    options: {
      kind: { type: 'string', default: 'intra,cross' },
      security: { type: 'string', default: 'tls,insecure' },
      duration: { type: 'string', default: '8' },
      warmup: { type: 'string', default: '10' },
      json: { type: 'boolean', default: false },
      /** Analyse the stamps already in DIR (a kept trace directory) instead of running. */
      analyse: { type: 'string' },
      /** Keep each run's stamps in DIR/<security>-<kind>/. */
      keep: { type: 'string' },
    },
  });
  if (values.analyse !== undefined) {
    console.log(formatBreakdown(analyse(values.analyse, 'kept', 'kept')));
    return;
  }
  const kinds = values.kind.split(',');
  const modes = values.security.split(',');
  for (const kind of kinds)
    if (kind !== 'intra' && kind !== 'cross') throw new Error(`--kind: intra or cross, got ${JSON.stringify(kind)}`);
  for (const mode of modes)
    if (mode !== 'tls' && mode !== 'insecure')
      throw new Error(`--security: tls or insecure, got ${JSON.stringify(mode)}`);
  const results: Breakdown[] = [];
  for (const mode of modes) {
    const root = mkdtempSync(path.join(tmpdir(), 'shardbank-stages-'));
    const stateDir = path.join(root, 'state');
    const traceDir = path.join(root, 'trace');
    const env = { ...process.env, SHARDBANK_TRACE_DIR: traceDir };
    try {
      run(['up', '--detach', '--state-dir', stateDir, ...(mode === 'insecure' ? ['--insecure'] : [])], env);
      for (const kind of kinds) {
        const bench = (seconds: string, warm: string) => [
          'bench',
          '--clients',
          '1',
          '--duration',
          `${seconds}s`,
          '--warmup',
          `${warm}s`,
          '--cross-shard-ratio',
          kind === 'intra' ? '0' : '1',
          '--state-dir',
          stateDir,
        ];
        run(bench(values.warmup, '0'), env); // JIT warm-up of the replicas, unmeasured
        sleepMs(TRACE_FLUSH_WAIT_MS);
        clearTraces(traceDir);
        // The traced client warms itself up too (a fresh process's JIT); only the transfers
        // after its warm-up (the client.measured stamp) are counted.
        run(bench(values.duration, '3'), env);
        sleepMs(TRACE_FLUSH_WAIT_MS);
        const breakdown = analyse(traceDir, kind === 'intra' ? 'intra-shard' : 'cross-shard', mode);
        results.push(breakdown);
        if (!values.json) console.log(`${formatBreakdown(breakdown)}\n`);
        if (values.keep !== undefined) {
          const kept = path.join(values.keep, `${mode}-${kind}`);
          mkdirSync(kept, { recursive: true });
          for (const file of readdirSync(traceDir)) copyFileSync(path.join(traceDir, file), path.join(kept, file));
        }
        clearTraces(traceDir);
      }
    } finally {
      spawnSync(process.execPath, [MAIN, 'down', '--state-dir', stateDir], { stdio: 'ignore' });
      rmSync(root, { recursive: true, force: true });
    }
  }
  if (values.json) console.log(JSON.stringify(results));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
