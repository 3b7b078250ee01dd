// `npm run bench:compare -- [--json] [--duration 10] [--clients 1,64] [--warmup 30] [--batch 1000 --batch-clients 16]`: the reference workload
// (3 shards x 3 replicas, 9000 items, uniform pairs, amount 1, two in three cross-shard, fsync
// on) against shardbank and the comparison systems in ../shared/anchors (PostgreSQL one node,
// etcd three members), in one run on one machine, printed as one table with the ratios.
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const CLI = path.join(REPO, 'bin/shardbank.js');

export interface Row {
  system: string;
  clients: number;
  batchSize: number;
  transfersPerS: number;
  p50Ms: number;
  p99Ms: number;
  note?: string;
}

function run(command: string, args: string[], options: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd: options.cwd, timeout: options.timeoutMs ?? 600_000, maxBuffer: 64 * 1024 * 1024, env: options.env ?? process.env }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(' ')} failed: ${error.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

function lastJsonLine(output: string): Record<string, unknown> {
  const lines = output.trim().split('\n').filter((line) => line.trim().startsWith('{'));
  if (lines.length === 0) throw new Error(`no JSON in output: ${output.slice(-500)}`);
  return JSON.parse(lines[lines.length - 1]!) as Record<string, unknown>;
}

interface ShardbankRun {
  clients: number;
  batch: number;
  coalesce: boolean;
}

/** Every shardbank row on one cluster, started once and warmed up once. */
async function benchShardbank(runs: ShardbankRun[], durationS: number, warmupS: number, log: (text: string) => void): Promise<Row[]> {
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'shardbank-bench-'));
  const rows: Row[] = [];
  try {
    log('starting the reference cluster (3 shards x 3 replicas, fsync on)');
    await run(process.execPath, [CLI, 'up', '--detach', '--state-dir', stateDir], { timeoutMs: 180_000 });
    // A freshly started replica spends its first seconds of load in the JIT compiler (15% of
    // all CPU in profiles of the first 8 s) and reaches its steady throughput after about 30 s
    // (64 clients: ~1,300/s in the first 4 s, ~3,800/s from 30 s on). PostgreSQL and etcd are
    // native servers, so ours is measured warm too: an unmeasured run of the same load first.
    if (warmupS > 0) {
      log(`shardbank: warm-up, 64 clients, ${warmupS} s (not measured)`);
      await run(process.execPath, [CLI, 'bench', '--state-dir', stateDir, '--clients', '64', '--duration', `${warmupS}s`, '--json'], { timeoutMs: (warmupS + 120) * 1000 });
    }
    for (const { clients, batch, coalesce } of runs) {
      log(`shardbank: ${clients} clients, batch ${batch}, ${durationS} s${coalesce ? '' : ', one call per transfer'}`);
      // Each row is a new client process: it warms its own JIT up first, unmeasured.
      const args = [CLI, 'bench', '--state-dir', stateDir, '--clients', String(clients), '--duration', `${durationS}s`, '--warmup', '3s', '--batch', String(batch), '--json', ...(coalesce ? [] : ['--no-coalesce'])];
      const report = lastJsonLine(await run(process.execPath, args, { timeoutMs: (durationS + 120) * 1000 }));
      const latency = report.latencyMs as Record<string, number>;
      const system = coalesce ? 'shardbank 3x3' : 'shardbank 3x3 (no client batching)';
      rows.push({ system, clients, batchSize: batch, transfersPerS: Number(report.transfersPerS), p50Ms: latency.p50!, p99Ms: latency.p99! });
    }
  } finally {
    await run(process.execPath, [CLI, 'down', '--state-dir', stateDir], { timeoutMs: 60_000 }).catch(() => undefined);
    await rm(stateDir, { recursive: true, force: true });
  }
  return rows;
}

async function anchorsDir(): Promise<string> {
  const source = process.env.SHARDBANK_ANCHORS ?? path.resolve(REPO, '../shared/anchors');
  if (!existsSync(path.join(source, 'pg-bank.js'))) throw new Error(`comparison workloads not found at ${source} (set SHARDBANK_ANCHORS)`);
  // A writable copy with its own node_modules, cached outside the repository.
  const cache = path.join(process.env.SHARDBANK_CACHE ?? path.join(os.homedir(), '.cache/shardbank'), 'anchors');
  await mkdir(cache, { recursive: true });
  for (const file of ['pg-bank.js', 'etcd-bank.js', 'pg-up.sh', 'etcd3-up.sh', 'package.json']) await cp(path.join(source, file), path.join(cache, file));
  if (!existsSync(path.join(cache, 'node_modules/pg')) || !existsSync(path.join(cache, 'node_modules/etcd3'))) {
    await run('npm', ['install', '--no-audit', '--no-fund', '--silent'], { cwd: cache, timeoutMs: 300_000 });
  }
  return cache;
}

