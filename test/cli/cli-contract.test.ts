// The CLI contract scripts rely on (docs/CLI.md), through the real `shardbank` process:
// output complete however slowly the reader reads, the exit code table, errors on stderr in
// one shape (JSON with --json), deprecated spellings, unknown manifest fields, --version,
// `help CMD` and the deduplicated flag. The cluster is scripted gRPC replicas in this process.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../node/cli/main.js';
import { Outcome, type ClusterStatusReply } from '../../node/gen/shardbank/v1/bank.js';
import { replicaStatus, startFakeReplica, type FakeReplica } from '../client/fake-bank-server.js';
import { captureIo } from './capture-io.js';

const REPO = resolve(import.meta.dirname, '../..');
const CLI = join(REPO, 'bin/shardbank.js');
const ITEMS = 9000;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function shardbank(args: readonly string[], timeoutMs = 60_000): Promise<Run> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { cwd: REPO, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error
          ? typeof (error as { code?: unknown }).code === 'number'
            ? (error as { code: number }).code
            : -1
          : 0;
        done({ code, stdout, stderr });
      },
    );
  });
}

/**
 * The command's stdout through a real pipe into a reader that takes nothing for 2 s and then
 * reads everything: the command must have waited for it (a pipe holds 64 KiB).
 */
