// `shardbank up` (foreground with a live table, --detach with a background supervisor, or
// the hidden --supervise mode that detached supervisor runs in) and `shardbank down`.
import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BankCluster } from '../cluster/bankcluster.js';
import { sleep } from '../client/backoff.js';
import { everyShardHasLeader } from '../client/status-view.js';
import { isSupervisorRunning, readAddressBook, writeAddressBook, type AddressBook } from './address-book.js';
import { isProcessAlive } from '../util/process-alive.js';
import { connectToBook } from './cluster-client.js';
import { LiveTable, renderShardTable } from './live-table.js';
import { findNatsServer, NATS_INSTALL_HELP } from './nats-binary.js';
import { checkStateDir, LocalRuntimeError, LocalSupervisor } from './supervisor.js';
import { requestResize, serveResizeRequests } from './resize.js';
import { manifestTopology } from './manifest.js';

export const DEFAULT_STATE_DIR = '.shardbank';
export const DETACH_WAIT_MS_DEFAULT = 120_000;
export const DOWN_WAIT_MS = 60_000;
export const TABLE_REFRESH_MS = 1_000;
export const SUPERVISOR_LOG_FILE = 'supervisor.log';
export const MANIFEST_COPY_FILE = 'bankcluster.json';

export interface Output {
  out(line: string): void;
  err(line: string): void;
}

export function resolveStateDir(stateDir: string | undefined, cwd = process.cwd()): string {
  return resolve(cwd, stateDir ?? process.env.SHARDBANK_STATE_DIR ?? DEFAULT_STATE_DIR);
}

/** `dist/node/replica/main.js`, next to this compiled file (override: SHARDBANK_REPLICA_MAIN). */
export function replicaMainPath(): string {
  return process.env.SHARDBANK_REPLICA_MAIN ?? fileURLToPath(new URL('../replica/main.js', import.meta.url));
}

export function cliMainPath(): string {
  return fileURLToPath(new URL('../cli/main.js', import.meta.url));
}

export interface UpOptions {
  readonly stateDir: string;
  readonly manifest: BankCluster;
  readonly natsUrl?: string;
  readonly waitMs?: number;
  readonly logLevel?: string;
  /** `up --insecure`: plaintext clients and peers (the default is TLS). */
  readonly insecure?: boolean;
}

function checkReplicaMain(): string {
  const path = replicaMainPath();
  if (!existsSync(path))
    throw new LocalRuntimeError(`replica entry point ${path} not found; build first: npm run build`);
  return path;
}

/**
 * `up -f` on a running cluster whose manifest asks for another replicasPerShard (and nothing
 * else different): the running supervisor changes each shard's membership online. Returns
 * undefined when the cluster is not running or the size is the same (the usual `up` rules).
 */
export async function resizeIfRunning(options: UpOptions, output: Output): Promise<number | undefined> {
  const book = readAddressBook(options.stateDir);
  if (book === undefined || !isSupervisorRunning(book)) return undefined;
  const wanted = manifestTopology(options.manifest);
  if (wanted.replicasPerShard === book.topology.replicasPerShard) return undefined;
  const { shards, itemsPerShard, initialBalance } = book.topology;
  if (
    book.cluster !== options.manifest.metadata.name ||
    wanted.shards !== shards ||
    wanted.itemsPerShard !== itemsPerShard ||
    wanted.initialBalance !== initialBalance
  ) {
    throw new LocalRuntimeError(
      `a running cluster changes only spec.replicasPerShard online; the manifest changes more (cluster ${options.manifest.metadata.name}, ${wanted.shards} shards, ${wanted.itemsPerShard} items per shard, initial balance ${wanted.initialBalance})`,
    );
  }
  output.out(
    `cluster "${book.cluster}" is running: changing replicasPerShard ${book.topology.replicasPerShard} -> ${wanted.replicasPerShard} online, one step at a time`,
  );
  return requestResize(book, wanted.replicasPerShard, output);
}

