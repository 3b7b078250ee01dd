// `shardbank up` and `shardbank down`.
import { ManifestLoadError, loadManifest } from '../local/manifest.js';
import { down, resolveStateDir, upDetached, upForeground, upSupervise } from '../local/runtime.js';
import { LocalRuntimeError } from '../local/supervisor.js';
import { AddressBookError } from '../local/address-book.js';
import { EXIT, type CliIo } from './cli-io.js';
import { parseCommandArgs, parseDurationMs } from './args.js';

export const UP_HELP = `Usage: shardbank up [-f bankcluster.yaml] [--detach] [--state-dir DIR] [--nats URL]

Starts a local cluster: nats-server (from PATH, with JetStream, on a free loopback port,
unless --nats is given) and every replica as a supervised process with its own data dir
under DIR/data; logs go to DIR/logs. A replica that dies is restarted with its data.
Running 'up' again on the same state dir resumes from the data on disk.

Options:
  -f, --file FILE      BankCluster manifest (YAML or JSON); default: 3 shards x 3 replicas
  --detach             return once every shard has a leader; the cluster keeps running
  --state-dir DIR      data, logs and the address book (default .shardbank)
  --nats URL           use this NATS instead of starting nats-server
  --wait DURATION      with --detach: how long to wait for leaders (default 120s)
  --log-level LEVEL    replicas' log level (default info)
  -h, --help           this help

In the foreground a live table shows each shard's readiness, leader, ballot and commit
index; Ctrl-C stops everything cleanly.`;

export const DOWN_HELP = `Usage: shardbank down [--state-dir DIR]

Stops the local cluster of DIR (default .shardbank): replicas get SIGTERM (leaders hand
over, logs are flushed), then nats-server. The data stays; 'shardbank up' resumes it.`;

const UP_OPTIONS = {
  file: { type: 'string', short: 'f' },
  detach: { type: 'boolean', default: false },
  'state-dir': { type: 'string' },
  nats: { type: 'string' },
  wait: { type: 'string' },
  'log-level': { type: 'string' },
  supervise: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

function handleRuntimeError(error: unknown, io: CliIo): number {
  if (error instanceof ManifestLoadError || error instanceof LocalRuntimeError || error instanceof AddressBookError) {
    io.err(`shardbank up: ${error.message}`);
    return EXIT.failure;
  }
  throw error;
}

export async function upCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(argv, UP_OPTIONS, false);
  if (values.help) {
    io.out(UP_HELP);
    return EXIT.ok;
  }
  if (values.nats !== undefined && !/^(nats|tls):\/\//.test(values.nats)) {
    io.err(`shardbank up: --nats: must be a nats:// or tls:// URL, got ${JSON.stringify(values.nats)}`);
    return EXIT.usage;
  }
  const waitMs = values.wait === undefined ? undefined : parseDurationMs('wait', values.wait);
  try {
    const options = {
      stateDir: resolveStateDir(values['state-dir']),
      manifest: loadManifest(values.file),
      ...(values.nats ? { natsUrl: values.nats } : {}),
      ...(waitMs ? { waitMs } : {}),
      ...(values['log-level'] ? { logLevel: values['log-level'] } : {}),
    };
    const output = { out: io.out, err: io.err };
    if (values.supervise) return await upSupervise(options, output);
    if (values.detach) return await upDetached(options, output);
    return await upForeground(options, output);
  } catch (error) {
    return handleRuntimeError(error, io);
  }
}

export async function downCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(argv, { 'state-dir': { type: 'string' }, help: { type: 'boolean', short: 'h', default: false } }, false);
  if (values.help) {
    io.out(DOWN_HELP);
    return EXIT.ok;
  }
  try {
    return await down(resolveStateDir(values['state-dir']), { out: io.out, err: io.err });
  } catch (error) {
    return handleRuntimeError(error, io);
  }
}
