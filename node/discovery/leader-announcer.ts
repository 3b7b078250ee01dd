// Announces this replica's leadership on NATS: a plain publish (which works again the
// instant a connection is back) and a compare-and-set write of the KV key (which new
// watchers read as their initial value). NATS is a hint: nothing here ever throws into
// the replica, and the replica keeps running without NATS.
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino, type Logger } from 'pino';
import { childLogger } from '../util/child-logger.js';
import {
  decode,
  encode,
  keyFor,
  sameRecord,
  subjectFor,
  supersedes,
  validate,
  type LeaderRecord,
} from './leader-record.js';
import {
  connectForever,
  errorMessage,
  isRevisionConflict,
  openLeaderBucket,
  redialDelayMs,
  requestTimeoutMsDefault,
  sleep,
  stopIterator,
} from './nats-connection.js';
import type { NatsSecurity } from './nats-security.js';

export interface ReplicaIdentity {
  readonly namespace: string;
  readonly cluster: string;
  readonly shard: number;
  readonly ordinal: number;
}

export interface LeaderAnnouncerOptions {
  /** An existing connection (not closed by close()), or `servers` for an owned one. */
  readonly connection?: NatsConnection;
  readonly servers?: string | string[];
  /** TLS and credentials of an owned connection (the `replica` user, docs/SECURITY.md). */
  readonly security?: NatsSecurity;
  readonly identity: ReplicaIdentity;
  readonly logger?: Logger;
  /** How often the last record is announced again while leading. */
  readonly reannounceIntervalMs?: number;
  /** Timeout of each KV request. */
  readonly requestTimeoutMs?: number;
}

/** What happened to the KV key; the plain publish is reported separately. */
export const KvOutcome = {
  created: 'created',
  updated: 'updated',
  /** The key already holds exactly this record. */
  unchanged: 'unchanged',
  /** The key holds a record that supersedes ours: left alone. */
  superseded: 'superseded',
  /** Every compare-and-set attempt lost a race. */
  conflict: 'conflict',
  failed: 'failed',
  notConnected: 'not-connected',
  invalid: 'invalid',
  closed: 'closed',
} as const;
export type KvOutcome = (typeof KvOutcome)[keyof typeof KvOutcome];

export interface AnnounceOutcome {
  readonly published: boolean;
  readonly kv: KvOutcome;
  /** The record found in the KV when ours was not written because it is superseded. */
  readonly existing?: LeaderRecord;
  readonly error?: string;
}

const reannounceIntervalMsDefault = 3_000;
const casAttemptsMax = 10;

export class LeaderAnnouncer {
  private readonly identity: ReplicaIdentity;
  private readonly logger: Logger;
  private readonly requestTimeoutMs: number;
  private readonly ownsConnection: boolean;
  private readonly security: NatsSecurity;
  private readonly abort = new AbortController();
  private connection: NatsConnection | undefined;
  /** False between a Disconnect and the next Reconnect status event. */
  private connected = false;
  private bucket: KV | undefined;
  private last: LeaderRecord | undefined;
  /** Set when the KV showed that `last` is superseded: periodic re-announces stop. */
  private lastSuperseded = false;
  /** Announcements run one at a time, in call order. */
  private queue: Promise<unknown> = Promise.resolve();
  private reannouncePending = false;
  private reannounceAgain = false;
  private readonly timer: NodeJS.Timeout;
  private statusIterator: unknown;
  private closed = false;

  constructor(options: LeaderAnnouncerOptions) {
    this.identity = options.identity;
    this.logger = childLogger(options.logger ?? pino({ level: 'warn' }), {
      component: 'leader-announcer',
      cluster: options.identity.cluster,
      shard: options.identity.shard,
      replica: options.identity.ordinal,
    });
    this.requestTimeoutMs = options.requestTimeoutMs ?? requestTimeoutMsDefault;
    this.ownsConnection = options.connection === undefined;
    this.security = options.security ?? {};
    const intervalMs = options.reannounceIntervalMs ?? reannounceIntervalMsDefault;
    this.timer = setInterval(() => this.reannounce('periodic'), intervalMs);
    this.timer.unref();
    if (options.connection !== undefined) {
      this.attach(options.connection);
    } else if (options.servers !== undefined) {
      void this.connectOwned(options.servers);
    } else {
      this.logger.warn('no NATS connection or servers given: announcements are dropped');
    }
  }