/** Runs the cluster in this process with a live table until Ctrl-C or SIGTERM. */
export async function upForeground(options: UpOptions, output: Output): Promise<number> {
  // After a terminal hang-up, writes fail (EIO); the cluster must still be stopped in order.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
  const table = new LiveTable(process.stdout);
  const supervisor = await LocalSupervisor.start({
    stateDir: options.stateDir,
    manifest: options.manifest,
    replicaMain: checkReplicaMain(),
    ...(options.natsUrl ? { natsUrl: options.natsUrl } : {}),
    ...(options.logLevel ? { logLevel: options.logLevel } : {}),
    security: options.insecure ? 'insecure' : 'tls',
    log: (line) => {
      appendLog(options.stateDir, line);
      table.note(line);
    },
  });
  output.out(
    `cluster "${supervisor.book.cluster}" starting from ${options.stateDir}${options.insecure ? ' INSECURE (plaintext, no authentication)' : ' with TLS'} (Ctrl-C stops it)`,
  );
  serveResizeRequests(supervisor);
  const client = await connectToBook(supervisor.book);
  let stopRequested = false;
  const stopSignal = stopRequest(() => {
    stopRequested = true;
  });
  while (!stopRequested) {
    const view = await client.clusterStatus();
    table.show(
      renderShardTable(view, (shard) =>
        supervisor.book.replicas.filter((r) => r.shard === shard).reduce((sum, r) => sum + r.restarts, 0),
      ),
    );
    await Promise.race([sleep(TABLE_REFRESH_MS), stopSignal]);
  }
  await client.close();
  await supervisor.stop();
  return 0;
}

/**
 * Resolves on the first stop signal. The listeners stay: a second Ctrl-C or SIGTERM must not
 * kill the supervisor half-way through stopping its (detached) children.
 */
function stopRequest(
  onStop: () => void,
  signals: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'],
): Promise<void> {
  return new Promise((done) => {
    let requested = false;
    const handler = () => {
      if (requested) return;
      requested = true;
      onStop();
      done();
    };
    for (const signal of signals) process.on(signal, handler);
  });
}

/** The background supervisor process behind `up --detach`; logs go to its own file. */
export async function upSupervise(options: UpOptions, output: Output): Promise<number> {
  const log = (line: string) => output.out(`${new Date().toISOString()} ${line}`);
  const supervisor = await LocalSupervisor.start({
    stateDir: options.stateDir,
    manifest: options.manifest,
    replicaMain: checkReplicaMain(),
    log,
    ...(options.natsUrl ? { natsUrl: options.natsUrl } : {}),
    ...(options.logLevel ? { logLevel: options.logLevel } : {}),
    security: options.insecure ? 'insecure' : 'tls',
  });
  supervisor.book.supervisorLog = join(options.stateDir, 'logs', SUPERVISOR_LOG_FILE);
  writeAddressBook(options.stateDir, supervisor.book);
  log(
    `supervisor ${process.pid} running cluster "${supervisor.book.cluster}" (${supervisor.book.replicas.length} replicas)`,
  );
  process.on('SIGHUP', () => log('SIGHUP ignored'));
  serveResizeRequests(supervisor);
  await stopRequest(() => undefined, ['SIGINT', 'SIGTERM']);
  log('stop requested');
  await supervisor.stop();
  return 0;
}

/** Starts the background supervisor and returns once every shard has a leader. */
export async function upDetached(options: UpOptions, output: Output): Promise<number> {
  checkReplicaMain();
  mkdirSync(join(options.stateDir, 'logs'), { recursive: true });
  checkStateDir(options.stateDir, options.manifest);
  if (!options.natsUrl && !options.manifest.spec.nats.url && findNatsServer() === undefined)
    throw new LocalRuntimeError(NATS_INSTALL_HELP);
  const manifestCopy = join(options.stateDir, MANIFEST_COPY_FILE);
  writeFileSync(manifestCopy, `${JSON.stringify(options.manifest, null, 2)}\n`);
  const logPath = join(options.stateDir, 'logs', SUPERVISOR_LOG_FILE);
  const logFd = openSync(logPath, 'a');
  const args = [cliMainPath(), 'up', '--supervise', '--state-dir', options.stateDir, '-f', manifestCopy];
  if (options.natsUrl) args.push('--nats-url', options.natsUrl);
  if (options.logLevel) args.push('--log-level', options.logLevel);
  if (options.insecure) args.push('--insecure');
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', logFd, logFd], cwd: process.cwd() });
  closeSync(logFd);
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  child.unref();
  const pid = child.pid!;
  const waitMs = options.waitMs ?? DETACH_WAIT_MS_DEFAULT;
  output.err(
    `starting cluster "${options.manifest.metadata.name}" in the background (supervisor pid ${pid}, logs in ${join(options.stateDir, 'logs')}); waiting for a leader in every shard`,
  );
  const result = await waitForLeaders(options.stateDir, pid, waitMs, () => exited);
  if (result === 'ready') {
    output.out(
      `cluster running in the background (supervisor pid ${pid}); state in ${options.stateDir}; stop it with: shardbank down --state-dir ${options.stateDir}`,
    );
    return 0;
  }
  if (result === 'exited') {
    output.err(`the supervisor exited during start-up; last lines of ${logPath}:\n${tail(logPath, 20)}`);
    return 1;
  }
  output.err(
    `not every shard has a leader after ${Math.round(waitMs / 1000)} s; the cluster keeps running in the background (supervisor pid ${pid}).`,
  );
  output.err(
    `see ${join(options.stateDir, 'logs')} and 'shardbank status --state-dir ${options.stateDir}'; stop it with 'shardbank down --state-dir ${options.stateDir}'`,
  );
  return 1;
}

