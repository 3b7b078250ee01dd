// Shared argument handling: durations, numbers, and where a command's cluster is (the local
// address book by default, or --endpoints/--cluster).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Topology } from '../cluster/topology.js';
import { discoverCluster } from '../client/discover.js';
import { EndpointsError, isHostPort, parseEndpoints } from '../client/endpoints.js';
import type { ShardbankClientOptions } from '../client/bank-client.js';
import { ClientTlsError, loadClientTls, type ClientTlsFiles } from '../client/tls.js';
import { AddressBookError, isSupervisorRunning, readAddressBook, type AddressBook } from '../local/address-book.js';
import { clientOptionsFromBook, localClientTls } from '../local/cluster-client.js';
import { natsSecurityProblem, type NatsSecurity } from '../discovery/nats-security.js';
import { resolveStateDir } from '../local/runtime.js';
import { CliError, EXIT, UnavailableError, UsageError } from './cli-io.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/** Options every client command accepts: where the cluster is, and JSON output. */
export const TARGET_OPTIONS = {
  'state-dir': { type: 'string' },
  endpoints: { type: 'string' },
  cluster: { type: 'string' },
  'items-per-shard': { type: 'string' },
  'initial-balance': { type: 'string' },
  'nats-url': { type: 'string' },
  'nats-ca': { type: 'string' },
  'nats-creds': { type: 'string' },
  namespace: { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies OptionSpec;

/** --ca, --cert, --key: TLS with a client certificate (docs/SECURITY.md). */
export const TLS_OPTIONS = {
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
} as const satisfies OptionSpec;

export const TARGET_HELP = `Cluster selection (default: the local cluster of --state-dir):
  --state-dir DIR         local state dir (default .shardbank, or $SHARDBANK_STATE_DIR)
  --endpoints LIST        a remote cluster: one h:p of any replica (or of a Service in front
                          of them: the rest is learned from its ClusterStatus), or every
                          replica, h:p,h:p;h:p,h:p (shards by ';', replicas by ',')
  --cluster NAME          its name (required with --endpoints)
  --items-per-shard N     its items per shard (with a full list; default 3000)
  --initial-balance N     its initial balance per item (default 10)
  --nats-url URL          its NATS, for leader discovery (optional)
  --nats-ca FILE          the CA of its NATS server's certificate: NATS over TLS
  --nats-creds FILE       NATS user and password (JSON {"user","password"}; the watcher user)
  --namespace NS          its namespace in NATS keys (default "default")

TLS (a local cluster started with TLS is found and used without these):
  --ca FILE               the cluster CA to verify replicas with
  --cert FILE             this client's certificate (its identity and role)
  --key FILE              its private key`;

const NEGATIVE_NUMBER = /^-[0-9]/;
const NEGATIVE_MARK = '\u0000';

/**
 * parseArgs in strict mode; a negative number (`transfer 1 2 -1`) stays a positional so that
 * the command can say what is wrong with it, instead of "unknown option -1".
 */
export function parseCommandArgs<T extends OptionSpec>(argv: readonly string[], options: T, allowPositionals: boolean) {
  const args = allowPositionals
    ? argv.map((arg) => (NEGATIVE_NUMBER.test(arg) ? NEGATIVE_MARK + arg : arg))
    : [...argv];
  try {
    const parsed = parseArgs({ args, options, allowPositionals, strict: true });
    const unmark = (arg: string) => (arg.startsWith(NEGATIVE_MARK) ? arg.slice(1) : arg);
    for (const [key, value] of Object.entries(parsed.values)) {
      if (typeof value === 'string') (parsed.values as Record<string, unknown>)[key] = unmark(value);
    }
    return { ...parsed, positionals: parsed.positionals.map(unmark) };
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

const DURATION_PATTERN = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?$/;
const DURATION_UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** `10s`, `500ms`, `2m`, `1.5s`, or a bare number of seconds; zero only where `allowZero`. */
export function parseDurationMs(option: string, text: string, { allowZero = false } = {}): number {
  const match = DURATION_PATTERN.exec(text.trim());
  if (match === null)
    throw new UsageError(`--${option}: expected a duration such as 10s, 500ms or 2m, got ${JSON.stringify(text)}`);
  const unit = (match[2] ?? 's') as keyof typeof DURATION_UNIT_MS;
  const ms = Math.round(Number(match[1]) * DURATION_UNIT_MS[unit]);
  if (ms < 0 || (ms === 0 && !allowZero))
    throw new UsageError(`--${option}: must be more than zero, got ${JSON.stringify(text)}`);
  return ms;
}

export function parseIntegerOption(
  option: string,
  text: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (text === undefined) return fallback;
  const value = /^-?[0-9]+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`--${option}: expected an integer from ${min} to ${max}, got ${JSON.stringify(text)}`);
  }
  return value;
}

export function parseNumberOption(
  option: string,
  text: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (text === undefined) return fallback;
  const value = text.trim() === '' ? Number.NaN : Number(text);
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new UsageError(`--${option}: expected a number from ${min} to ${max}, got ${JSON.stringify(text)}`);
  }
  return value;
}

export interface TargetValues {
  'state-dir'?: string;
  endpoints?: string;
  cluster?: string;
  'items-per-shard'?: string;
  'initial-balance'?: string;
  'nats-url'?: string;
  'nats-ca'?: string;
  'nats-creds'?: string;
  namespace?: string;
  ca?: string;
  cert?: string;
  key?: string;
}

/**
 * The TLS files --ca, --cert and --key name (all three or none), checked readable; undefined
 * without them.
 */
export function tlsFromFlags(values: { ca?: string; cert?: string; key?: string }): ClientTlsFiles | undefined {
  const given = (['ca', 'cert', 'key'] as const).filter((flag) => values[flag] !== undefined);
  if (given.length === 0) return undefined;
  if (given.length < 3) {
    const missing = (['ca', 'cert', 'key'] as const).filter((flag) => values[flag] === undefined);
    throw new UsageError(
      `TLS needs --ca, --cert and --key; missing ${missing.map((flag) => `--${flag}`).join(', ')}`,
      `--${missing[0]}`,
    );
  }
  const files = { ca: values.ca!, cert: values.cert!, key: values.key! };
  checkTlsFiles(files);
  return files;
}

/** Reads the files once, so that a missing one is bad input naming its flag, not a failed call. */
export function checkTlsFiles(files: ClientTlsFiles): void {
  try {
    loadClientTls(files);
  } catch (error) {
    if (error instanceof ClientTlsError) throw new UsageError(error.message, error.message.split(' ')[0]);
    throw error;
  }
}

export interface Target {
  readonly options: ShardbankClientOptions;
  /** Present for a local cluster. */
  readonly book: AddressBook | undefined;
  readonly stateDir: string | undefined;
  readonly running: boolean;
}

/**
 * `--endpoints h:p`: one replica (or a Service), from which ClusterStatus gives the topology
 * and every replica's address.
 */
export async function discoveredTarget(values: TargetValues): Promise<Target> {
  if (values.cluster === undefined)
    throw new UsageError('--endpoints needs --cluster NAME (requests name the cluster they are meant for)');
  const address = values.endpoints!.trim();
  const tls = tlsFromFlags(values);
  const found = await discoverCluster(address, values.cluster, undefined, tls);
  if (!found.ok) {
    const { codeName, details } = found.error;
    if (codeName === 'UNAVAILABLE' || codeName === 'DEADLINE_EXCEEDED')
      throw new UnavailableError(`cannot reach the cluster: --endpoints ${address}: ${codeName}: ${details}`);
    if (codeName === 'FAILED_PRECONDITION' || codeName === 'INVALID_ARGUMENT')
      throw new UsageError(`--cluster: ${address} says: ${details}`, '--cluster');
    throw new CliError(`--endpoints ${address}: cannot learn the topology: ${codeName}: ${details}`, EXIT.failure);
  }
  const { topology, endpoints } = found.value;
  if (
    values['items-per-shard'] !== undefined &&
    parseIntegerOption('items-per-shard', values['items-per-shard'], 0, 1, 1_000_000) !== topology.itemsPerShard
  ) {
    throw new UsageError(
      `--items-per-shard: ${values['items-per-shard']}, but the cluster at ${address} has ${topology.itemsPerShard} items per shard`,
    );
  }
  return {
    options: {
      cluster: values.cluster,
      topology: {
        ...topology,
        initialBalance: parseIntegerOption(
          'initial-balance',
          values['initial-balance'],
          10,
          0,
          Number.MAX_SAFE_INTEGER,
        ),
      },
      endpoints,
      namespace: values.namespace ?? 'default',
      ...(values['nats-url'] ? { natsUrl: values['nats-url'] } : {}),
      ...(tls ? { tls } : {}),
      ...natsSecurityFromValues(values),
    },
    book: undefined,
    stateDir: undefined,
    running: true,
  };
}

/**
 * `--nats-ca` and `--nats-creds` (which win over what a local address book records), checked
 * now so that a wrong path is a usage error naming the flag, not a silent NATS outage.
 */
export function natsSecurityFromValues(
  values: TargetValues,
  recorded: NatsSecurity | undefined = undefined,
): { natsSecurity?: NatsSecurity } {
  const caFile = values['nats-ca'] ?? recorded?.caFile;
  const credentialsFile = values['nats-creds'] ?? recorded?.credentialsFile;
  if (caFile === undefined && credentialsFile === undefined) return {};
  const natsSecurity: NatsSecurity = {
    ...(caFile !== undefined ? { caFile } : {}),
    ...(credentialsFile !== undefined ? { credentialsFile } : {}),
  };
  const problem = natsSecurityProblem(natsSecurity, { caFile: '--nats-ca', credentialsFile: '--nats-creds' });
  if (problem !== undefined) throw new UsageError(problem);
  return { natsSecurity };
}

/** A single host:port: learn the rest from it. */
export function isSingleEndpoint(text: string): boolean {
  return isHostPort(text.trim());
}

export function endpointsTarget(values: TargetValues): Target {
  if (values.cluster === undefined)
    throw new UsageError('--endpoints needs --cluster NAME (requests name the cluster they are meant for)');
  let endpoints: string[][];
  try {
    endpoints = parseEndpoints(values.endpoints!);
  } catch (error) {
    if (error instanceof EndpointsError) throw new UsageError(error.message);
    throw error;
  }
  const topology: Topology = {
    shards: endpoints.length,
    replicasPerShard: endpoints[0]!.length,
    itemsPerShard: parseIntegerOption('items-per-shard', values['items-per-shard'], 3000, 1, 1_000_000),
    initialBalance: parseIntegerOption('initial-balance', values['initial-balance'], 10, 0, Number.MAX_SAFE_INTEGER),
  };
  const tls = tlsFromFlags(values);
  return {
    options: {
      cluster: values.cluster,
      topology,
      endpoints,
      namespace: values.namespace ?? 'default',
      ...(values['nats-url'] ? { natsUrl: values['nats-url'] } : {}),
      ...(tls ? { tls } : {}),
      ...natsSecurityFromValues(values),
    },
    book: undefined,
    stateDir: undefined,
    running: true,
  };
}

/** The cluster a command talks to; `requireRunning` refuses a local cluster that is not up. */
export async function resolveTarget(values: TargetValues, requireRunning: boolean): Promise<Target> {
  if (values.endpoints !== undefined)
    return isSingleEndpoint(values.endpoints) ? discoveredTarget(values) : endpointsTarget(values);
  const stateDir = resolveStateDir(values['state-dir']);
  let book: AddressBook | undefined;
  try {
    book = readAddressBook(stateDir);
  } catch (error) {
    if (error instanceof AddressBookError) throw new CliError(error.message, EXIT.failure);
    throw error;
  }
  if (book === undefined) {
    throw new UnavailableError(
      `cannot reach the cluster: no local cluster in ${stateDir}: start one with 'shardbank up --detach', or point at one with --endpoints and --cluster`,
    );
  }
  const running = isSupervisorRunning(book);
  if (requireRunning && !running) {
    throw new UnavailableError(
      `cannot reach the cluster: the local cluster in ${stateDir} is not running: start it with 'shardbank up --detach --state-dir ${stateDir}'`,
    );
  }
  // The cluster's mode is the address book's; --ca/--cert/--key choose other files.
  const tls = tlsFromFlags(values);
  const fromBook = clientOptionsFromBook(book);
  const options = { ...fromBook, ...natsSecurityFromValues(values, fromBook.natsSecurity) };
  if (tls) return { options: { ...options, tls }, book, stateDir, running };
  if (options.tls) checkTlsFiles(localClientTls(book.stateDir));
  return { options, book, stateDir, running };
}
