// `shardbank`: the command line of the local runtime and the client API (SPEC section 7).
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { ShardbankClientError } from '../client/bank-client.js';
import { benchCommand } from './bench-command.js';
import { chaosCommand } from './chaos-command.js';
import { EXIT, processIo, UsageError, type CliIo } from './cli-io.js';
import { balanceCommand, statusCommand, transferCommand } from './client-commands.js';
import { downCommand, upCommand } from './up-down-commands.js';

export const MAIN_HELP = `Usage: shardbank <command> [options]

A sharded, replicated bank ledger: Multi-Paxos shards, two-phase commit across shards.

Commands:
  up         start a local cluster (foreground with a live table, or --detach)
  down       stop the local cluster
  transfer   FROM TO AMOUNT: move money between two items (exactly once per request id)
  balance    ITEM...: read balances
  status     shards, leaders, ballots and replica roles
  bench      closed-loop load and a latency/throughput report
  chaos      kill replicas (and nats-server) under load, then check the bank invariants

Every command takes --help. Commands talk to the local cluster of --state-dir
(default .shardbank) unless given --endpoints and --cluster.`;

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

export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.out(MAIN_HELP);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    io.err(`shardbank: unknown command ${JSON.stringify(name)}\n\n${MAIN_HELP}`);
    return EXIT.usage;
  }
  try {
    return await command(rest, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`shardbank ${name}: ${error.message}\n(see: shardbank ${name} --help)`);
      return EXIT.usage;
    }
    if (error instanceof ShardbankClientError) {
      io.err(`shardbank ${name}: ${error.message}`);
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
  const code = await runCli(argv, processIo());
  // Long-lived handles (gRPC channels, NATS) are closed by the commands; exit explicitly so a
  // stray timer never keeps a finished command alive.
  process.exitCode = code;
  setImmediate(() => process.exit(code));
}

export function mainOrExit(): void {
  main().catch((error: unknown) => {
    process.stderr.write(`shardbank: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(EXIT.failure);
  });
}

if (isMain()) mainOrExit();
