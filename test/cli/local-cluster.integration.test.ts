// End to end through the real CLI as a subprocess: `up --detach` starts nats-server and 9
// replica processes in a temporary state dir; transfers, balances, status, a leader
// SIGKILL, bench, a short chaos run with nats-server kills, down, and up again on the same
// data. Needs `npm run build` (npm test runs it) and nats-server. Polls with generous
// deadlines; never asserts on timing.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode, keyFor } from '../../node/discovery/leader-record.js';
import { LeaderWatcher } from '../../node/discovery/leader-watcher.js';
import { natsSecurityOptions, openLeaderBucket } from '../../node/discovery/nats-connection.js';
import { findChromium } from './headless-chromium.js';
import { checkReport, SKIP_REASON } from './report-check.js';

const REPO = resolve(import.meta.dirname, '../..');
const CLI = join(REPO, 'bin/shardbank.js');
const REPLICA_MAIN = join(REPO, 'dist/node/replica/main.js');
const CLI_MAIN = join(REPO, 'dist/node/cli/main.js');
const COMMAND_TIMEOUT_MS = 240_000;
const CHROMIUM = findChromium();
const POLL_MS = 1_000;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let stateDir = '';

function shardbank(args: readonly string[], timeoutMs = COMMAND_TIMEOUT_MS): Promise<Run> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [CLI, ...args, '--state-dir', stateDir],
      { cwd: REPO, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error
          ? typeof (error as { code?: unknown }).code === 'number'
            ? (error as { code: number }).code
            : 1
          : 0;
        done({ code, stdout, stderr });
      },
    );
  });
}

function describeRun(run: Run): string {
  return `exit ${run.code}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`;
}

async function json<T>(args: readonly string[]): Promise<T> {
  const run = await shardbank([...args, '--json']);
  expect(run.code, describeRun(run)).toBe(0);
  return JSON.parse(run.stdout) as T;
}

async function poll<T>(what: string, deadlineMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadlineAtMs = Date.now() + deadlineMs;
  let last: unknown;
  while (Date.now() < deadlineAtMs) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(
    `timed out after ${deadlineMs / 1000} s waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`,
  );
}

interface StatusJson {
  cluster: string;
  security: 'tls' | 'insecure';
  shards: {
    shard: number;
    items: [number, number];
    leader: { ordinal: number; ballot: [number, number]; address: string } | null;
    replicas: {
      ordinal: number;
      role: string;
      ready: boolean;
      address: string;
      pid: number | null;
      commitIndex: number | null;
    }[];
  }[];
}

function bookPids(): number[] {
  const path = join(stateDir, 'cluster.json');
  if (!existsSync(path)) return [];
  const book = JSON.parse(readFileSync(path, 'utf8')) as {
    supervisorPid: number | null;
    natsPid: number | null;
    replicas: { pid: number | null }[];
  };
  return [book.supervisorPid, book.natsPid, ...book.replicas.map((r) => r.pid)].filter(
    (pid): pid is number => typeof pid === 'number' && pid > 0,
  );
}

beforeAll(() => {
  if (!existsSync(CLI_MAIN)) throw new Error(`${CLI_MAIN} not found: build first (npm run build; npm test does it)`);
  if (!existsSync(REPLICA_MAIN))
    throw new Error(
      `${REPLICA_MAIN} not found: the replica entry point (node/replica/main.ts) is missing or not built`,
    );
  stateDir = mkdtempSync(join(tmpdir(), 'shardbank-local-'));
});

