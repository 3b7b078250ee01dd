// One child process kept alive the way a StatefulSet keeps a pod: when it dies it is
// started again (same arguments, same data) after a backoff that grows while it keeps
// crashing and resets once it has run for a while. stop() sends SIGTERM, then SIGKILL.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, renameSync, statSync } from 'node:fs';
import { assert } from '../util/assert.js';

export const RESTART_DELAY_MS_MIN = 250;
export const RESTART_DELAY_MS_MAX = 8_000;
export const STABLE_RUN_MS = 20_000;
export const STOP_GRACE_MS_DEFAULT = 15_000;
/** A log file above this size is moved to `<file>.1` (replacing the previous one) at the next start. */
export const LOG_FILE_BYTES_MAX = 64 * 1024 * 1024;

function rotateLogIfLarge(path: string): void {
  try {
    if (statSync(path).size > LOG_FILE_BYTES_MAX) renameSync(path, `${path}.1`);
  } catch {
    // No log yet.
  }
}

export interface ProcessSpec {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly logFile: string;
  readonly env?: NodeJS.ProcessEnv;
}

export interface ProcessEvents {
  onStart?(pid: number): void;
  onExit?(code: number | null, signal: NodeJS.Signals | null, willRestart: boolean): void;
  onSpawnError?(error: NodeJS.ErrnoException): void;
}

type State = 'idle' | 'running' | 'waiting' | 'stopping' | 'stopped';

export class SupervisedProcess {
  private child: ChildProcess | undefined;
  private state: State = 'idle';
  private restartTimer: NodeJS.Timeout | undefined;
  private restartDelayMs = RESTART_DELAY_MS_MIN;
  private startedAtMs = 0;
  restarts = 0;

  constructor(
    readonly spec: ProcessSpec,
    private readonly events: ProcessEvents = {},
  ) {}

  get pid(): number | null {
    return this.state === 'running' ? (this.child?.pid ?? null) : null;
  }

  start(): void {
    this.transition(['idle', 'waiting'], 'running');
    rotateLogIfLarge(this.spec.logFile);
    const logFd = openSync(this.spec.logFile, 'a');
    let child: ChildProcess;
    try {
      // Its own process group: Ctrl-C or a terminal hang-up reaches the supervisor only,
      // which then stops the children in order (replicas hand leadership over first).
      child = spawn(this.spec.command, [...this.spec.args], {
        stdio: ['ignore', logFd, logFd],
        env: this.spec.env ?? process.env,
        detached: true,
      });
    } finally {
      closeSync(logFd);
    }
    this.child = child;
    this.startedAtMs = Date.now();
    child.once('error', (error: NodeJS.ErrnoException) => {
      if (child.pid === undefined) this.handleExit(child, null, null, error);
    });
    child.once('spawn', () => this.events.onStart?.(child.pid!));
    child.once('exit', (code, signal) => this.handleExit(child, code, signal, undefined));
  }

  private handleExit(
    child: ChildProcess,
    code: number | null,
    signal: NodeJS.Signals | null,
    error: NodeJS.ErrnoException | undefined,
  ): void {
    if (child !== this.child) return;
    this.child = undefined;
    if (error) this.events.onSpawnError?.(error);
    if (this.state === 'stopping' || this.state === 'stopped') {
      this.state = 'stopped';
      this.events.onExit?.(code, signal, false);
      return;
    }
    this.state = 'waiting';
    if (Date.now() - this.startedAtMs >= STABLE_RUN_MS) this.restartDelayMs = RESTART_DELAY_MS_MIN;
    const delayMs = this.restartDelayMs;
    this.restartDelayMs = Math.min(RESTART_DELAY_MS_MAX, this.restartDelayMs * 2);
    this.events.onExit?.(code, signal, true);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.state !== 'waiting') return;
      this.restarts += 1;
      this.start();
    }, delayMs);
  }

  /** SIGTERM, then SIGKILL after the grace period; resolves once the process is gone. */
  async stop(graceMs = STOP_GRACE_MS_DEFAULT): Promise<void> {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const child = this.child;
    if (this.state !== 'running' || child === undefined) {
      this.state = 'stopped';
      return;
    }
    this.state = 'stopping';
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  private transition(from: readonly State[], to: State): void {
    assert(from.includes(this.state), `${this.spec.name}: cannot go from ${this.state} to ${to}`);
    this.state = to;
  }
}
