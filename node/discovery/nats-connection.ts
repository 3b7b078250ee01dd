// The NATS plumbing shared by the announcer and the watcher: a connection that keeps
// trying forever without blocking its owner, and the one place that opens (and, the
// first time, creates) the leader bucket, so that every creator uses the same config.
import { jetstream, JetStreamApiError } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { leaderBucketName, recordBytesMax } from './leader-record.js';
import { readNatsCredentials, type NatsSecurity } from './nats-security.js';

export const requestTimeoutMsDefault = 5_000;
/** Pause before dialing again after nats.js closed an owned connection for good. */
export const redialDelayMs = 1_000;
const connectRetryMsMin = 250;
const connectRetryMsMax = 5_000;
const reconnectTimeWaitMs = 1_000;
const pingIntervalMs = 10_000;
const bucketHistory = 5;
const bucketOpenAttemptsMax = 3;
/** NATS JetStream error code "wrong last sequence": the compare-and-set lost a race. */
const wrongLastSequenceErrorCode = 10071;
/** NATS JetStream error code "stream not found": the leader bucket does not exist (yet). */
const streamNotFoundErrorCode = 10059;

/** A promise-based sleep that ends early (resolving false) when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve(false);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Connects to `servers`, retrying until it succeeds or `signal` aborts (then undefined).
 * Once connected, nats.js reconnects forever by itself. The first connection is retried
 * here rather than with nats.js `waitOnFirstConnect: true`, because that dial loop has no
 * handle to cancel it: a component closed while NATS is down would otherwise leave a
 * loop dialing in the background and a connection opened behind its back.
 */
export async function connectForever(
  servers: string | string[],
  name: string,
  logger: Logger,
  signal: AbortSignal,
  security: NatsSecurity = {},
): Promise<NatsConnection | undefined> {
  let retryMs = connectRetryMsMin;
  let attempts = 0;
  while (!signal.aborted) {
    attempts += 1;
    try {
      const nc = await connect({
        servers,
        name,
        maxReconnectAttempts: -1,
        reconnectTimeWait: reconnectTimeWaitMs,
        waitOnFirstConnect: false,
        pingInterval: pingIntervalMs,
        timeout: requestTimeoutMsDefault,
        // Read on every dial: a rotated password or CA is picked up by the next connection.
        ...natsSecurityOptions(security),
      });
      if (signal.aborted) {
        await nc.close().catch(() => undefined);
        return undefined;
      }
      logger.info({ servers, attempts }, 'nats connected');
      return nc;
    } catch (error) {
      // Log the first failure loudly and the rest quietly: NATS may legitimately be down for long.
      const level = attempts === 1 ? 'warn' : 'debug';
      logger[level]({ servers, attempts, err: errorMessage(error) }, 'nats connect failed, retrying');
    }
    await sleep(retryMs, signal);
    retryMs = Math.min(connectRetryMsMax, retryMs * 2);
  }
  return undefined;
}

/**
 * The nats.js options for `security`: TLS verified against the CA file (a server without TLS
 * is then refused: no downgrade), and the user, password and inbox prefix of the credentials
 * file. Throws NatsCredentialsError (naming the file) when that file is unreadable or malformed.
 */
export function natsSecurityOptions(security: NatsSecurity): Partial<ConnectionOptions> {
  const options: { -readonly [K in keyof ConnectionOptions]?: ConnectionOptions[K] } = {};
  if (security.caFile !== undefined) options.tls = { caFile: security.caFile };
  if (security.credentialsFile !== undefined) {
    const credentials = readNatsCredentials(security.credentialsFile);
    options.user = credentials.user;
    options.pass = credentials.password;
    if (credentials.inboxPrefix !== undefined) options.inboxPrefix = credentials.inboxPrefix;
  }
  return options;
}

export interface OpenLeaderBucketOptions {
  /**
   * Create the bucket when it is absent (replicas). Watchers only bind: they may not create
   * streams, since whoever creates the bucket chooses its config (docs/SECURITY.md).
   */
  readonly create?: boolean;
}

/**
 * Opens bucket `shardbank-leaders`, creating it if absent (unless `create` is false: then a
 * missing bucket is a JetStreamApiError that isBucketMissing() recognises). Idempotent under
 * races: two creators with the same config both succeed, and a creator that loses a race
 * with a different config simply binds on the next attempt.
 */
export async function openLeaderBucket(
  nc: NatsConnection,
  timeoutMs = requestTimeoutMsDefault,
  options: OpenLeaderBucketOptions = {},
): Promise<KV> {
  if (options.create === false) {
    const kvm = new Kvm(jetstream(nc, { timeout: timeoutMs }));
    const bucket = await kvm.open(leaderBucketName, { allow_direct: false, timeout: timeoutMs });
    // open() only binds; status() asks for the stream's info, so a missing bucket shows here.
    await bucket.status();
    return bucket;
  }
  let lastError: unknown;
  for (let attempt = 0; attempt < bucketOpenAttemptsMax; attempt++) {
    try {
      // create(): opens the bucket, creating it first when it does not exist.
      // allow_direct false: compare-and-set reads go to the stream leader, never a lagging mirror.
      return await new Kvm(jetstream(nc, { timeout: timeoutMs })).create(leaderBucketName, {
        history: bucketHistory,
        // Headers (the compare-and-set's expected revision) count towards the limit too.
        maxValueSize: recordBytesMax * 4,
        allow_direct: false,
        timeout: timeoutMs,
      });
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

/** True if opening the bucket without creating it failed because it does not exist. */
export function isBucketMissing(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.code === streamNotFoundErrorCode;
}

/** True if a KV create/update failed because the key's revision moved on. */
export function isRevisionConflict(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.code === wrongLastSequenceErrorCode;
}

/** Stops an iterator nats.js hands out (status(), kv.watch(), kv.keys()), whatever its type says. */
export function stopIterator(iterator: unknown): void {
  const stoppable = iterator as { stop?: () => void } | undefined;
  stoppable?.stop?.();
}
