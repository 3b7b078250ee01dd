// `npm run bench:compare -- [--json] [--duration 10] [--clients 1,64] [--warmup 30] [--rounds 3] [--batch 1000,8190 --batch-clients 16,2] [--only shardbank,by-kind,no-coalesce,batch,postgresql,etcd]`:
// the reference workload (3 shards x 3 replicas, 9000 items, uniform pairs, amount 1, two in
// three cross-shard, fsync on) against shardbank and the comparison workloads of
// node/bench/anchors/ (PostgreSQL one node, etcd three members), in one run on one machine,
// printed as one table with the ratios.
//
// Rounds: every system is started once and stays up; each round then measures every row of
// every system, one after the other, and the table reports each row's median over the rounds.
// On a shared machine the speed of the host drifts by tens of percent within minutes, so rows
// measured minutes apart compare the host as much as the systems; interleaving them and taking
// medians compares the systems.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

import { installAnchorClients } from './anchors/deps.js';
import { medianRows, ratios, table, type Row } from './compare-table.js';
import { BENCH_BATCH_MAX } from '../cli/bench-command.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const CLI = path.join(REPO, 'bin/shardbank.js');

function run(
  command: string,
  args: string[],
  options: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      {
        cwd: options.cwd,
        timeout: options.timeoutMs ?? 600_000,
        maxBuffer: 64 * 1024 * 1024,
        env: options.env ?? process.env,
      },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${command} ${args.join(' ')} failed: ${error.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

function lastJsonLine(output: string): Record<string, unknown> {
  const lines = output
    .trim()
    .split('\n')
    .filter((line) => line.trim().startsWith('{'));
  if (lines.length === 0) throw new Error(`no JSON in output: ${output.slice(-500)}`);
  return JSON.parse(lines[lines.length - 1]!) as Record<string, unknown>;
}

interface ShardbankRun {
  clients: number;
  batch: number;
  coalesce: boolean;
  /** Only one kind of transfer (the 1-client latency targets are per kind); default: the mix. */
  kind?: 'intra-shard' | 'cross-shard';
}

/**
 * Unmeasured seconds at the start of each row's client process. A lone client sends only about
 * 1,500 transfers in 3 s, too few for V8 to have optimized its hot paths (its cross-shard p50
 * is ~0.2 ms lower after 10 s), while 64 clients send that many in half a second.
 */
function clientWarmupS(clients: number): number {
  return clients < 8 ? 10 : 3;
}

/** A system under test, up for the whole run: each round measures its rows once. */
interface SystemSession {
  name: string;
  measure(log: (text: string) => void): Promise<Row[]>;
  stop(): Promise<void>;
}

/** Runs `start`; if it fails, `stop` cleans up whatever it had started before the error goes on. */
async function startOrStop(start: () => Promise<void>, stop: () => Promise<void>): Promise<void> {
  try {
    await start();
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Every shardbank row on one cluster, started once and warmed up once. */
async function startShardbank(
  runs: ShardbankRun[],
  durationS: number,
  warmupS: number,
  log: (text: string) => void,
  insecure = false,
): Promise<SystemSession> {
  // `up` runs TLS (client certificates) unless --insecure; the rows say which.
  const label = insecure ? 'shardbank 3x3 insecure' : 'shardbank 3x3';
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'shardbank-bench-'));
  const stop = async () => {
    await run(process.execPath, [CLI, 'down', '--state-dir', stateDir], { timeoutMs: 60_000 }).catch(() => undefined);
    await rm(stateDir, { recursive: true, force: true });
  };
  await startOrStop(async () => {
    log(`starting the reference cluster (3 shards x 3 replicas, fsync on, ${insecure ? 'plaintext' : 'TLS'})`);
    await run(process.execPath, [CLI, 'up', '--detach', '--state-dir', stateDir, ...(insecure ? ['--insecure'] : [])], {
      timeoutMs: 180_000,
    });
    // A freshly started replica spends its first seconds of load in the JIT compiler (15% of
    // all CPU in profiles of the first 8 s) and reaches its steady throughput after about 30 s
    // (64 clients: ~1,300/s in the first 4 s, ~3,800/s from 30 s on). PostgreSQL and etcd are
    // native servers, so ours is measured warm too: an unmeasured run of the same load first.
    if (warmupS > 0) {
      log(`shardbank: warm-up, 64 clients, ${warmupS} s (not measured)`);
      await run(
        process.execPath,
        [CLI, 'bench', '--state-dir', stateDir, '--clients', '64', '--duration', `${warmupS}s`, '--json'],
        { timeoutMs: (warmupS + 120) * 1000 },
      );
    }
  }, stop);
  const measure = async (roundLog: (text: string) => void): Promise<Row[]> => {
    const rows: Row[] = [];
    for (const { clients, batch, coalesce, kind } of runs) {
      roundLog(
        `shardbank: ${clients} clients, batch ${batch}, ${durationS} s${coalesce ? '' : ', one call per transfer'}${kind ? `, ${kind} only` : ''}`,
      );
      // Each row is a new client process: it warms its own JIT up first, unmeasured.
      const warmupS = clientWarmupS(clients);
      const ratio = kind === undefined ? [] : ['--cross-shard-ratio', kind === 'cross-shard' ? '1' : '0'];
      const args = [
        CLI,
        'bench',
        '--state-dir',
        stateDir,
        '--clients',
        String(clients),
        '--duration',
        `${durationS}s`,
        '--warmup',
        `${warmupS}s`,
        '--batch',
        String(batch),
        ...ratio,
        '--json',
        ...(coalesce ? [] : ['--no-coalesce']),
      ];
      const report = lastJsonLine(await run(process.execPath, args, { timeoutMs: (durationS + warmupS + 120) * 1000 }));
      const latency = report.latencyMs as Record<string, number>;
      const system = kind ? `${label} (${kind} only)` : coalesce ? label : `${label} (no client batching)`;
      rows.push({
        system,
        clients,
        batchSize: batch,
        transfersPerS: Number(report.transfersPerS),
        p50Ms: latency.p50!,
        p99Ms: latency.p99!,
      });
    }
    return rows;
  };
  return { name: insecure ? 'shardbank-insecure' : 'shardbank', measure, stop };
}

/** The comparison workloads: scripts in node/bench/anchors/, compiled workloads in dist/. */
const ANCHORS_SOURCE = path.join(REPO, 'node/bench/anchors');
const ANCHORS_BUILT = path.join(REPO, 'dist/node/bench/anchors');

/** The workloads' npm clients (pg, etcd3), installed once into a cache outside the repository. */
function anchorEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, SHARDBANK_ANCHOR_DEPS: installAnchorClients(), ...extra };
}

