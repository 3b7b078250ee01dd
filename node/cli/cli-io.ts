// What a command needs from the outside world, injected so tests can run commands in
// process and capture their output; the exit codes and the error shape (docs/CLI.md).
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  readonly stdoutIsTTY: boolean;
  readonly stderrIsTTY: boolean;
  /** Raw stderr for progress bars (carriage returns). */
  progress(text: string): void;
}

/** The process's CliIo, and `flushed()`: resolves once everything written has left the process. */
export function processIo(): CliIo & { flushed(): Promise<void> } {
  // `shardbank status | head` closes the pipe early: that is the reader's choice, not an error.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(0);
      throw error;
    });
  }
  // A pipe is written asynchronously: a write's callback runs once its bytes are in the pipe,
  // and writes complete in order, so the last write's callback means all of them are out.
  let lastOut: Promise<void> = Promise.resolve();
  let lastErr: Promise<void> = Promise.resolve();
  const write = (stream: NodeJS.WriteStream, text: string) =>
    new Promise<void>((resolve) => stream.write(text, () => resolve()));
  return {
    out: (text) => void (lastOut = write(process.stdout, `${text}\n`)),
    err: (text) => void (lastErr = write(process.stderr, `${text}\n`)),
    stdoutIsTTY: process.stdout.isTTY === true,
    stderrIsTTY: process.stderr.isTTY === true,
    progress: (text) => void (lastErr = write(process.stderr, text)),
    flushed: async () => {
      await Promise.all([lastOut, lastErr]);
    },
  };
}

/**
 * Exit codes (docs/CLI.md has the table). A script can tell a bad command line from a cluster
 * it cannot reach, a transfer whose outcome is unknown (retry it with the same ids) and a
 * cluster that answers but is degraded.
 */
export const EXIT = {
  /** Done: a definite answer (transfer COMMITTED or INSUFFICIENT_FUNDS), a healthy status. */
  ok: 0,
  /** A definite failure: refused, ABORTED, an invariant violated, nothing completed. */
  failure: 1,
  /** Bad command line, argument or manifest: nothing was sent. */
  usage: 2,
  /** The cluster could not be reached (not running, no replica answered in time). */
  unavailable: 3,
  /** transfer: no definite answer before the deadline; retry with the same ids. */
  unknown: 4,
  /** status: some shard has no leader or has lost its quorum. */
  degraded: 5,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export const ERROR_CODES = {
  [EXIT.failure]: 'failed',
  [EXIT.usage]: 'usage',
  [EXIT.unavailable]: 'unavailable',
  [EXIT.unknown]: 'unknown',
  [EXIT.degraded]: 'degraded',
} as const;

/** An error a command reports with an exit code; `field` names the bad option or argument. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: Exclude<ExitCode, 0>,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** A wrong command line or argument: exit code 2. */
export class UsageError extends CliError {
  override name = 'UsageError';
  constructor(message: string, field?: string) {
    super(message, EXIT.usage, field ?? fieldOf(message));
  }
}

/** The cluster cannot be reached: exit code 3. */
export class UnavailableError extends CliError {
  override name = 'UnavailableError';
  constructor(message: string) {
    super(message, EXIT.unavailable);
  }
}

const FIELD_PREFIX = /^(--[a-z][a-z0-9-]*|[a-z][A-Za-z0-9_.]*(?:\[[0-9]+\])?): /;

/** `--timeout: ...` or `amount: ...` name their field first. */
export function fieldOf(message: string): string | undefined {
  return FIELD_PREFIX.exec(message)?.[1];
}

/**
 * The one shape of an error, on stderr: `shardbank CMD: error: MESSAGE` (plus a pointer to
 * --help for usage errors), or with --json one line `{"error": {...}}`.
 */
export function reportError(io: CliIo, command: string | undefined, error: CliError, json: boolean): void {
  const prefix = command === undefined ? 'shardbank' : `shardbank ${command}`;
  if (json) {
    io.err(
      JSON.stringify({
        error: {
          code: ERROR_CODES[error.exitCode],
          exitCode: error.exitCode,
          ...(command !== undefined ? { command } : {}),
          ...(error.field !== undefined ? { field: error.field } : {}),
          message: error.message,
        },
      }),
    );
    return;
  }
  const hint = error.exitCode === EXIT.usage ? `\n(see: ${prefix} --help)` : '';
  io.err(`${prefix}: error: ${error.message}${hint}`);
}

/** A warning on stderr (deprecated spellings); JSON with --json. */
export function warn(io: CliIo, command: string, message: string, json: boolean): void {
  if (json) io.err(JSON.stringify({ warning: { command, message } }));
  else io.err(`shardbank ${command}: warning: ${message}`);
}
