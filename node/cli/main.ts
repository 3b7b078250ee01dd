// `shardbank`: the command line of the local runtime and the client API (SPEC section 7).
import { readFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ShardbankClientError } from '../client/bank-client.js';
import { benchCommand } from './bench-command.js';
import { chaosCommand } from './chaos-command.js';
import { CliError, EXIT, processIo, reportError, UnavailableError, UsageError, type CliIo } from './cli-io.js';
import { balanceCommand, statusCommand, transferCommand } from './client-commands.js';
import { downCommand, upCommand } from './up-down-commands.js';

export const MAIN_HELP = `Usage: shardbank <command> [options]

A sharded, replicated bank ledger: Multi-Paxos shards, two-phase commit across shards.

Commands:
  up         start a local cluster (foreground with a live table, or --detach)
  down       stop the local cluster
  transfer   FROM TO AMOUNT: move money between two items (exactly once per request id)
  balance    ITEM...: read balances
  status     shards, leaders, ballots and replica roles (exit 5 when a shard is degraded)
  bench      closed-loop load and a latency/throughput report
  chaos      kill replicas (and nats-server) under load, then check the bank invariants
  help CMD   the options of CMD (the same as shardbank CMD --help)

  --version  the version of shardbank

Every command takes --help. Commands talk to the local cluster of --state-dir
(default .shardbank) unless given --endpoints and --cluster.
Exit codes: 0 done, 1 failed, 2 usage error, 3 cluster unreachable, 4 transfer
outcome unknown (retry with the same ids), 5 status degraded (docs/CLI.md).`;

type Command = (argv: readonly string[], io: CliIo) => Promise<number>;

export const COMMANDS: Record<string, Command> = {
  up: upCommand,
  down: downCommand,
  transfer: transferCommand,
  balance: balanceCommand,
  status: statusCommand,
  bench: benchCommand,
  chaos: chaosCommand,
};

/** The version in package.json (found upwards from this file: dist/node/cli or node/cli). */
export function shardbankVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth += 1) {
    try {
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (manifest.name === 'shardbank' && typeof manifest.version === 'string') return manifest.version;
    } catch {
      // not here: one level up
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

/** A client library error as the CLI reports it: unreachable, bad input or a failure. */
function clientError(error: ShardbankClientError): CliError {
  if (error.codeName === 'UNAVAILABLE' || error.codeName === 'DEADLINE_EXCEEDED')
    return new UnavailableError(`cannot reach the cluster: ${error.message}`);
  if (error.codeName === 'INVALID_ARGUMENT') return new UsageError(error.message);
  return new CliError(error.message, EXIT.failure);
}

export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const json = argv.includes('--json');
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-V' || name === 'version') {
    const version = shardbankVersion();
    io.out(json ? JSON.stringify({ version }) : `shardbank ${version}`);
    return EXIT.ok;
  }
  if (name === 'help' && rest[0] !== undefined && !rest[0].startsWith('-')) {
    if (COMMANDS[rest[0]] === undefined) {
      reportError(
        io,
        undefined,
        new UsageError(
          `help: unknown command ${JSON.stringify(rest[0])}; commands: ${Object.keys(COMMANDS).join(', ')}`,
        ),
        json,
      );
      return EXIT.usage;
    }
    return runCli([rest[0], '--help'], io);
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    if (name === undefined) {
      io.err(MAIN_HELP);
      return EXIT.usage;
    }
    io.out(MAIN_HELP);
    return EXIT.ok;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    reportError(
      io,
      undefined,
      new UsageError(
        `unknown command ${JSON.stringify(name)}; commands: ${Object.keys(COMMANDS).join(', ')} (see: shardbank --help)`,
      ),
      json,
    );
    return EXIT.usage;
  }
  try {
    return await command(rest, io);
  } catch (error) {
    if (error instanceof CliError) {
      reportError(io, name, error, json);
      return error.exitCode;
    }
    if (error instanceof ShardbankClientError) {
      const mapped = clientError(error);
      reportError(io, name, mapped, json);
      return mapped.exitCode;
    }
    if (json) {
      // An internal error: still one JSON line, with the stack for a bug report.
      reportError(
        io,
        name,
        new CliError(`internal error: ${(error as Error).stack ?? String(error)}`, EXIT.failure),
        true,
      );
      return EXIT.failure;
    }
    throw error;
  }
}

function isMain(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}

export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  const io = processIo();
  const code = await runCli(argv, io);
  process.exitCode = code;
  // Exit explicitly (a stray timer must not keep a finished command alive), but only once
  // stdout and stderr are out: process.exit() drops what a slow reader has not taken yet.
  await io.flushed();
  process.exit(code);
}

export function mainOrExit(): void {
  main().catch((error: unknown) => {
    process.stderr.write(`shardbank: error: ${(error as Error).stack ?? String(error)}\n`, () =>
      process.exit(EXIT.failure),
    );
  });
}

if (isMain()) mainOrExit();