/** `NAME=VALUE` lines a start script printed. */
function printedSettings(output: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const line of output.split('\n')) {
    const match = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (match) env[match[1]!] = match[2]!;
  }
  return env;
}

/** One row per client count from a comparison workload (`node WORKLOAD.js CLIENTS SECONDS`). */
async function runAnchorWorkload(
  script: string,
  env: NodeJS.ProcessEnv,
  name: string,
  clients: number[],
  durationS: number,
  log: (text: string) => void,
): Promise<Row[]> {
  const rows: Row[] = [];
  for (const n of clients) {
    log(`${name}: ${n} clients, ${durationS} s`);
    const result = lastJsonLine(
      await run(process.execPath, [path.join(ANCHORS_BUILT, script), String(n), String(durationS)], {
        env,
        timeoutMs: (durationS + 120) * 1000,
      }),
    );
    rows.push({
      system: String(result.system),
      clients: n,
      batchSize: 1,
      transfersPerS: Number(result.transfers_per_s),
      p50Ms: Number(result.p50_ms),
      p99Ms: Number(result.p99_ms),
    });
  }
  return rows;
}

async function startPostgres(
  clients: number[],
  durationS: number,
  log: (text: string) => void,
): Promise<SystemSession> {
  log('starting PostgreSQL (one node, fsync on)');
  // Leave the machine as we found it: pg-down.sh stops the cluster if pg-up.sh started it.
  const stop = () =>
    run('bash', [path.join(ANCHORS_SOURCE, 'pg-down.sh')], { timeoutMs: 60_000 }).then(
      () => undefined,
      () => undefined,
    );
  let env: NodeJS.ProcessEnv = {};
  await startOrStop(async () => {
    env = anchorEnv(
      printedSettings(await run('bash', [path.join(ANCHORS_SOURCE, 'pg-up.sh')], { timeoutMs: 600_000 })),
    );
  }, stop);
  return {
    name: 'postgresql',
    measure: (roundLog) => runAnchorWorkload('pg-bank.js', env, 'postgresql', clients, durationS, roundLog),
    stop,
  };
}