  /**
   * Publishes `record` and writes it to the KV unless the KV holds a superseding record.
   * Becomes the record re-announced periodically and after a reconnect. Never throws.
   */
  announce(record: LeaderRecord): Promise<AnnounceOutcome> {
    const problem = this.checkRecord(record);
    if (problem !== undefined) {
      this.logger.error({ err: problem, record }, 'refusing to announce an invalid leader record');
      return Promise.resolve({ published: false, kv: KvOutcome.invalid, error: problem });
    }
    if (this.last === undefined || !supersedes(this.last, record, record.incarnation)) {
      this.last = record;
      this.lastSuperseded = false;
    }
    return this.enqueue(record);
  }

  /** Leadership lost: forget the record so that it is no longer re-announced. */
  stopAnnouncing(): void {
    this.last = undefined;
    this.lastSuperseded = false;
  }

  lastRecord(): LeaderRecord | undefined {
    return this.last;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.abort.abort();
    stopIterator(this.statusIterator);
    await this.queue.catch(() => undefined);
    const connection = this.connection;
    this.connection = undefined;
    if (this.ownsConnection && connection !== undefined) {
      await connection.close().catch((error: unknown) => {
        this.logger.debug({ err: errorMessage(error) }, 'nats close failed');
      });
    }
  }

  private checkRecord(record: LeaderRecord): string | undefined {
    const problem = validate(record);
    if (problem !== undefined) return problem;
    const id = this.identity;
    if (record.namespace !== id.namespace || record.cluster !== id.cluster || record.shard !== id.shard) {
      return `record names ${record.namespace}/${record.cluster}/${record.shard}, this replica is ${id.namespace}/${id.cluster}/${id.shard}`;
    }
    if (record.leaderOrdinal !== id.ordinal) {
      return `leaderOrdinal ${record.leaderOrdinal} is not this replica (${id.ordinal})`;
    }
    return undefined;
  }

  private enqueue(record: LeaderRecord): Promise<AnnounceOutcome> {
    const run = this.queue.then(() => this.announceNow(record));
    this.queue = run.catch(() => undefined);
    return run.catch((error: unknown) => {
      // announceNow handles its own failures; this is a last line of defence.
      this.logger.error({ err: errorMessage(error) }, 'announce failed unexpectedly');
      return { published: false, kv: KvOutcome.failed, error: errorMessage(error) };
    });
  }

  private reannounce(reason: string): void {
    const record = this.last;
    if (record === undefined || this.lastSuperseded || this.closed || !this.connected) return;
    // One re-announce at a time: a slow or unreachable server must not pile them up. A
    // request made while one is pending (say, a reconnect during a timing-out write) runs
    // once that one is done, with whatever record is the last by then.
    if (this.reannouncePending) {
      this.reannounceAgain = true;
      // The pending KV write may take a while (a server that just started answers JetStream
      // requests only once its store is ready, and each request may wait out its timeout);
      // the subject announcement must not wait behind it.
      const connection = this.connection;
      if (connection !== undefined && !connection.isClosed()) this.publish(connection, record, encode(record));
      return;
    }
    this.reannouncePending = true;
    this.logger.debug({ reason, ballot: record.ballot }, 're-announcing leadership');
    void this.enqueue(record).finally(() => {
      this.reannouncePending = false;
      if (this.reannounceAgain) {
        this.reannounceAgain = false;
        this.reannounce('deferred');
      }
    });
  }

  private async announceNow(record: LeaderRecord): Promise<AnnounceOutcome> {
    if (this.closed) return { published: false, kv: KvOutcome.closed };
    const connection = this.connection;
    if (connection === undefined || connection.isClosed()) {
      return { published: false, kv: KvOutcome.notConnected };
    }
    const data = encode(record);
    // While disconnected nats.js buffers the publish and sends it on reconnect.
    const published = this.publish(connection, record, data);
    // A KV request sent now would only hang until its timeout; the reconnect re-announces.
    if (!this.connected) return { published, kv: KvOutcome.notConnected };
    const outcome = await this.writeKv(connection, record, data);
    if (outcome.kv === KvOutcome.superseded && this.last !== undefined && sameRecord(this.last, record)) {
      this.lastSuperseded = true;
    }
    return { ...outcome, published };
  }