afterAll(async () => {
  if (stateDir === '') return;
  await shardbank(['down'], 120_000);
  // Whatever survived a failed test: the supervisor, nats-server and replicas we started.
  for (const pid of bookPids()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  rmSync(stateDir, { recursive: true, force: true });
}, 180_000);

describe('shardbank local cluster (real processes)', () => {
  let balancesBeforeDown: Record<string, number> = {};

  it('up --detach returns once every shard has a leader', async () => {
    const run = await shardbank(['up', '--detach']);
    expect(run.code, describeRun(run)).toBe(0);
    const book = JSON.parse(readFileSync(join(stateDir, 'cluster.json'), 'utf8'));
    expect(book.replicas).toHaveLength(9);
    // NATS with TLS and users by default (docs/SECURITY.md).
    expect(book.natsUrl).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
    // TLS by default: certificates made, every replica serving TLS to clients.
    expect(book.security).toBe('tls');
    for (const file of ['ca.crt', 'client-admin.crt', 'client-admin.key', 'replica-s2-1.key'])
      expect(existsSync(join(stateDir, 'certs', file)), file).toBe(true);
    expect(readFileSync(join(stateDir, 'logs', 's0-0.log'), 'utf8')).toContain('"clientTls":"on"');
  }, 300_000);

  it('a second up on the running state dir is refused', async () => {
    const run = await shardbank(['up', '--detach']);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/already running/);
  }, 60_000);

  it('transfer 1001 3001 10 commits; balance shows 0 and 20', async () => {
    const transfer = await json<{ outcome: string }>(['transfer', '1001', '3001', '10']);
    expect(transfer.outcome).toBe('COMMITTED');
    expect(await json(['balance', '1001', '3001'])).toEqual({ balances: { 1001: 0, 3001: 20 } });
  }, 180_000);

  it('a repeated transfer with the same client and request id has one effect', async () => {
    // The CLI's certificate names client admin: its client ids are admin or admin/...
    const foreign = await shardbank(['transfer', '2001', '5001', '3', '--client-id', 'it-retry', '--json']);
    expect(foreign.code, describeRun(foreign)).toBe(1);
    expect(JSON.parse(foreign.stdout)).toMatchObject({
      outcome: 'FAILED_PRECONDITION',
      message: 'PERMISSION_DENIED: client admin (role transfer) may use client_id admin or admin/..., not "it-retry"',
    });
    const args = ['transfer', '2001', '5001', '3', '--client-id', 'admin/it-retry', '--request-id', '1'];
    const first = await json<{ outcome: string; sessionEpoch: number; deduplicated: boolean }>(args);
    const second = await json<{ outcome: string; sessionEpoch: number; deduplicated: boolean }>(args);
    expect([first.outcome, second.outcome]).toEqual(['COMMITTED', 'COMMITTED']);
    // The replicas say which call ran it: the retry found the decided request.
    expect([first.deduplicated, second.deduplicated]).toEqual([false, true]);
    expect(second.sessionEpoch).toBe(first.sessionEpoch);
    const text = await shardbank(args);
    expect(text.code, describeRun(text)).toBe(0);
    expect(text.stdout).toMatch(/^COMMITTED 2001 -> 5001 amount 3 .*deduplicated/);
    // With the printed session epoch the retry is safe however much later; another epoch is refused.
    const third = await json<{ outcome: string }>([...args, '--session-epoch', String(first.sessionEpoch)]);
    expect(third.outcome).toBe('COMMITTED');
    const wrong = await shardbank([
      'transfer',
      '2001',
      '5001',
      '3',
      '--client-id',
      'admin/it-retry',
      '--request-id',
      '2',
      '--session-epoch',
      String(first.sessionEpoch + 1_000_000),
      '--json',
    ]);
    expect(wrong.code, describeRun(wrong)).not.toBe(0);
    expect(JSON.parse(wrong.stdout)).toMatchObject({
      outcome: 'FAILED_PRECONDITION',
      message: expect.stringMatching(/^session_epoch: \d+ was never issued to client admin\/it-retry/),
    });
    expect(await json(['balance', '2001', '5001'])).toEqual({ balances: { 2001: 7, 5001: 13 } });
    const poor = await shardbank(['transfer', '1001', '3001', '5', '--json']);
    expect(poor.code, describeRun(poor)).toBe(0);
    expect(JSON.parse(poor.stdout).outcome).toBe('INSUFFICIENT_FUNDS');
    const bad = await shardbank(['transfer', '1001', '3001', '1.5', '--json']);
    expect(bad.code, describeRun(bad)).toBe(2);
    expect(bad.stdout).toBe('');
    expect(JSON.parse(bad.stderr).error).toMatchObject({ code: 'usage', field: 'amount' });
  }, 180_000);

  it('status --json has the SPEC shape with a leader per shard', async () => {
    // A loaded machine may hold an election now and then: wait for a leader everywhere.
    const status = await poll('a leader in every shard', 120_000, async () => {
      const current = await json<StatusJson>(['status']);
      return current.shards.every((s) => s.leader !== null) ? current : undefined;
    });
    expect(status.cluster).toBe('local');
    expect(status.security).toBe('tls');
    // One replica's address is enough: the CLI learns the rest from its ClusterStatus. The
    // cluster runs TLS: without --ca/--cert/--key the call is refused and says why.
    const remote = ['balance', '2001', '5001', '--json', '--endpoints', status.shards[2]!.replicas[1]!.address];
    const plaintext = await shardbank([...remote, '--cluster', 'local']);
    expect(plaintext.code, describeRun(plaintext)).not.toBe(0);
    expect(plaintext.stderr).toContain('UNAUTHENTICATED: this cluster requires TLS');
    const certs = join(stateDir, 'certs');
    const one = await shardbank([
      ...remote,
      '--cluster',
      'local',
      ...['--ca', join(certs, 'ca.crt'), '--cert', join(certs, 'client-admin.crt')],
      ...['--key', join(certs, 'client-admin.key')],
    ]);
    expect(one.code, describeRun(one)).toBe(0);
    expect(JSON.parse(one.stdout)).toEqual({ balances: { 2001: 7, 5001: 13 } });
    expect(status.shards.map((s) => s.items)).toEqual([
      [1, 3000],
      [3001, 6000],
      [6001, 9000],
    ]);
    for (const shard of status.shards) {
      expect(Object.keys(shard)).toEqual(['shard', 'items', 'leader', 'replicas']);
      expect(shard.leader).not.toBeNull();
      expect(shard.leader!.ballot).toHaveLength(2);
      expect(shard.replicas.map((r) => r.ordinal)).toEqual([0, 1, 2]);
      for (const replica of shard.replicas) {
        expect(Object.keys(replica)).toEqual(['ordinal', 'role', 'ready', 'address', 'pid', 'commitIndex']);
        expect(['leader', 'follower', 'candidate', 'down']).toContain(replica.role);
      }
    }
  }, 60_000);

  it('NATS with TLS and users: every leader announced, as status sees it; rogue writers refused', async () => {
    const book = JSON.parse(readFileSync(join(stateDir, 'cluster.json'), 'utf8')) as {
      natsUrl: string;
      natsCa: string;
      natsCreds: string;
    };
    const auth = join(stateDir, 'nats-auth');
    expect(statSync(auth).mode & 0o777).toBe(0o700);
    for (const file of ['replica.json', 'watcher.json', 'nats-server.conf'])
      expect(statSync(join(auth, file)).mode & 0o777, file).toBe(0o600);
    expect(book.natsCreds).toBe(join(auth, 'watcher.json'));
    const security = { caFile: book.natsCa, credentialsFile: book.natsCreds };
    // The CLI's credentials (the watcher user) read what the replicas (the replica user) announced.
    const watcher = await LeaderWatcher.start({
      servers: book.natsUrl,
      security,
      namespace: 'default',
      cluster: 'local',
    });
    try {
      await poll('NATS and status to agree on every leader', 120_000, async () => {
        const status = await json<StatusJson>(['status']);
        const agree = status.shards.every((s) => {
          const announced = watcher.leader(s.shard);
          return (
            s.leader !== null &&
            announced?.leaderOrdinal === s.leader.ordinal &&
            announced.ballot.round === s.leader.ballot[0] &&
            announced.address === s.leader.address
          );
        });
        return agree ? true : undefined;
      });
    } finally {
      await watcher.close();
    }
    // Replicas, the CLI and the watcher above never hit a permission they lack.
    const natsLog = readFileSync(join(stateDir, 'logs', 'nats-server.log'), 'utf8');
    expect(natsLog).toMatch(/TLS required for client connections/);
    expect(natsLog).not.toMatch(/Violation|authentication error/);

    await expect(connect({ servers: book.natsUrl, tls: { caFile: book.natsCa } })).rejects.toThrow(
      /Authorization Violation/,
    );
    const nc = await connect({ servers: book.natsUrl, ...natsSecurityOptions(security) });
    try {
      const kv = await openLeaderBucket(nc, 5_000, { create: false });
      const key = keyFor('default', 'local', 0);
      await expect(kv.put(key, new TextEncoder().encode('{"rogue":true}'))).rejects.toThrow(/Permissions Violation/);
      const entry = await kv.get(key);
      expect(entry === null ? undefined : decode(entry.value).ok).toBe(true);
    } finally {
      await nc.close();
    }
  }, 180_000);

  it('after SIGKILL of a shard leader, status shows a new leader and the replica comes back', async () => {
    const before = await poll('a leader of shard 0', 120_000, async () => {
      const current = await json<StatusJson>(['status']);
      return current.shards[0]!.leader !== null ? current : undefined;
    });
    const leader = before.shards[0]!.leader!;
    const pid = before.shards[0]!.replicas[leader.ordinal]!.pid!;
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, 'SIGKILL');
    await poll('a new leader of shard 0', 120_000, async () => {
      const status = await json<StatusJson>(['status']);
      const next = status.shards[0]!.leader;
      const newer =
        next !== null &&
        (next.ballot[0] > leader.ballot[0] ||
          (next.ballot[0] === leader.ballot[0] && next.ballot[1] > leader.ballot[1]));
      return newer ? next : undefined;
    });
    await poll('every replica up again', 120_000, async () => {
      const status = await json<StatusJson>(['status']);
      return status.shards.every((s) => s.replicas.every((r) => r.role !== 'down')) ? true : undefined;
    });
    const transfer = await json<{ outcome: string }>(['transfer', '10', '20', '1']);
    expect(transfer.outcome).toBe('COMMITTED');
  }, 300_000);

  it('bench --json prints the SPEC shape; its report renders in Chromium', async () => {
    const report = join(stateDir, 'bench.html');
    const result = await json<Record<string, unknown>>([
      'bench',
      '--clients',
      '4',
      '--duration',
      '3s',
      '--report',
      report,
    ]);
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
    expect(result.clients).toBe(4);
    expect(result.transfers).toBeGreaterThan(0);
    if (!CHROMIUM) return console.warn(`bench report not checked in Chromium: ${SKIP_REASON}`);
    const { problems, dom } = await checkReport(CHROMIUM, report);
    expect(problems).toEqual([]);
    expect(dom).toMatchObject({ charts: 2, completed: 1, p99: expect.any(Number), overlaps: 0 });
  }, 180_000);

  it('a short chaos run with leader and nats-server kills keeps every invariant', async () => {
    const report = join(stateDir, 'chaos.html');
    const run = await shardbank(
      ['chaos', '--duration', '20s', '--interval', '4s', '--kill-nats', '--json', '--report', report],
      600_000,
    );
    expect(run.code, describeRun(run)).toBe(0);
    // One JSON object per line: a line per fault as it happened, the verdict last.
    const lines = run.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const verdict = lines.at(-1)!;
    expect(verdict.type).toBe('verdict');
    expect(verdict.ok).toBe(true);
    const faults = lines.slice(0, -1);
    expect(faults.every((line) => line.type === 'fault')).toBe(true);
    const replicaFaults = faults.filter((line) => line.target === 'replica');
    expect(replicaFaults).toHaveLength((verdict.faults as { replicaKills: number }).replicaKills);
    expect(faults.filter((line) => line.target === 'nats-server')).toHaveLength(
      (verdict.faults as { natsKills: number }).natsKills,
    );
    expect(verdict.faults).toMatchObject({ replicaKills: expect.any(Number), natsKills: expect.any(Number) });
    expect(replicaFaults.length).toBeGreaterThan(0);
    expect((verdict.faults as { natsKills: number }).natsKills).toBeGreaterThan(0);
    // Leader kills: each line names the new leader (a higher ballot) and the failover time.
    const failovers = replicaFaults.filter((line) => line.leader === true && line.newLeader !== null);
    expect(failovers.length).toBeGreaterThan(0);
    for (const line of failovers) expect(line.failoverS).toEqual(expect.any(Number));
    expect((verdict.counts as { committed: number }).committed).toBeGreaterThan(0);
    expect(readFileSync(report, 'utf8')).toMatch(/<svg/);
    if (!CHROMIUM) return console.warn(`chaos report not checked in Chromium: ${SKIP_REASON}`);
    const { problems, dom } = await checkReport(CHROMIUM, report);
    expect(problems).toEqual([]);
    expect(dom).toMatchObject({ charts: 2, completed: 1, overlaps: 0 });
    expect(dom.markers).toBeGreaterThanOrEqual(faults.length);
    expect(dom.failoverSpans).toBe(failovers.length);
  }, 660_000);

  it('down stops every process; the data stays', async () => {
    balancesBeforeDown = (
      await json<{ balances: Record<string, number> }>(['balance', '1001', '3001', '2001', '5001', '10', '20'])
    ).balances;
    const pids = bookPids();
    const run = await shardbank(['down'], 180_000);
    expect(run.code, describeRun(run)).toBe(0);
    await poll('every process gone', 60_000, async () => (pids.every((pid) => !isAlive(pid)) ? true : undefined));
    const balance = await shardbank(['balance', '1']);
    expect(balance.code, describeRun(balance)).toBe(3);
    expect(balance.stderr).toMatch(/cannot reach the cluster: .*not running/);
    // Every replica down: status still prints the table, and exits 3 (nothing answered).
    const status = await shardbank(['status']);
    expect(status.code, describeRun(status)).toBe(3);
    expect(status.stdout).toMatch(/health: DEGRADED: shard 0 lost its quorum \(0 of 3 replicas up, 2 needed\)/);
  }, 240_000);

  it('up with another topology on the same data is refused', async () => {
    const manifest = join(stateDir, 'other.yaml');
    writeFileSync(
      manifest,
      'apiVersion: shardbank.io/v1alpha1\nkind: BankCluster\nmetadata: {name: local}\nspec: {shards: 2}\n',
    );
    const run = await shardbank(['up', '--detach', '-f', manifest]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/topology/);
  }, 60_000);

  it('up again resumes: balances survived', async () => {
    const run = await shardbank(['up', '--detach']);
    expect(run.code, describeRun(run)).toBe(0);
    const after = await json<{ balances: Record<string, number> }>([
      'balance',
      '1001',
      '3001',
      '2001',
      '5001',
      '10',
      '20',
    ]);
    expect(after.balances).toEqual(balancesBeforeDown);
    const status = await shardbank(['status']);
    expect(status.stdout.split('\n')[0]).toBe(`cluster local (local, ${stateDir})`);
  }, 300_000);

  it('up --insecure runs plaintext, records it, and status says INSECURE', async () => {
    const insecureDir = mkdtempSync(join(tmpdir(), 'shardbank-insecure-'));
    const manifest = join(insecureDir, 'one.yaml');
    writeFileSync(
      manifest,
      'apiVersion: shardbank.io/v1alpha1\nkind: BankCluster\nmetadata: {name: plain}\nspec: {shards: 1, replicasPerShard: 1}\n',
    );
    const run = (args: readonly string[]) =>
      new Promise<Run>((done) =>
        execFile(
          process.execPath,
          [CLI, ...args, '--state-dir', insecureDir],
          { cwd: REPO, timeout: COMMAND_TIMEOUT_MS },
          (error, stdout, stderr) =>
            done({ code: error ? Number((error as { code?: unknown }).code ?? 1) : 0, stdout, stderr }),
        ),
      );
    try {
      const up = await run(['up', '--detach', '--insecure', '-f', manifest]);
      expect(up.code, describeRun(up)).toBe(0);
      const book = JSON.parse(readFileSync(join(insecureDir, 'cluster.json'), 'utf8'));
      expect(book.security).toBe('insecure');
      expect(existsSync(join(insecureDir, 'certs'))).toBe(false);
      const transfer = await run(['transfer', '1', '2', '1', '--json']);
      expect(transfer.code, describeRun(transfer)).toBe(0);
      expect(JSON.parse(transfer.stdout).outcome).toBe('COMMITTED');
      const statusJson = await run(['status', '--json']);
      expect(JSON.parse(statusJson.stdout).security).toBe('insecure');
      const status = await run(['status']);
      expect(status.stdout.split('\n')[0]).toBe(
        `cluster plain (local, ${insecureDir}) INSECURE (plaintext, no authentication)`,
      );
    } finally {
      await run(['down']);
      rmSync(insecureDir, { recursive: true, force: true });
    }
  }, 300_000);
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