async function startEtcd(clients: number[], durationS: number, log: (text: string) => void): Promise<SystemSession> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'shardbank-etcd-'));
  const stop = async () => {
    await run('bash', [path.join(ANCHORS_SOURCE, 'etcd-down.sh'), dataDir], { timeoutMs: 60_000 }).catch(
      () => undefined,
    );
    await rm(dataDir, { recursive: true, force: true });
  };
  log('starting etcd (3 members on loopback)');
  let env: NodeJS.ProcessEnv = {};
  await startOrStop(async () => {
    env = anchorEnv(
      printedSettings(await run('bash', [path.join(ANCHORS_SOURCE, 'etcd-up.sh'), dataDir], { timeoutMs: 600_000 })),
    );
  }, stop);
  return {
    name: 'etcd',
    measure: (roundLog) => runAnchorWorkload('etcd-bank.js', env, 'etcd', clients, durationS, roundLog),
    stop,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      duration: { type: 'string', default: '10' },
      clients: { type: 'string', default: '1,64' },
      // 8190: TigerBeetle's batch size, next to our 1000.
      batch: { type: 'string', default: '1000,8190' },
      warmup: { type: 'string', default: '30' },
      rounds: { type: 'string', default: '3' },
      // One count per batch size: about 16,000 transfers in flight for each.
      'batch-clients': { type: 'string', default: '16,2' },
      only: { type: 'string' },
      // tls (what `shardbank up` runs), insecure (`up --insecure`), or both, measured in turn.
      security: { type: 'string', default: 'tls' },
    },
  });
  const security = values.security!;
  if (!['tls', 'insecure', 'both'].includes(security))
    throw new Error(`--security must be tls, insecure or both, got ${JSON.stringify(security)}`);
  const durationS = Number(values.duration);
  const warmupS = Number(values.warmup);
  const roundCount = Number(values.rounds);
  if (!Number.isSafeInteger(roundCount) || roundCount < 1 || roundCount > 100)
    throw new Error(`--rounds must be an integer from 1 to 100, got ${JSON.stringify(values.rounds)}`);
  const clients = values.clients!.split(',').map(Number);
  const only = values.only?.split(',');
  const log = (text: string) => process.stderr.write(`bench:compare: ${text}\n`);
  const want = (name: string) => !only || only.includes(name);
  const runs: ShardbankRun[] = [];
  if (want('shardbank')) runs.push(...clients.map((n) => ({ clients: n, batch: 1, coalesce: true })));
  // The latency targets are per kind of transfer, for a lone client.
  if (want('by-kind'))
    runs.push(
      { clients: 1, batch: 1, coalesce: true, kind: 'intra-shard' },
      { clients: 1, batch: 1, coalesce: true, kind: 'cross-shard' },
    );
  if (want('no-coalesce'))
    runs.push(...clients.filter((n) => n > 1).map((n) => ({ clients: n, batch: 1, coalesce: false })));
  // 16 clients x 1000 keeps 16,000 transfers in flight, enough to saturate the cluster; 64 x
  // 1000 only lengthens queues (and deadlines pass), it does not add throughput. So 8190-entry
  // batches run with 2 clients (16,380 in flight): the row compares batch sizes, not queues.
  if (want('batch')) runs.push(...batchRuns(values.batch!, values['batch-clients']!));

  const sessions: SystemSession[] = [];
  const rounds: Row[][] = [];
  try {
    if (runs.length > 0 && security !== 'insecure') sessions.push(await startShardbank(runs, durationS, warmupS, log));
    if (runs.length > 0 && security !== 'tls') sessions.push(await startShardbank(runs, durationS, warmupS, log, true));
    if (want('postgresql') || want('etcd')) {
      if (want('postgresql'))
        await startPostgres(clients, durationS, log).then(
          (session) => sessions.push(session),
          (error: unknown) => failedSystem('postgresql', error, log),
        );
      if (want('etcd'))
        await startEtcd(clients, durationS, log).then(
          (session) => sessions.push(session),
          (error: unknown) => failedSystem('etcd', error, log),
        );
    }
    for (let round = 1; round <= roundCount; round += 1) {
      const rows: Row[] = [];
      for (const session of sessions) {
        const roundLog = (text: string) => log(`round ${round}/${roundCount}: ${text}`);
        rows.push(
          ...(await session.measure(roundLog).catch((error: unknown) => failedSystem(session.name, error, log))),
        );
      }
      rounds.push(rows);
    }
  } finally {
    for (const session of sessions) await session.stop();
  }
  const rows = medianRows(rounds);
  const result = {
    warmupS,
    rounds: roundCount,
    machine: { cpus: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
    date: new Date().toISOString(),
    rows,
    ratios: ratios(rows),
    ratiosPerRound: rounds.map((roundRows) => ratios(roundRows)),
  };
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    const perRound = result.ratiosPerRound
      .map(
        (r, i) =>
          `round ${i + 1}: ${Object.entries(r)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')}`,
      )
      .join('\n');
    process.stdout.write(
      `${table(rows)}\n\nmedians over ${roundCount} round(s):\n${Object.entries(result.ratios)
        .map(([k, v]) => `${k}: ${v}`)
        .join('\n')}\n\n${perRound}\n`,
    );
  }
}

/** `--batch 1000,8190 --batch-clients 16,2`: one BatchTransfer row per size (sizes of 1 are skipped). */
function batchRuns(batchList: string, clientList: string): ShardbankRun[] {
  const sizes = batchList.split(',').map(Number);
  const counts = clientList.split(',').map(Number);
  if (counts.length !== 1 && counts.length !== sizes.length)
    throw new Error(
      `--batch-clients: one count, or one per --batch size (${sizes.length}), got ${JSON.stringify(clientList)}`,
    );
  for (const size of sizes)
    if (!Number.isSafeInteger(size) || size < 1 || size > BENCH_BATCH_MAX)
      throw new Error(`--batch: sizes from 1 to ${BENCH_BATCH_MAX}, got ${JSON.stringify(batchList)}`);
  for (const count of counts)
    if (!Number.isSafeInteger(count) || count < 1)
      throw new Error(`--batch-clients: positive integers, got ${JSON.stringify(clientList)}`);
  return sizes.flatMap((batch, i) =>
    batch > 1 ? [{ clients: counts[counts.length === 1 ? 0 : i]!, batch, coalesce: true }] : [],
  );
}

function failedSystem(system: string, error: unknown, log: (text: string) => void): Row[] {
  log(`${system} could not be measured: ${error instanceof Error ? error.message : String(error)}`);
  return [];
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:compare failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
