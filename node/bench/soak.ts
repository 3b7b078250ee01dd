// `npm run soak -- [--minutes 10] [--clients 64]`: full load on the reference 3x3 cluster for a
// long run, sampling every replica's resident memory and the size of its data dir, to show
// that memory stays flat and snapshots keep the disk bounded. Behind its own command (it takes
// minutes), never in the default test run.
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const CLI = path.join(REPO, 'bin/shardbank.js');

function run(args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(
      process.execPath,
      [CLI, ...args],
      { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) =>
        error ? reject(new Error(`${args.join(' ')}: ${error.message}\n${stderr}`)) : resolve(stdout),
    ),
  );
}

async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const full = path.join(dir, entry.name);
    total += entry.isDirectory() ? await directoryBytes(full) : (await stat(full).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

interface Replica {
  name: string;
  pid: number;
  dataDir: string;
}

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '10' },
      clients: { type: 'string', default: '64' },
      json: { type: 'boolean', default: false },
    },
  });
  const minutes = Number(values.minutes);
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'shardbank-soak-'));
  const log = (text: string) => process.stderr.write(`soak: ${text}\n`);
  try {
    await run(['up', '--detach', '--state-dir', stateDir], 180_000);
    const book = JSON.parse(await readFile(path.join(stateDir, 'cluster.json'), 'utf8')) as {
      replicas: { shard: number; ordinal: number; dataDir: string }[];
    };
    const status = JSON.parse(await run(['status', '--json', '--state-dir', stateDir], 60_000)) as {
      shards: { shard: number; replicas: { ordinal: number; pid?: number }[] }[];
    };
    const replicas: Replica[] = [];
    for (const shard of status.shards) {
      for (const replica of shard.replicas) {
        const entry = book.replicas.find((r) => r.shard === shard.shard && r.ordinal === replica.ordinal);
        if (replica.pid && entry)
          replicas.push({ name: `s${shard.shard}-${replica.ordinal}`, pid: replica.pid, dataDir: entry.dataDir });
      }
    }
    const bench = spawn(
      process.execPath,
      [CLI, 'bench', '--state-dir', stateDir, '--clients', values.clients!, '--duration', `${minutes * 60}s`, '--json'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let benchOut = '';
    bench.stdout.on('data', (chunk: Buffer) => (benchOut += chunk.toString()));
    const samples: { atS: number; rssMiB: Record<string, number>; diskMiB: Record<string, number> }[] = [];
    const started = Date.now();
    while (bench.exitCode === null) {
      await new Promise((resolve) => setTimeout(resolve, 15_000));
      const rssMiB: Record<string, number> = {};
      const diskMiB: Record<string, number> = {};
      for (const replica of replicas) {
        rssMiB[replica.name] = Math.round((await rssBytes(replica.pid)) / 2 ** 20);
        diskMiB[replica.name] = Math.round((await directoryBytes(replica.dataDir)) / 2 ** 20);
      }
      samples.push({ atS: Math.round((Date.now() - started) / 1000), rssMiB, diskMiB });
      log(`${samples.at(-1)!.atS}s rss MiB ${JSON.stringify(rssMiB)} disk MiB ${JSON.stringify(diskMiB)}`);
    }
    // Memory is compared after warm-up (the first minute), so JIT and pools are not counted as growth.
    const warm = samples.find((s) => s.atS >= 60) ?? samples[0]!;
    const last = samples.at(-1)!;
    const growth = Object.fromEntries(
      Object.keys(last.rssMiB).map((name) => [
        name,
        Number(((last.rssMiB[name]! / Math.max(1, warm.rssMiB[name]!) - 1) * 100).toFixed(1)),
      ]),
    );
    const result = {
      minutes,
      bench: benchOut.trim() ? JSON.parse(benchOut.trim().split('\n').at(-1)!) : null,
      rssGrowthPercentAfterWarmup: growth,
      first: warm,
      last,
      samples: samples.length,
    };
    process.stdout.write(`${JSON.stringify(result, null, values.json ? 0 : 2)}\n`);
  } finally {
    await run(['down', '--state-dir', stateDir], 60_000).catch(() => undefined);
    await rm(stateDir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`soak failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
