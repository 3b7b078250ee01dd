// NATS security for leader discovery (docs/SECURITY.md, "NATS"): the credentials files the
// announcer and the watchers connect with, and the nats-server side of the same design, the
// two users' permissions and a server config with TLS, so that the local runtime and the
// operator give nats-server exactly the rules the tests check.
//
// Two roles: `replica` may publish the cluster's leader subjects and write its keys of the
// leader bucket (and create the bucket); `watcher` may only subscribe and read. A permission
// list is the complete list of what nats.js 3.x sends for LeaderAnnouncer and LeaderWatcher:
// anything not on it is refused by nats-server.
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { assert } from '../util/assert.js';
import { isValidNameToken, keyWildcardFor, leaderBucketName, subjectWildcardFor } from './leader-record.js';

/** How a component connects to a secured NATS; both fields optional (plaintext, no user when empty). */
export interface NatsSecurity {
  /** PEM CA that signed nats-server's certificate: turns TLS on, the server must prove it. */
  readonly caFile?: string;
  /** A credentials file (natsCredentialsFormat): user and password, read on every (re)connect. */
  readonly credentialsFile?: string;
}

export interface NatsCredentials {
  readonly user: string;
  readonly password: string;
  /**
   * The prefix of this user's reply subjects (nats.js `inboxPrefix`), so that its permission
   * to subscribe covers its own replies only, not every `_INBOX.>`. Default `_INBOX`.
   */
  readonly inboxPrefix?: string;
}

export const natsCredentialsFormat =
  'a JSON object {"user": "...", "password": "...", "inboxPrefix": "..." (optional)}';

export class NatsCredentialsError extends Error {
  override name = 'NatsCredentialsError';
}

export const NatsRole = { replica: 'replica', watcher: 'watcher' } as const;
export type NatsRole = (typeof NatsRole)[keyof typeof NatsRole];

const passwordBytes = 24;
const credentialsBytesMax = 4096;
const subjectTokenPattern = /^[A-Za-z0-9_-]+$/;

/** Parses a credentials file's text; the error names `file` and the field that is wrong. */
export function parseNatsCredentials(text: string, file: string): NatsCredentials {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new NatsCredentialsError(
      `${file}: not JSON (${(error as Error).message}); expected ${natsCredentialsFormat}`,
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new NatsCredentialsError(`${file}: expected ${natsCredentialsFormat}`);
  }
  const { user, password, inboxPrefix } = parsed as Record<string, unknown>;
  if (typeof user !== 'string' || !subjectTokenPattern.test(user)) {
    throw new NatsCredentialsError(`${file}: "user" must be a non-empty string of letters, digits, '-' or '_'`);
  }
  if (typeof password !== 'string' || password.length === 0) {
    throw new NatsCredentialsError(`${file}: "password" must be a non-empty string`);
  }
  if (inboxPrefix !== undefined && (typeof inboxPrefix !== 'string' || !subjectTokenPattern.test(inboxPrefix))) {
    throw new NatsCredentialsError(`${file}: "inboxPrefix" must be one subject token (letters, digits, '-', '_')`);
  }
  return inboxPrefix === undefined ? { user, password } : { user, password, inboxPrefix };
}

/** Reads and parses a credentials file; the error names the file and what is wrong with it. */
export function readNatsCredentials(file: string): NatsCredentials {
  let text: string;
  try {
    const size = statSync(file).size;
    if (size > credentialsBytesMax) throw new Error(`larger than ${credentialsBytesMax} bytes`);
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if (error instanceof NatsCredentialsError) throw error;
    throw new NatsCredentialsError(`${file}: cannot read the NATS credentials (${(error as Error).message})`);
  }
  return parseNatsCredentials(text, file);
}

/** Undefined, or why the file's mode is too open for a secret (group or others may read it). */
export function credentialsModeProblem(file: string): string | undefined {
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) === 0) return undefined;
  return `${file} has mode 0${mode.toString(8)}: a NATS password should be readable by its owner only (chmod 600)`;
}

/**
 * Undefined if both files of `security` are usable now, else why not, naming the file by
 * `names` (the flags the caller took them from, say `--nats-ca`). Checked at start so that a
 * wrong path fails fast instead of as endless reconnects.
 */
export function natsSecurityProblem(
  security: NatsSecurity,
  names: { readonly caFile: string; readonly credentialsFile: string },
): string | undefined {
  if (security.caFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(security.caFile, 'utf8');
    } catch (error) {
      return `${names.caFile} ${security.caFile}: cannot read it (${(error as Error).message})`;
    }
    if (!text.includes('-----BEGIN CERTIFICATE-----')) {
      return `${names.caFile} ${security.caFile}: not a PEM certificate (the CA that signed nats-server's certificate)`;
    }
  }
  if (security.credentialsFile !== undefined) {
    try {
      readNatsCredentials(security.credentialsFile);
    } catch (error) {
      return `${names.credentialsFile} ${(error as Error).message}`;
    }
  }
  return undefined;
}

/** The inbox prefix a generated credentials file gives `user`. */
export function inboxPrefixFor(user: string): string {
  return `_INBOX_${user}`;
}