async function waitForLeaders(
  stateDir: string,
  supervisorPid: number,
  waitMs: number,
  exited: () => boolean,
): Promise<'ready' | 'exited' | 'timeout'> {
  const deadlineAtMs = Date.now() + waitMs;
  let client: Awaited<ReturnType<typeof connectToBook>> | undefined;
  try {
    while (Date.now() < deadlineAtMs) {
      if (exited() || !isProcessAlive(supervisorPid)) return 'exited';
      const book = safeRead(stateDir);
      if (book?.supervisorPid === supervisorPid && book.replicas.every((entry) => entry.pid !== null)) {
        client ??= await connectToBook(book);
        if (everyShardHasLeader(await client.clusterStatus())) return 'ready';
      }
      await sleep(300);
    }
    return 'timeout';
  } finally {
    await client?.close();
  }
}

/** The foreground supervisor keeps the same log file as a detached one. */
function appendLog(stateDir: string, line: string): void {
  try {
    appendFileSync(join(stateDir, 'logs', SUPERVISOR_LOG_FILE), `${new Date().toISOString()} ${line}\n`);
  } catch {
    // The log is a convenience; the table shows the same.
  }
}

function safeRead(stateDir: string): AddressBook | undefined {
  try {
    return readAddressBook(stateDir);
  } catch {
    return undefined;
  }
}

function tail(path: string, lines: number): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** SIGTERM to the supervisor (which stops replicas and nats-server); cleans up orphans of a crashed one. */
export async function down(stateDir: string, output: Output): Promise<number> {
  const book = readAddressBook(stateDir);
  if (book === undefined) {
    output.err(`no cluster in ${stateDir} (no cluster.json); nothing to stop`);
    return 1;
  }
  const wasRunning = isSupervisorRunning(book);
  if (wasRunning) {
    const pid = book.supervisorPid!;
    process.kill(pid, 'SIGTERM');
    if (!(await waitUntilGone([pid], DOWN_WAIT_MS))) {
      output.err(`supervisor ${pid} did not stop within ${DOWN_WAIT_MS / 1000} s; killing it and its children`);
      process.kill(pid, 'SIGKILL');
    }
  }
  const leftovers = leftoverPids(readAddressBook(stateDir) ?? book);
  if (leftovers.length > 0) {
    output.err(`stopping ${leftovers.length} processes left by a supervisor that is gone: ${leftovers.join(', ')}`);
    for (const pid of leftovers) signal(pid, 'SIGTERM');
    if (!(await waitUntilGone(leftovers, 15_000))) for (const pid of leftovers) signal(pid, 'SIGKILL');
    const latest = readAddressBook(stateDir) ?? book;
    latest.supervisorPid = null;
    latest.natsPid = null;
    for (const entry of latest.replicas) entry.pid = null;
    writeAddressBook(stateDir, latest);
  }
  if (!wasRunning && leftovers.length === 0) {
    output.out(`cluster "${book.cluster}" in ${stateDir} was not running; nothing to stop`);
    return 0;
  }
  output.out(`cluster "${book.cluster}" stopped; data kept in ${stateDir}`);
  return 0;
}

function leftoverPids(book: AddressBook): number[] {
  const pids = [...book.replicas.map((entry) => entry.pid), book.natsManaged ? book.natsPid : null];
  return pids.filter((pid): pid is number => isProcessAlive(pid) && isOwnedChild(pid!));
}

/** Only signal processes that look like ours (a replica or nats-server), in case a pid was reused. */
function isOwnedChild(pid: number): boolean {
  try {
    const commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return commandLine.includes('replica') || commandLine.includes('nats-server');
  } catch {
    return false;
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}

async function waitUntilGone(pids: readonly number[], waitMs: number): Promise<boolean> {
  const deadlineAtMs = Date.now() + waitMs;
  while (Date.now() < deadlineAtMs) {
    if (pids.every((pid) => !isProcessAlive(pid))) return true;
    await sleep(200);
  }
  return pids.every((pid) => !isProcessAlive(pid));
}