  private publish(connection: NatsConnection, record: LeaderRecord, data: Uint8Array): boolean {
    try {
      connection.publish(subjectFor(record.namespace, record.cluster, record.shard), data);
      return true;
    } catch (error) {
      this.logger.warn({ err: errorMessage(error) }, 'leader publish failed');
      return false;
    }
  }

  /** Compare-and-set: read the key and its revision, then create or update at that revision. */
  private async writeKv(
    connection: NatsConnection,
    record: LeaderRecord,
    data: Uint8Array,
  ): Promise<Omit<AnnounceOutcome, 'published'>> {
    const key = keyFor(record.namespace, record.cluster, record.shard);
    try {
      const bucket = await this.openBucket(connection);
      for (let attempt = 0; attempt < casAttemptsMax; attempt++) {
        const entry = await bucket.get(key);
        const live = entry !== null && entry.operation === 'PUT';
        const existing = live ? decode(entry.value) : undefined;
        if (existing !== undefined && existing.ok) {
          if (sameRecord(existing.value, record)) return { kv: KvOutcome.unchanged };
          if (!supersedes(record, existing.value, record.incarnation)) {
            this.logger.info({ ours: record.ballot, theirs: existing.value.ballot }, 'kv holds a newer leader');
            return { kv: KvOutcome.superseded, existing: existing.value };
          }
        } else if (existing !== undefined) {
          this.logger.warn({ key, err: existing.error }, 'overwriting a malformed leader entry');
        }
        try {
          if (entry === null) {
            await bucket.create(key, data);
            return { kv: KvOutcome.created };
          }
          await bucket.update(key, data, entry.revision);
          return { kv: KvOutcome.updated };
        } catch (error) {
          if (!isRevisionConflict(error)) throw error;
          this.logger.debug({ key, attempt }, 'kv compare-and-set lost a race, re-reading');
        }
      }
      this.logger.warn({ key, attempts: casAttemptsMax }, 'kv compare-and-set kept losing races');
      return { kv: KvOutcome.conflict };
    } catch (error) {
      // The bucket may be gone (a server restarted without its store): reopen next time.
      this.bucket = undefined;
      this.logger.warn({ key, err: errorMessage(error) }, 'kv leader write failed');
      return { kv: KvOutcome.failed, error: errorMessage(error) };
    }
  }

  private async openBucket(connection: NatsConnection): Promise<KV> {
    if (this.bucket === undefined) this.bucket = await openLeaderBucket(connection, this.requestTimeoutMs);
    return this.bucket;
  }

  private async connectOwned(servers: string | string[]): Promise<void> {
    const id = this.identity;
    const name = `shardbank-announcer-${id.namespace}-${id.cluster}-s${id.shard}-${id.ordinal}`;
    const connection = await connectForever(servers, name, this.logger, this.abort.signal, this.security);
    if (connection === undefined) return;
    if (this.closed) {
      await connection.close().catch(() => undefined);
      return;
    }
    this.attach(connection);
    this.redialWhenClosed(connection, servers);
    this.reannounce('connected');
  }

  /**
   * nats.js gives up on a connection only on fatal errors (say, an authorization
   * violation); an owned connection is then dialed again from scratch.
   */
  private redialWhenClosed(connection: NatsConnection, servers: string | string[]): void {
    void connection.closed().then((error) => {
      if (this.closed) return;
      this.logger.error({ err: error ? errorMessage(error) : undefined }, 'nats connection closed, dialing again');
      if (this.connection === connection) {
        this.connection = undefined;
        this.connected = false;
      }
      // A pause, so that a server that accepts and then drops us is not dialed in a tight loop.
      void sleep(redialDelayMs, this.abort.signal).then(() => this.connectOwned(servers));
    });
  }

  private attach(connection: NatsConnection): void {
    this.connection = connection;
    this.connected = true;
    this.bucket = undefined;
    const statusIterator = connection.status();
    this.statusIterator = statusIterator;
    void (async () => {
      for await (const status of statusIterator) {
        if (this.closed) return;
        if (status.type === 'disconnect') {
          this.connected = false;
          this.logger.warn('nats disconnected');
        }
        if (status.type === 'reconnect') {
          this.connected = true;
          this.logger.info('nats reconnected: re-announcing');
          // The server may have restarted without its store: reopen the bucket.
          this.bucket = undefined;
          this.reannounce('reconnected');
        }
      }
    })().catch((error: unknown) => {
      this.logger.debug({ err: errorMessage(error) }, 'nats status iterator ended');
    });
  }
}