/** New credentials for `user` with a random password. */
export function generateNatsCredentials(user: string): NatsCredentials {
  assert(subjectTokenPattern.test(user), `nats user name ${JSON.stringify(user)} must be one subject token`);
  return { user, password: randomBytes(passwordBytes).toString('base64url'), inboxPrefix: inboxPrefixFor(user) };
}

/**
 * The credentials in `file`, written first (mode 0600, O_EXCL: the password never exists with
 * wider permissions, an existing file is never replaced) when there is none.
 */
export function ensureNatsCredentials(file: string, user: string): NatsCredentials {
  try {
    writeFileSync(file, `${JSON.stringify(generateNatsCredentials(user), null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const credentials = readNatsCredentials(file);
  if (credentials.user !== user) {
    throw new NatsCredentialsError(`${file}: holds user "${credentials.user}", expected "${user}"`);
  }
  return credentials;
}

export interface NatsPermissions {
  readonly publish: readonly string[];
  readonly subscribe: readonly string[];
}

/**
 * What each role may publish and subscribe to for one cluster (allow lists: everything else is
 * refused). The JetStream API subjects are those nats.js 3.x uses for the leader bucket:
 * account and stream info, the last message of a key (allow_direct is off), and the ordered
 * push consumers of kv.keys()/kv.watch(): create (with the filter in the subject, so a watcher
 * can only create consumers on its cluster's keys), info, delete and flow-control replies.
 */
export function leaderPermissions(
  namespace: string,
  cluster: string,
  inboxPrefixes: Record<NatsRole, string>,
): Record<NatsRole, NatsPermissions> {
  assert(isValidNameToken(namespace) && isValidNameToken(cluster), 'namespace and cluster are NATS tokens');
  const stream = `KV_${leaderBucketName}`;
  const keys = `$KV.${leaderBucketName}.${keyWildcardFor(namespace, cluster)}`;
  const read = [
    '$JS.API.INFO',
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.STREAM.MSG.GET.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}.*.${keys}`,
    `$JS.API.CONSUMER.INFO.${stream}.*`,
    `$JS.API.CONSUMER.DELETE.${stream}.*`,
    `$JS.FC.${stream}.>`,
  ];
  const leaderSubjects = subjectWildcardFor(namespace, cluster);
  return {
    replica: {
      publish: [leaderSubjects, keys, `$JS.API.STREAM.CREATE.${stream}`, ...read],
      subscribe: [leaderSubjects, `${inboxPrefixes.replica}.>`],
    },
    watcher: {
      publish: read,
      subscribe: [leaderSubjects, `${inboxPrefixes.watcher}.>`],
    },
  };
}

export interface NatsServerConfigInput {
  /** Where to listen; omitted, nats-server's command line (`-a`, `-p`) says. */
  readonly listen?: { readonly host: string; readonly port: number };
  /** JetStream's store; omitted, the command line's `-sd` (which may not repeat one given here). */
  readonly storeDir?: string;
  /** Server certificate and key (PEM); clients verify it against the cluster CA. */
  readonly tls: { readonly cert: string; readonly key: string };
  readonly namespace: string;
  readonly cluster: string;
  readonly users: Record<NatsRole, NatsCredentials>;
}

/** Seconds nats-server allows for a TLS handshake (its default, 0.5 s, is short for a loaded host). */
const tlsHandshakeTimeoutSeconds = 5;

/** A nats-server config file: JetStream, TLS required, the two users with their permissions. */
export function natsServerConfig(input: NatsServerConfigInput): string {
  const { users } = input;
  const permissions = leaderPermissions(input.namespace, input.cluster, {
    replica: users.replica.inboxPrefix ?? '_INBOX',
    watcher: users.watcher.inboxPrefix ?? '_INBOX',
  });
  const user = (role: NatsRole): string[] => [
    '    {',
    `      user: ${quote(users[role].user)}`,
    `      password: ${quote(users[role].password)}`,
    '      permissions: {',
    `        publish: { allow: [${permissions[role].publish.map(quote).join(', ')}] }`,
    `        subscribe: { allow: [${permissions[role].subscribe.map(quote).join(', ')}] }`,
    '      }',
    '    }',
  ];
  return [
    '# Written by shardbank (node/discovery/nats-security.ts); rewritten on every start.',
    ...(input.listen === undefined ? [] : [`listen: ${quote(`${input.listen.host}:${input.listen.port}`)}`]),
    input.storeDir === undefined ? 'jetstream: enabled' : `jetstream { store_dir: ${quote(input.storeDir)} }`,
    'tls {',
    `  cert_file: ${quote(input.tls.cert)}`,
    `  key_file: ${quote(input.tls.key)}`,
    `  timeout: ${tlsHandshakeTimeoutSeconds}`,
    '}',
    'authorization {',
    '  users: [',
    ...user(NatsRole.replica),
    ...user(NatsRole.watcher),
    '  ]',
    '}',
    '',
  ].join('\n');
}

/** A double-quoted config string; refuses what the config syntax would need escapes for. */
function quote(value: string): string {
  assert(!/["\\\n\r]/.test(value), `nats config value ${value} needs escaping`);
  return `"${value}"`;
}
