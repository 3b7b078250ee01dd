// A real nats-server with JetStream as a child process, for integration tests of leader
// discovery, replicas and the CLI. Readiness is the server's own INFO line on a TCP
// connection (with "jetstream":true), never a sleep.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { freeListeningPorts } from '../../node/util/listen-ports.js';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export interface NatsServerHandle {
  /** `nats://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  /** The pid of the current process, undefined while stopped. */
  readonly pid: number | undefined;
  /** SIGTERM (SIGKILL after a grace period), then removes the store dir. Idempotent. */
  stop(): Promise<void>;
  /** Sends `signal` (default SIGKILL) and resolves once the process has exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Stops the server if it runs, then starts it again on the same port and store dir. */
  restart(): Promise<void>;
  /** Starts the server again after kill(), same port and store dir. */
  start(): Promise<void>;
  /** The last lines nats-server printed, for failure messages. */
  logTail(): string;
}

export interface NatsServerOptions {
  /** Fixed port; by default a free loopback port. */
  port?: number;
  /** JetStream store dir; by default a new temporary dir (removed by stop()). */
  storeDir?: string;
  /** How long to wait for the server to accept connections. */
  readyTimeoutMs?: number;
  /** Extra command line arguments. */
  extraArgs?: readonly string[];
  /**
   * A config file (`-c`), say with TLS and users (node/discovery/nats-security.ts); the
   * command line's port, address and store dir still win over its listen and store_dir.
   */
  configFile?: string;
}

const readyTimeoutMsDefault = 30_000;
const stopGraceMs = 10_000;
const logLinesMax = 200;
const startAttemptsMax = 3;
const binaryCandidates = ['/usr/sbin/nats-server', '/usr/local/bin/nats-server', '/usr/bin/nats-server'];

/** A currently free TCP port on 127.0.0.1, below the ephemeral range (node/util/listen-ports.ts). */
export async function freePort(): Promise<number> {
  const [port] = await freeListeningPorts(1);
  return port!;
}

/**
 * The nats-server executable: $NATS_SERVER_BIN, then $PATH, then the usual install
 * locations (Debian puts it in /usr/sbin, which is not on every user's PATH).
 */
export function findNatsServer(
  env: NodeJS.ProcessEnv = process.env,
  fallbacks: readonly string[] = binaryCandidates,
): string {
  const fromEnv = env['NATS_SERVER_BIN'];
  const pathDirs = (env['PATH'] ?? '').split(delimiter).filter((d) => d !== '');
  const candidates = [...(fromEnv ? [fromEnv] : []), ...pathDirs.map((d) => join(d, 'nats-server')), ...fallbacks];
  for (const candidate of candidates) {
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // Not there; try the next one.
    }
  }
  throw new Error('nats-server not found: apt-get install nats-server (or set NATS_SERVER_BIN)');
}

// Every server started by this module, so that a test process that dies without
// calling stop() does not leave nats-server processes behind.
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of liveChildren) child.kill('SIGKILL');
  });
}

class NatsServerProcess implements NatsServerHandle {
  readonly url: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private readonly logLines: string[] = [];
  private stopped = false;

  constructor(
    readonly port: number,
    readonly storeDir: string,
    private readonly binary: string,
    private readonly ownsStoreDir: boolean,
    private readonly readyTimeoutMs: number,
    private readonly extraArgs: readonly string[],
  ) {
    this.url = `nats://127.0.0.1:${port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  logTail(): string {
    return this.logLines.slice(-40).join('\n');
  }

  async start(): Promise<void> {
    if (this.stopped) throw new Error('nats-server: start() after stop()');
    if (this.child !== undefined) return;
    const args = ['-js', '-sd', this.storeDir, '-a', '127.0.0.1', '-p', String(this.port), ...this.extraArgs];
    const child = spawn(this.binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    liveChildren.add(child);
    installExitHook();
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => this.appendLog(chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => this.appendLog(chunk));
    let spawnError: Error | undefined;
    this.exited = new Promise<void>((resolve) => {
      child.once('error', (error) => {
        spawnError = error;
        resolve();
      });
      child.once('exit', () => resolve());
    }).then(() => {
      liveChildren.delete(child);
      if (this.child === child) this.child = undefined;
    });
    const ready = await this.waitReady(() => spawnError !== undefined || this.child !== child);
    if (!ready) {
      const reason = spawnError ? `: ${spawnError.message}` : '';
      child.kill('SIGKILL');
      await this.exited;
      throw new Error(`nats-server on port ${this.port} did not become ready${reason}\n${this.logTail()}`);
    }
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    child.kill(signal);
    await this.exited;
  }

  async restart(): Promise<void> {
    await this.terminate();
    await this.start();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.terminate();
    if (this.ownsStoreDir) rmSync(this.storeDir, { recursive: true, force: true });
  }

  private async terminate(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), stopGraceMs);
    await this.exited;
    clearTimeout(timer);
  }

  private appendLog(chunk: string): void {
    for (const line of chunk.split('\n')) {
      if (line.trim() === '') continue;
      this.logLines.push(line);
    }
    if (this.logLines.length > logLinesMax) this.logLines.splice(0, this.logLines.length - logLinesMax);
  }

  /** Polls until the server sends an INFO line announcing JetStream, or gives up. */
  private async waitReady(failed: () => boolean): Promise<boolean> {
    const deadline = Date.now() + this.readyTimeoutMs;
    while (Date.now() < deadline) {
      if (failed()) return false;
      if (await probeInfo(this.port)) return true;
      await sleep(50);
    }
    return false;
  }
}

/** True once a TCP connection to the port yields `INFO {...}` with JetStream enabled. */
function probeInfo(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    let received = '';
    const socket = createConnection({ host: '127.0.0.1', port });
    const finish = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2_000, () => finish(false));
    socket.once('error', () => finish(false));
    socket.on('data', (data) => {
      received += data.toString('utf8');
      if (!received.includes('\r\n')) return;
      finish(received.startsWith('INFO ') && received.includes('"jetstream":true'));
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Starts `nats-server -js -sd <dir> -a 127.0.0.1 -p <port>` and resolves once it accepts
 * connections with JetStream. With no fixed port, a port lost to a race is retried with another.
 */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServerHandle> {
  const binary = findNatsServer();
  const ownsStoreDir = options.storeDir === undefined;
  const storeDir = options.storeDir ?? mkdtempSync(join(tmpdir(), 'shardbank-nats-'));
  const attempts = options.port === undefined ? startAttemptsMax : 1;
  let lastError: unknown;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const port = options.port ?? (await freePort());
    const server = new NatsServerProcess(
      port,
      storeDir,
      binary,
      ownsStoreDir,
      options.readyTimeoutMs ?? readyTimeoutMsDefault,
      [...(options.configFile === undefined ? [] : ['-c', options.configFile]), ...(options.extraArgs ?? [])],
    );
    try {
      await server.start();
      return server;
    } catch (error) {
      lastError = error;
    }
  }
  if (ownsStoreDir) rmSync(storeDir, { recursive: true, force: true });
  throw lastError;
}
