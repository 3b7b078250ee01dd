// `shardbank up` and `shardbank down`.
import { ManifestLoadError, loadManifest } from '../local/manifest.js';
import { down, resizeIfRunning, resolveStateDir, upDetached, upForeground, upSupervise } from '../local/runtime.js';
import { LocalRuntimeError } from '../local/supervisor.js';
import { AddressBookError } from '../local/address-book.js';
import { CliError, EXIT, UsageError, warn, type CliIo } from './cli-io.js';
import { parseCommandArgs, parseDurationMs } from './args.js';

export const UP_HELP = `Usage: shardbank up [-f bankcluster.yaml] [--detach] [--state-dir DIR] [--nats-url URL] [--insecure]

Starts a local cluster: nats-server (from PATH, with JetStream, on a free loopback port,
with TLS and the users replica and watcher, whose files are in DIR/certs and DIR/nats-auth;
unless --nats-url is given) and every replica as a supervised process with its own data dir
under DIR/data; logs go to DIR/logs. A replica that dies is restarted with its data.
Running 'up' again on the same state dir resumes from the data on disk.
On a running cluster, 'up -f' with another spec.replicasPerShard (odd; 1 for development
only) changes every shard's membership online, one step at a time, printing each step with
its duration: grow starts the next slot's replica, adds it as a learner, waits until it is
caught up and promotes it; shrink demotes and removes the highest slot's member (its leader
hands over first), then stops its process. Rerun it to continue a change that stopped.

Clients and replicas talk TLS: the first start makes a CA and certificates in DIR/certs
(one per replica, and client-admin for the CLI, which every command then uses);
--insecure runs plaintext without authentication instead ('status' says INSECURE).

Options:
  -f, --file FILE      BankCluster manifest (YAML or JSON); default: 3 shards x 3 replicas
  --detach             return once every shard has a leader; the cluster keeps running
  --state-dir DIR      data, logs and the address book (default .shardbank)
  --nats-url URL       use this NATS instead of starting nats-server (--nats URL: deprecated)
  --wait DURATION      with --detach: how long to wait for leaders (default 120s)
  --log-level LEVEL    replicas' log level (default info)
  --insecure           plaintext gRPC and peers, no client authentication (default: TLS)
  --json               errors as one JSON line on stderr
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
  'nats-url': { type: 'string' },
  /** Deprecated spelling of --nats-url (warns). */
  nats: { type: 'string' },
  wait: { type: 'string' },
  'log-level': { type: 'string' },
  insecure: { type: 'boolean', default: false },
  supervise: { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/** A bad manifest is bad input (exit 2); a runtime that cannot start or stop is a failure. */
function runtimeError(error: unknown): unknown {
  if (error instanceof ManifestLoadError) return new CliError(error.message, EXIT.usage, error.field);
  if (error instanceof LocalRuntimeError || error instanceof AddressBookError)
    return new CliError(error.message, EXIT.failure);
  return error;
}

export async function upCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(argv, UP_OPTIONS, false);
  if (values.help) {
    io.out(UP_HELP);
    return EXIT.ok;
  }
  if (values.nats !== undefined) {
    warn(io, 'up', '--nats URL is deprecated: use --nats-url URL (the spelling of every other command)', values.json);
    if (values['nats-url'] !== undefined)
      throw new UsageError('--nats-url: given twice (also as the deprecated --nats)');
  }
  const natsUrl = values['nats-url'] ?? values.nats;
  const natsFlag = values['nats-url'] !== undefined ? 'nats-url' : 'nats';
  if (natsUrl !== undefined && !/^(nats|tls):\/\//.test(natsUrl)) {
    throw new UsageError(`--${natsFlag}: must be a nats:// or tls:// URL, got ${JSON.stringify(natsUrl)}`);
  }
  const waitMs = values.wait === undefined ? undefined : parseDurationMs('wait', values.wait);
  try {
    const options = {
      stateDir: resolveStateDir(values['state-dir']),
      manifest: loadManifest(values.file),
      ...(natsUrl ? { natsUrl } : {}),
      ...(waitMs ? { waitMs } : {}),
      ...(values['log-level'] ? { logLevel: values['log-level'] } : {}),
      ...(values.insecure ? { insecure: true } : {}),
    };
    const output = { out: io.out, err: io.err };
    if (values.supervise) return await upSupervise(options, output);
    const resized = await resizeIfRunning(options, output);
    if (resized !== undefined) return resized;
    if (values.detach) return await upDetached(options, output);
    return await upForeground(options, output);
  } catch (error) {
    throw runtimeError(error);
  }
}

export async function downCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(
    argv,
    {
      'state-dir': { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    false,
  );
  if (values.help) {
    io.out(DOWN_HELP);
    return EXIT.ok;
  }
  try {
    return await down(resolveStateDir(values['state-dir']), { out: io.out, err: io.err });
  } catch (error) {
    throw runtimeError(error);
  }
}