/** One row per client count from a comparison workload script (`node SCRIPT CLIENTS SECONDS`). */
async function runAnchorWorkload(dir: string, script: string, name: string, clients: number[], durationS: number, log: (text: string) => void): Promise<Row[]> {
  const rows: Row[] = [];
  for (const n of clients) {
    log(`${name}: ${n} clients, ${durationS} s`);
    const result = lastJsonLine(await run(process.execPath, [path.join(dir, script), String(n), String(durationS)], { cwd: dir, timeoutMs: (durationS + 120) * 1000 }));
    rows.push({ system: String(result.system), clients: n, batchSize: 1, transfersPerS: Number(result.transfers_per_s), p50Ms: Number(result.p50_ms), p99Ms: Number(result.p99_ms) });
  }
  return rows;
}

async function benchPostgres(dir: string, clients: number[], durationS: number, log: (text: string) => void): Promise<Row[]> {
  log('starting PostgreSQL (one node, fsync on)');
  await run('bash', [path.join(dir, 'pg-up.sh')], { timeoutMs: 600_000 });
  try {
    return await runAnchorWorkload(dir, 'pg-bank.js', 'postgresql', clients, durationS, log);
  } finally {
    // Leave the machine as we found it: the Debian cluster that pg-up.sh started is stopped.
    await run('bash', ['-c', 'v=$(ls /etc/postgresql | head -1); pg_ctlcluster --skip-systemctl-redirect "$v" main stop'], { timeoutMs: 60_000 }).catch(() => undefined);
  }
}

async function benchEtcd(dir: string, clients: number[], durationS: number, log: (text: string) => void): Promise<Row[]> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'shardbank-etcd-'));
  log('starting etcd (3 members on loopback)');
  await run('bash', [path.join(dir, 'etcd3-up.sh'), dataDir], { timeoutMs: 600_000 });
  try {
    return await runAnchorWorkload(dir, 'etcd-bank.js', 'etcd', clients, durationS, log);
  } finally {
    const pids = (await readFile(path.join(dataDir, 'pids'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGTERM');
      } catch {
        // already gone
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    await rm(dataDir, { recursive: true, force: true });
  }
}

export function ratios(rows: Row[]): Record<string, number> {
  const result: Record<string, number> = {};
  const find = (prefix: string, clients: number) => rows.find((r) => r.system.startsWith(prefix) && !r.system.includes('no client batching') && r.clients === clients && r.batchSize === 1);
  for (const clients of new Set(rows.map((r) => r.clients))) {
    const ours = find('shardbank', clients);
    if (!ours) continue;
    for (const [name, prefix] of [['postgresql', 'postgresql'], ['etcd', 'etcd']] as const) {
      const other = find(prefix, clients);
      if (other && other.transfersPerS > 0) result[`shardbank/${name} throughput @${clients}`] = Number((ours.transfersPerS / other.transfersPerS).toFixed(2));
    }
  }
  return result;
}

function table(rows: Row[]): string {
  const header = ['system', 'clients', 'batch', 'transfers/s', 'p50 ms', 'p99 ms'];
  const body = rows.map((r) => [r.system, String(r.clients), String(r.batchSize), String(r.transfersPerS), r.p50Ms.toFixed(2), r.p99Ms.toFixed(2)]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  return [header, ...body].map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ')).join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      duration: { type: 'string', default: '10' },
      clients: { type: 'string', default: '1,64' },
      batch: { type: 'string', default: '1000' },
      warmup: { type: 'string', default: '30' },
      'batch-clients': { type: 'string', default: '16' },
      only: { type: 'string' },
    },
  });
  const durationS = Number(values.duration);
  const warmupS = Number(values.warmup);
  const clients = values.clients!.split(',').map(Number);
  const only = values.only?.split(',');
  const log = (text: string) => process.stderr.write(`bench:compare: ${text}\n`);
  const rows: Row[] = [];
  const want = (name: string) => !only || only.includes(name);
  const runs: ShardbankRun[] = [];
  if (want('shardbank')) runs.push(...clients.map((n) => ({ clients: n, batch: 1, coalesce: true })));
  if (want('no-coalesce')) runs.push(...clients.filter((n) => n > 1).map((n) => ({ clients: n, batch: 1, coalesce: false })));
  // 16 clients x 1000 keeps 16,000 transfers in flight, enough to saturate the cluster; 64 x
  // 1000 only lengthens queues (and deadlines pass), it does not add throughput.
  if (want('batch') && Number(values.batch) > 1) runs.push({ clients: Number(values['batch-clients']), batch: Number(values.batch), coalesce: true });
  if (runs.length > 0) rows.push(...(await benchShardbank(runs, durationS, warmupS, log)));
  if (want('postgresql') || want('etcd')) {
    const dir = await anchorsDir();
    if (want('postgresql')) rows.push(...(await benchPostgres(dir, clients, durationS, log).catch((error: unknown) => failedRow('postgresql', error, log))));
    if (want('etcd')) rows.push(...(await benchEtcd(dir, clients, durationS, log).catch((error: unknown) => failedRow('etcd', error, log))));
  }
  const result = { warmupS, machine: { cpus: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version }, date: new Date().toISOString(), rows, ratios: ratios(rows) };
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else process.stdout.write(`${table(rows)}\n\n${Object.entries(result.ratios).map(([k, v]) => `${k}: ${v}`).join('\n')}\n`);
}

function failedRow(system: string, error: unknown, log: (text: string) => void): Row[] {
  log(`${system} could not be measured: ${error instanceof Error ? error.message : String(error)}`);
  return [];
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:compare failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
