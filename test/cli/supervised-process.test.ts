import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SupervisedProcess } from '../../node/local/supervised-process.js';

const dir = mkdtempSync(join(tmpdir(), 'shardbank-supervised-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function until<T>(what: string, probe: () => T | undefined, deadlineMs = 30_000): Promise<T> {
  const deadlineAtMs = Date.now() + deadlineMs;
  while (Date.now() < deadlineAtMs) {
    const value = probe();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('SupervisedProcess', () => {
  it('restarts a killed child, logs to its file, and stops with SIGTERM', async () => {
    const logFile = join(dir, 'child.log');
    const starts: number[] = [];
    const exits: (NodeJS.Signals | null)[] = [];
    const child = new SupervisedProcess(
      {
        name: 'sleeper',
        command: process.execPath,
        args: ['-e', 'console.log("started " + process.pid); setInterval(() => {}, 1000)'],
        logFile,
      },
      { onStart: (pid) => starts.push(pid), onExit: (_code, signal) => exits.push(signal) },
    );
    child.start();
    const first = await until('first start', () => starts[0]);
    const logged = (pid: number) => () => (readFileSync(logFile, 'utf8').includes(`started ${pid}`) ? true : undefined);
    await until('the first child to run', logged(first));
    process.kill(first, 'SIGKILL');
    const second = await until('restart', () => starts[1]);
    expect(second).not.toBe(first);
    expect(child.restarts).toBe(1);
    await until('the restarted child to run', logged(second));
    await child.stop(5_000);
    expect(exits).toEqual(['SIGKILL', 'SIGTERM']);
    expect(child.pid).toBeNull();
  });
});