function throughSlowPipe(args: readonly string[]): Promise<Run> {
  const quoted = [process.execPath, CLI, ...args].map((arg) => `'${arg.replace(/'/g, `'\\''`)}'`).join(' ');
  return new Promise((done) => {
    const child = spawn('bash', ['-c', `${quoted} | { sleep 2; cat; }; exit \${PIPESTATUS[0]}`], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('close', (code) =>
      done({
        code: code ?? -1,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      }),
    );
  });
}

const describeRun = (run: Run) =>
  `exit ${run.code}\nstdout (${run.stdout.length} chars):\n${run.stdout.slice(0, 2000)}\nstderr:\n${run.stderr}`;

let healthy: FakeReplica[] = [];
let follower: FakeReplica;
let deadAddress = '';
let stateDir = '';

beforeAll(async () => {
  if (!existsSync(join(REPO, 'dist/node/cli/main.js'))) throw new Error('build first (npx tsc -p tsconfig.json)');
  healthy = await Promise.all([0, 1].map(() => startFakeReplica()));
  healthy.forEach((replica, shard) => {
    replica.behaviour = {
      getBalance: (request) => ({
        value: {
          balances: request.items.map((item) => ({ item, balance: 10 })),
          shard,
          replica: 0,
          indexLag: 0,
          msSinceLeader: 0,
          appliedIndex: 4,
        },
      }),
      clusterStatus: () => replicaStatus(shard, 0, 'leader', { round: 2, commitIndex: 42 }),
      transfer: (request) =>
        request.clientId === 'again'
          ? {
              value: {
                outcome: Outcome.COMMITTED,
                decisionIndex: 9,
                coordinatorShard: shard,
                message: '',
                deduplicated: true,
              },
            }
          : { value: { outcome: Outcome.COMMITTED, decisionIndex: 9, coordinatorShard: shard, message: '' } },
    };
  });
  follower = await startFakeReplica({ clusterStatus: () => replicaStatus(1, 0, 'follower', { commitIndex: 42 }) });
  const dead = await startFakeReplica();
  deadAddress = dead.address;
  await dead.stop();
  stateDir = mkdtempSync(join(tmpdir(), 'shardbank-contract-'));
});

afterAll(async () => {
  await Promise.all([...healthy, follower].map((replica) => replica.stop()));
  if (stateDir === '') return;
  // A CLI that accepted the bad manifest started a cluster there: stop it before removing it.
  if (existsSync(join(stateDir, 'typo', 'cluster.json')))
    await shardbank(['down', '--state-dir', join(stateDir, 'typo')], 120_000);
  rmSync(stateDir, { recursive: true, force: true });
}, 180_000);

const target = () => [
  '--endpoints',
  `${healthy[0]!.address};${healthy[1]!.address}`,
  '--cluster',
  'test',
  '--items-per-shard',
  String(ITEMS / 2),
];
const allItems = () => Array.from({ length: ITEMS }, (_, index) => String(index + 1));

describe('shardbank CLI contract (real processes)', () => {
  it('balance --json of 9000 items is complete through a pipe whose reader waits 2 s', async () => {
    const run = await throughSlowPipe(['balance', '--json', ...allItems(), ...target()]);
    expect(run.code, describeRun(run)).toBe(0);
    expect(run.stdout.length).toBeGreaterThan(64 * 1024);
    const parsed = JSON.parse(run.stdout) as { balances: Record<string, number> };
    expect(Object.keys(parsed.balances)).toHaveLength(ITEMS);
    expect(parsed.balances['9000']).toBe(10);
  }, 120_000);

  it('balance as text, status, transfer and help are complete through the slow pipe', async () => {
    const text = await throughSlowPipe(['balance', ...allItems(), ...target()]);
    expect(text.code, describeRun(text)).toBe(0);
    const lines = text.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(ITEMS);
    expect(lines[ITEMS - 1]).toBe('9000\t10');
    const status = await throughSlowPipe(['status', '--json', ...target()]);
    expect(status.code, describeRun(status)).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ cluster: 'test', healthy: true, problems: [] });
    const transfer = await throughSlowPipe(['transfer', '1001', '5001', '3', '--json', ...target()]);
    expect(transfer.code, describeRun(transfer)).toBe(0);
    expect(JSON.parse(transfer.stdout)).toMatchObject({ outcome: 'COMMITTED', deduplicated: false });
    const help = await throughSlowPipe(['help', 'bench']);
    expect(help.code, describeRun(help)).toBe(0);
    expect(help.stdout).toMatch(/^Usage: shardbank bench/);
  }, 120_000);

  it('a deduplicated retry says so: "deduplicated": true in JSON, the word in text', async () => {
    const json = await shardbank([
      'transfer',
      '1001',
      '5001',
      '3',
      '--client-id',
      'again',
      '--request-id',
      '5',
      '--json',
      ...target(),
    ]);
    expect(json.code, describeRun(json)).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      outcome: 'COMMITTED',
      clientId: 'again',
      requestId: 5,
      deduplicated: true,
    });
    const text = await shardbank([
      'transfer',
      '1001',
      '5001',
      '3',
      '--client-id',
      'again',
      '--request-id',
      '5',
      ...target(),
    ]);
    expect(text.code, describeRun(text)).toBe(0);
    expect(text.stdout).toMatch(/^COMMITTED 1001 -> 5001 amount 3 .*deduplicated/);
  }, 60_000);

  it('client-side validation errors go to stderr in one shape, nothing on stdout; JSON with --json', async () => {
    const cases: [string[], string, RegExp][] = [
      [['transfer', '1001', '3001', '1.5'], 'amount', /^amount: must be a positive integer, got 1\.5/],
      [['transfer', '1001', '3001', '0'], 'amount', /^amount: must be a positive integer/],
      [['transfer', '1001', '99999', '1'], 'to', /^to: must be an item from 1 to 9000, got 99999/],
      [['transfer', '1001', '1001', '1'], 'to', /^to: must differ from from/],
      [['transfer', '1', '2', '3', '--timeout', 'soon'], '--timeout', /^--timeout: expected a duration/],
      [['balance', '0'], 'item', /^item: must be an item from 1 to 9000/],
    ];
    for (const [args, field, message] of cases) {
      const json = await shardbank([...args, '--json', ...target()]);
      expect(json.code, describeRun(json)).toBe(2);
      expect(json.stdout).toBe('');
      const error = JSON.parse(json.stderr.trim()) as {
        error: { code: string; exitCode: number; field: string; message: string };
      };
      expect(error.error).toMatchObject({ code: 'usage', exitCode: 2, field });
      expect(error.error.message).toMatch(message);
      // The text shape, in process (the same code path, without another process start).
      const text = captureIo();
      expect(await runCli([...args, ...target()], text)).toBe(2);
      expect(text.stdout).toEqual([]);
      expect(text.stderr.join('\n')).toMatch(new RegExp(`^shardbank ${args[0]}: error: ${message.source.slice(1)}`));
    }
    const option = await shardbank(['status', '--bogus', '--json']);
    expect(option.code).toBe(2);
    expect(JSON.parse(option.stderr.trim()).error).toMatchObject({
      code: 'usage',
      command: 'status',
      message: expect.stringMatching(/bogus/),
    });
    const command = await shardbank(['frobnicate', '--json']);
    expect(command.code).toBe(2);
    expect(JSON.parse(command.stderr.trim()).error).toMatchObject({
      code: 'usage',
      message: expect.stringMatching(/unknown command "frobnicate"/),
    });
  }, 180_000);

  it('exit 3 when the cluster cannot be reached, without a pointer to --help', async () => {
    const local = await shardbank(['balance', '1', '--state-dir', join(stateDir, 'none')]);
    expect(local.code, describeRun(local)).toBe(3);
    expect(local.stderr).toMatch(
      /^shardbank balance: error: cannot reach the cluster: no local cluster in .*shardbank up --detach/,
    );
    expect(local.stderr).not.toMatch(/--help/);
    const remote = ['--endpoints', `${deadAddress};${deadAddress}`, '--cluster', 'test'];
    const balance = await shardbank(['balance', '1', '--timeout', '2s', '--json', ...remote]);
    expect(balance.code, describeRun(balance)).toBe(3);
    expect(JSON.parse(balance.stderr.trim()).error).toMatchObject({ code: 'unavailable', exitCode: 3 });
    const status = await shardbank(['status', '--json', ...remote]);
    expect(status.code, describeRun(status)).toBe(3);
    expect(JSON.parse(status.stdout)).toMatchObject({ healthy: false });
    const bench = await shardbank([
      'bench',
      '--clients',
      '2',
      '--duration',
      '500ms',
      '--timeout',
      '1s',
      '--json',
      ...remote,
    ]);
    expect(bench.code, describeRun(bench)).toBe(3);
    expect(Object.keys(JSON.parse(bench.stdout).outcomes)).toEqual(['UNKNOWN']);
    expect(JSON.parse(bench.stderr.trim()).error).toMatchObject({ code: 'unavailable', command: 'bench' });
    // A transfer nobody answered has no definite outcome: 4, retry with the same ids.
    const transfer = await shardbank(['transfer', '1', '3001', '1', '--timeout', '2s', '--json', ...remote]);
    expect(transfer.code, describeRun(transfer)).toBe(4);
    expect(JSON.parse(transfer.stdout)).toMatchObject({ outcome: 'UNKNOWN' });
  }, 120_000);

  it('status exits 5 when a shard has no leader or has lost its quorum, and says which', async () => {
    const noLeader = await shardbank([
      'status',
      '--endpoints',
      `${healthy[0]!.address};${follower.address}`,
      '--cluster',
      'test',
    ]);
    expect(noLeader.code, describeRun(noLeader)).toBe(5);
    expect(noLeader.stdout).toMatch(/health: DEGRADED: shard 1 has no leader/);
    const quorum = await shardbank([
      'status',
      '--json',
      '--endpoints',
      `${healthy[0]!.address},${deadAddress},${deadAddress};${healthy[1]!.address},${follower.address},${follower.address}`,
      '--cluster',
      'test',
    ]);
    expect(quorum.code, describeRun(quorum)).toBe(5);
    const view = JSON.parse(quorum.stdout) as { healthy: boolean; problems: string[] };
    expect(view.healthy).toBe(false);
    expect(view.problems).toEqual(['shard 0 lost its quorum (1 of 3 replicas up, 2 needed)']);
  }, 60_000);

  it('one reachable endpoint is enough: the topology and the replicas come from its ClusterStatus', async () => {
    const shardOf = (shard: number, address: string) => ({
      shard,
      firstItem: shard * 4500 + 1,
      lastItem: (shard + 1) * 4500,
      leaderOrdinal: 0,
      leaderBallot: undefined,
      leaderAddress: address,
      inflightTransactions: 0,
      voters: [0],
      learners: [],
      membershipChangeInFlight: false,
      replicas: [
        {
          ...(replicaStatus(shard, 0, 'leader') as { value: ClusterStatusReply }).value.shards[0]!.replicas[0]!,
          address,
        },
      ],
    });
    const gateway = await startFakeReplica({
      clusterStatus: (request) =>
        request.localOnly
          ? replicaStatus(0, 0, 'follower')
          : { value: { cluster: 'test', shards: [shardOf(0, healthy[0]!.address), shardOf(1, healthy[1]!.address)] } },
    });
    try {
      const balance = await shardbank([
        'balance',
        '1',
        '9000',
        '--json',
        '--endpoints',
        gateway.address,
        '--cluster',
        'test',
      ]);
      expect(balance.code, describeRun(balance)).toBe(0);
      expect(JSON.parse(balance.stdout)).toEqual({ balances: { 1: 10, 9000: 10 } });
      const status = await shardbank(['status', '--json', '--endpoints', gateway.address, '--cluster', 'test']);
      expect(status.code, describeRun(status)).toBe(0);
      expect(
        (JSON.parse(status.stdout) as { shards: { items: number[]; leader: { address: string } }[] }).shards.map(
          (shard) => [shard.items, shard.leader.address],
        ),
      ).toEqual([
        [[1, 4500], healthy[0]!.address],
        [[4501, 9000], healthy[1]!.address],
      ]);
      const unreachable = await shardbank(['balance', '1', '--endpoints', deadAddress, '--cluster', 'test']);
      expect(unreachable.code, describeRun(unreachable)).toBe(3);
      expect(unreachable.stderr).toMatch(/cannot reach the cluster: --endpoints /);
    } finally {
      await gateway.stop();
    }
  }, 60_000);

  it('--version, help CMD, and the deprecated spellings warn on stderr', async () => {
    const version = await shardbank(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^shardbank \d+\.\d+\.\d+$/);
    const help = await shardbank(['help', 'transfer']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: shardbank transfer/);
    const unknownHelp = await shardbank(['help', 'frobnicate']);
    expect(unknownHelp.code).toBe(2);
    const up = await shardbank(['up', '--nats', 'http://x', '--state-dir', stateDir]);
    expect(up.code, describeRun(up)).toBe(2);
    expect(up.stderr).toMatch(/^shardbank up: warning: --nats URL is deprecated: use --nats-url URL/);
    expect(up.stderr).toMatch(/shardbank up: error: --nats: must be a nats:\/\/ or tls:\/\/ URL/);
    const upNew = await shardbank(['up', '--nats-url', 'http://x', '--state-dir', stateDir]);
    expect(upNew.code, describeRun(upNew)).toBe(2);
    expect(upNew.stderr).not.toMatch(/warning/);
    expect(upNew.stderr).toMatch(/--nats-url: must be a nats:\/\/ or tls:\/\/ URL/);
    const chaos = await shardbank(['chaos', '--nats', '--state-dir', join(stateDir, 'none')]);
    expect(chaos.stderr).toMatch(/^shardbank chaos: warning: --nats is deprecated .*use --kill-nats/);
    expect(chaos.code).toBe(3);
  }, 120_000);

  it('an unknown manifest field is an error naming it (a replicaPerShard typo)', async () => {
    const manifest = join(stateDir, 'typo.yaml');
    writeFileSync(
      manifest,
      'apiVersion: shardbank.io/v1alpha1\nkind: BankCluster\nmetadata: {name: local}\nspec: {shards: 2, replicaPerShard: 5, storage: {sise: 1Gi}}\n',
    );
    const run = await shardbank(['up', '--detach', '-f', manifest, '--state-dir', join(stateDir, 'typo')]);
    expect(run.code, describeRun(run)).toBe(2);
    expect(run.stderr).toMatch(/spec\.replicaPerShard: unknown field \(did you mean spec\.replicasPerShard\?\)/);
    expect(run.stderr).toMatch(/spec\.storage\.sise: unknown field \(did you mean spec\.storage\.size\?\)/);
    const json = await shardbank(['up', '--detach', '-f', manifest, '--state-dir', join(stateDir, 'typo'), '--json']);
    expect(JSON.parse(json.stderr.trim()).error).toMatchObject({ code: 'usage', field: 'spec.replicaPerShard' });
  }, 60_000);
});
