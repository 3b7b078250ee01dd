// The local runtime with stand-in replica processes (test/cli/fake-replica-process.ts):
// supervision, restarts, the address book, detach/down and resume, independent of the
// real replica. Uses the real CLI as a subprocess and a real nats-server.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = resolve(import.meta.dirname, '../..');
const CLI = join(REPO, 'bin/shardbank.js');
const FAKE_REPLICA = join(REPO, 'dist/test/cli/fake-replica-process.js');
const POLL_MS = 300;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}
interface Book {
  supervisorPid: number | null;
  natsPid: number | null;
  natsPort: number | null;
  replicas: { shard: number; ordinal: number; pid: number | null; grpcPort: number; restarts: number }[];
}

let stateDir = '';

function shardbank(args: readonly string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [CLI, ...args, '--state-dir', stateDir],
      { cwd: REPO, timeout: 120_000, env: { ...process.env, SHARDBANK_REPLICA_MAIN: FAKE_REPLICA } },
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

function book(): Book {
  return JSON.parse(readFileSync(join(stateDir, 'cluster.json'), 'utf8')) as Book;
}

function alive(pid: number | null): boolean {
  if (pid === null) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function poll<T>(what: string, probe: () => T | undefined, deadlineMs = 60_000): Promise<T> {
  const deadlineAtMs = Date.now() + deadlineMs;
  while (Date.now() < deadlineAtMs) {
    const value = probe();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(`timed out waiting for ${what}`);
}

beforeAll(() => {
  if (!existsSync(FAKE_REPLICA))
    throw new Error(`${FAKE_REPLICA} not found: build first (npm run build; npm test does it)`);
  stateDir = mkdtempSync(join(tmpdir(), 'shardbank-runtime-'));
});

afterAll(async () => {
  await shardbank(['down']);
  if (existsSync(join(stateDir, 'cluster.json'))) {
    const last = book();
    for (const pid of [last.supervisorPid, last.natsPid, ...last.replicas.map((r) => r.pid)])
      if (pid !== null && alive(pid)) process.kill(pid, 'SIGKILL');
  }
  rmSync(stateDir, { recursive: true, force: true });
}, 120_000);

describe('local runtime with stand-in replicas', () => {
  let portsBefore: number[] = [];

  it('up --detach starts nats-server and 9 supervised replicas and writes the address book', async () => {
    const run = await shardbank(['up', '--detach']);
    expect(run.code, run.stderr).toBe(0);
    const current = book();
    expect(alive(current.supervisorPid)).toBe(true);
    expect(alive(current.natsPid)).toBe(true);
    expect(current.replicas).toHaveLength(9);
    expect(current.replicas.every((r) => alive(r.pid))).toBe(true);
    portsBefore = current.replicas.map((r) => r.grpcPort);
    const status = JSON.parse((await shardbank(['status', '--json'])).stdout);
    expect(status.shards.map((s: { leader: { ordinal: number } }) => s.leader.ordinal)).toEqual([0, 0, 0]);
    expect(status.shards[0].replicas[1].pid).toBe(current.replicas[1]!.pid);
  }, 180_000);

  it('restarts a SIGKILLed replica and nats-server', async () => {
    const before = book();
    const victim = before.replicas[4]!;
    process.kill(victim.pid!, 'SIGKILL');
    process.kill(before.natsPid!, 'SIGKILL');
    const after = await poll('the replica and nats-server restarted', () => {
      const current = book();
      const replica = current.replicas[4]!;
      return replica.pid !== null &&
        replica.pid !== victim.pid &&
        alive(replica.pid) &&
        current.natsPid !== null &&
        current.natsPid !== before.natsPid
        ? current
        : undefined;
    });
    expect(after.replicas[4]!.restarts).toBeGreaterThanOrEqual(1);
    expect(after.natsPort).toBe(before.natsPort);
    const deadlineAtMs = Date.now() + 60_000;
    let role = 'down';
    while (role === 'down' && Date.now() < deadlineAtMs) {
      role = JSON.parse((await shardbank(['status', '--json'])).stdout).shards[1].replicas[1].role;
      if (role === 'down') await new Promise((r) => setTimeout(r, POLL_MS));
    }
    expect(role).not.toBe('down');
  }, 120_000);

  it('refuses a second up while running', async () => {
    const run = await shardbank(['up', '--detach']);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/already running/);
  }, 60_000);

  it('down stops everything; status then shows every replica down', async () => {
    const pids = (() => {
      const current = book();
      return [current.supervisorPid, current.natsPid, ...current.replicas.map((r) => r.pid)];
    })();
    const run = await shardbank(['down']);
    expect(run.code, run.stderr).toBe(0);
    await poll('every process gone', () => (pids.every((pid) => !alive(pid)) ? true : undefined));
    const status = JSON.parse((await shardbank(['status', '--json'])).stdout);
    expect(status.shards.flatMap((s: { replicas: { role: string }[] }) => s.replicas.map((r) => r.role))).toEqual(
      Array(9).fill('down'),
    );
    const transfer = await shardbank(['transfer', '1', '2', '3']);
    // docs/CLI.md: 3 = cannot reach the cluster (not a usage error).
    expect(transfer.code).toBe(3);
    expect(transfer.stderr).toMatch(/not running/);
  }, 120_000);

  it('up again resumes on the same ports', async () => {
    const run = await shardbank(['up', '--detach']);
    expect(run.code, run.stderr).toBe(0);
    expect(book().replicas.map((r) => r.grpcPort)).toEqual(portsBefore);
  }, 180_000);
});
