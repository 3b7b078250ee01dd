// `shardbank up -f` with another replicasPerShard on a running local cluster (issue 19):
// 1 shard with TLS (the membership changes go as the CLI's admin client), 3 -> 5 -> 3 online,
// each step printed with its duration; status shows the voters; a transfer before and after;
// down and up again on the resized data. Needs `npm run build` and nats-server.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = resolve(import.meta.dirname, '../..');
const CLI = join(REPO, 'bin/shardbank.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let root = '';

function shardbank(args: readonly string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [CLI, ...args, '--state-dir', join(root, 'state')],
      { cwd: REPO, timeout: 240_000, maxBuffer: 16 * 1024 * 1024 },
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

function manifest(replicasPerShard: number): string {
  const file = join(root, `bank-${replicasPerShard}.yaml`);
  writeFileSync(
    file,
    `apiVersion: shardbank.io/v1alpha1\nkind: BankCluster\nmetadata:\n  name: resize\nspec:\n  shards: 1\n  replicasPerShard: ${replicasPerShard}\n  itemsPerShard: 100\n`,
  );
  return file;
}

const said = (run: Run) => `exit ${run.code}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`;

describe('shardbank up -f: replicasPerShard changed on a running local cluster', () => {
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'shardbank-resize-'));
    const up = await shardbank(['up', '-f', manifest(3), '--detach']);
    expect(up.code, said(up)).toBe(0);
  }, 240_000);

  afterAll(async () => {
    await shardbank(['down']);
    rmSync(root, { recursive: true, force: true });
  }, 120_000);

  it('grows to 5 and shrinks to 3 online, step by step; status shows the voters; up again after down', async () => {
    expect((await shardbank(['transfer', '1', '2', '5'])).code).toBe(0);
    const grow = await shardbank(['up', '-f', manifest(5)]);
    expect(grow.code, said(grow)).toBe(0);
    expect(grow.stdout).toMatch(/changing replicasPerShard 3 -> 5 online/);
    expect(grow.stdout).toMatch(/add learner at 127\.0\.0\.1:\d+: done in \d+ ms/);
    expect(grow.stdout).toMatch(/promote 127\.0\.0\.1:\d+: done in \d+ ms/);
    expect(grow.stdout).toContain('done: 5 replicas per shard');
    const grown = await shardbank(['status']);
    expect(grown.stdout, said(grown)).toContain('s0 members: voters 0,1,2,3,4 learners -');
    expect((await shardbank(['transfer', '2', '3', '1'])).code).toBe(0);

    const shrink = await shardbank(['up', '-f', manifest(3)]);
    expect(shrink.code, said(shrink)).toBe(0);
    expect(shrink.stdout).toMatch(/demote 127\.0\.0\.1:\d+: done in \d+ ms/);
    expect(shrink.stdout).toMatch(/slot 3 stopped and forgotten/);
    const shrunk = await shardbank(['status']);
    expect(shrunk.stdout, said(shrunk)).toContain('s0 members: voters 0,1,2 learners -');
    expect(shrunk.stdout).not.toContain('s0-3');

    expect((await shardbank(['down'])).code).toBe(0);
    const again = await shardbank(['up', '-f', manifest(3), '--detach']);
    expect(again.code, said(again)).toBe(0);
    const balance = await shardbank(['balance', '1', '2', '3', '--json']);
    expect(balance.code, said(balance)).toBe(0);
    expect(JSON.parse(balance.stdout)).toEqual({ balances: { 1: 5, 2: 14, 3: 11 } });
  }, 300_000);
});
