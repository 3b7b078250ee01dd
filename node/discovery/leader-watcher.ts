// Keeps, per shard of one cluster, the best leader record known (per `supersedes`), from
// the KV bucket (initial values, then updates) and from the plain announcement subject.
// Both sources matter: after a nats-server restart a plain subscription works again at
// once, while a KV watch (an ordered JetStream consumer) only noticed the loss after its
// missed idle heartbeats, about 10 s. So the KV watch is also renewed on every reconnect.
// The records are hints for routing; safety comes from Paxos ballots.
import type { KV, KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { pino, type Logger } from 'pino';
import { childLogger } from '../util/child-logger.js';
import {
  compareBallots,
  decode,
  keyWildcardFor,
  shardFromLastToken,
  subjectWildcardFor,
  supersedes,
  validate,
  type Ballot,
  type LeaderRecord,
} from './leader-record.js';
import {
  connectForever,
  errorMessage,
  isBucketMissing,
  openLeaderBucket,
  redialDelayMs,
  requestTimeoutMsDefault,
  sleep,
  stopIterator,
} from './nats-connection.js';
import type { NatsSecurity } from './nats-security.js';

export interface LeaderWatcherOptions {
  /** An existing connection (not closed by close()), or `servers` for an owned one. */
  readonly connection?: NatsConnection;
  readonly servers?: string | string[];
  /** TLS and credentials of an owned connection (the `watcher` user, docs/SECURITY.md). */
  readonly security?: NatsSecurity;
  readonly namespace: string;
  readonly cluster: string;
  /** The cluster's current incarnation, if known: its records win over other incarnations'. */
  readonly incarnation?: string;
  readonly logger?: Logger;
  /** Delay before retrying a KV watch that failed or ended. */
  readonly kvRetryMs?: number;
  readonly requestTimeoutMs?: number;
}

export interface LeaderChange {
  readonly shard: number;
  /** The new best record, or undefined after forgetLeader(). */
  readonly record: LeaderRecord | undefined;
  readonly previous: LeaderRecord | undefined;
  readonly source: LeaderSource;
}

export const LeaderSource = {
  kv: 'kv',
  subject: 'subject',
  observed: 'observed',
  forgotten: 'forgotten',
} as const;
export type LeaderSource = (typeof LeaderSource)[keyof typeof LeaderSource];

export type LeaderChangeListener = (change: LeaderChange) => void;

const kvRetryMsDefault = 1_000;
const listenersMax = 1_000;
const shardsMax = 100_000;

export class LeaderWatcher {
  private readonly namespace: string;
  private readonly cluster: string;
  private readonly incarnation: string | undefined;
  private readonly logger: Logger;
  private readonly kvRetryMs: number;
  private readonly requestTimeoutMs: number;
  private readonly ownsConnection: boolean;
  private readonly security: NatsSecurity;
  private readonly abort = new AbortController();
  private readonly records = new Map<number, LeaderRecord>();
  private readonly listeners = new Set<LeaderChangeListener>();
  private connection: NatsConnection | undefined;
  private subscription: Subscription | undefined;
  private statusIterator: unknown;
  /** Bumped to renew the KV watch: a watch loop of an older generation exits. */
  private kvGeneration = 0;
  private kvIterator: unknown;
  private synced = false;
  private readonly syncWaiters = new Set<() => void>();
  /** waitFor() calls in progress, ended (with undefined) by close(). */
  private readonly pendingWaits = new Set<(record: LeaderRecord | undefined) => void>();
  private closed = false;

  private constructor(options: LeaderWatcherOptions) {
    // Build the subjects once up front: an invalid namespace or cluster is a caller bug.
    subjectWildcardFor(options.namespace, options.cluster);
    this.namespace = options.namespace;
    this.cluster = options.cluster;
    this.incarnation = options.incarnation;
    this.logger = childLogger(options.logger ?? pino({ level: 'warn' }), {
      component: 'leader-watcher',
      cluster: options.cluster,
    });
    this.kvRetryMs = options.kvRetryMs ?? kvRetryMsDefault;
    this.requestTimeoutMs = options.requestTimeoutMs ?? requestTimeoutMsDefault;
    this.ownsConnection = options.connection === undefined;
    this.security = options.security ?? {};
  }

  /**
   * Starts watching and returns at once, without waiting for NATS: a watcher started while
   * NATS is down keeps retrying in the background. Use whenSynced() or waitFor() to wait.
   */
  static async start(options: LeaderWatcherOptions): Promise<LeaderWatcher> {
    const watcher = new LeaderWatcher(options);
    if (options.connection !== undefined) {
      watcher.attach(options.connection);
    } else if (options.servers !== undefined) {
      void watcher.connectOwned(options.servers);
    } else {
      watcher.logger.warn('no NATS connection or servers given: only observe() feeds this watcher');
    }
    return watcher;
  }

  leader(shard: number): LeaderRecord | undefined {
    return this.records.get(shard);
  }

  /** Every shard's best record, by shard. */
  leaders(): ReadonlyMap<number, LeaderRecord> {
    return new Map(this.records);
  }

  /** Calls `listener` on every change of a shard's best record; returns the unsubscribe. */
  onChange(listener: LeaderChangeListener): () => void {
    if (this.listeners.size >= listenersMax) {
      throw new Error(`leader watcher: more than ${listenersMax} change listeners`);
    }
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** The shard's record once `predicate` holds for it, or undefined after `timeoutMs`. */
  waitFor(
    shard: number,
    predicate: (record: LeaderRecord) => boolean = () => true,
    timeoutMs = 10_000,
  ): Promise<LeaderRecord | undefined> {
    const current = this.records.get(shard);
    if (current !== undefined && predicate(current)) return Promise.resolve(current);
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const finish = (record: LeaderRecord | undefined): void => {
        clearTimeout(timer);
        unsubscribe();
        this.pendingWaits.delete(finish);
        resolve(record);
      };
      const timer = setTimeout(() => finish(undefined), timeoutMs);
      const unsubscribe = this.onChange((change) => {
        if (change.shard === shard && change.record !== undefined && predicate(change.record)) {
          finish(change.record);
        }
      });
      this.pendingWaits.add(finish);
    });
  }

  /** True once the KV's initial values have been read (false if `timeoutMs` passed first). */
  whenSynced(timeoutMs = 10_000): Promise<boolean> {
    if (this.synced) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.syncWaiters.delete(done);
        resolve(this.synced);
      };
      const timer = setTimeout(done, timeoutMs);
      this.syncWaiters.add(done);
    });
  }

  /**
   * Feeds a hint learned elsewhere (say, a gRPC leader hint) through the same rule as
   * NATS records. Returns whether it became the shard's best record.
   */
  observe(record: LeaderRecord): boolean {
    return this.consider(record, LeaderSource.observed);
  }

  /**
   * Drops the shard's record if it still holds `ballot`: a NOT_LEADER reply showed it stale.
   * A newer record that arrived in the meantime is kept. Returns whether it was dropped.
   */
  forgetLeader(shard: number, ballot: Ballot): boolean {
    const current = this.records.get(shard);
    if (current === undefined || compareBallots(current.ballot, ballot) !== 0) return false;
    this.records.delete(shard);
    this.emit({ shard, record: undefined, previous: current, source: LeaderSource.forgotten });
    return true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.kvGeneration += 1;
    stopIterator(this.kvIterator);
    stopIterator(this.statusIterator);
    for (const finish of [...this.pendingWaits]) finish(undefined);
    this.listeners.clear();
    for (const waiter of [...this.syncWaiters]) waiter();
    const subscription = this.subscription;
    this.subscription = undefined;
    try {
      subscription?.unsubscribe();
    } catch (error) {
      this.logger.debug({ err: errorMessage(error) }, 'unsubscribe failed');
    }
    const connection = this.connection;
    this.connection = undefined;
    if (this.ownsConnection && connection !== undefined) {
      await connection.close().catch((error: unknown) => {
        this.logger.debug({ err: errorMessage(error) }, 'nats close failed');
      });
    }
  }

  private consider(record: LeaderRecord, source: LeaderSource): boolean {
    if (this.closed) return false;
    const problem = validate(record);
    if (problem !== undefined) {
      this.logger.warn({ source, err: problem }, 'ignoring an invalid leader record');
      return false;
    }
    if (record.namespace !== this.namespace || record.cluster !== this.cluster) {
      this.logger.debug({ source, namespace: record.namespace, cluster: record.cluster }, 'record of another cluster');
      return false;
    }
    if (record.shard >= shardsMax) return false;
    const previous = this.records.get(record.shard);
    if (!supersedes(record, previous, this.incarnation)) return false;
    this.records.set(record.shard, record);
    this.emit({ shard: record.shard, record, previous, source });
    return true;
  }

  /** Decodes bytes from NATS, checking that they belong where they were found. */
  private ingest(data: Uint8Array, where: string, source: LeaderSource): void {
    const decoded = decode(data);
    if (!decoded.ok) {
      this.logger.warn({ source, where, err: decoded.error }, 'ignoring a malformed leader record');
      return;
    }
    if (decoded.value.shard !== shardFromLastToken(where)) {
      this.logger.warn({ source, where, shard: decoded.value.shard }, 'leader record found under another shard');
      return;
    }
    this.consider(decoded.value, source);
  }

  private emit(change: LeaderChange): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch (error) {
        this.logger.error({ err: errorMessage(error) }, 'leader change listener threw');
      }
    }
  }

  private markSynced(): void {
    if (this.synced) return;
    this.synced = true;
    for (const waiter of [...this.syncWaiters]) waiter();
  }

  private async connectOwned(servers: string | string[]): Promise<void> {
    const name = `shardbank-watcher-${this.namespace}-${this.cluster}`;
    const connection = await connectForever(servers, name, this.logger, this.abort.signal, this.security);
    if (connection === undefined) return;
    if (this.closed) {
      await connection.close().catch(() => undefined);
      return;
    }
    this.attach(connection);
  }

  /**
   * nats.js gives up on a connection only on fatal errors (say, an authorization
   * violation); an owned connection is then dialed again from scratch.
   */
  private redialWhenClosed(connection: NatsConnection, servers: string | string[]): void {
    void connection.closed().then((error) => {
      if (this.closed) return;
      this.logger.error({ err: error ? errorMessage(error) : undefined }, 'nats connection closed, dialing again');
      if (this.connection === connection) this.connection = undefined;
      // A pause, so that a server that accepts and then drops us is not dialed in a tight loop.
      void sleep(redialDelayMs, this.abort.signal).then(() => this.connectOwned(servers));
    });
  }

  private attach(connection: NatsConnection): void {
    this.connection = connection;
    this.subscribeSubject(connection);
    this.watchStatus(connection);
    this.renewKvWatch(connection);
  }

  private subscribeSubject(connection: NatsConnection): void {
    try {
      this.subscription = connection.subscribe(subjectWildcardFor(this.namespace, this.cluster), {
        callback: (error, message) => {
          if (error !== null) {
            this.logger.warn({ err: errorMessage(error) }, 'leader subscription error');
            return;
          }
          this.ingest(message.data, message.subject, LeaderSource.subject);
        },
      });
    } catch (error) {
      this.logger.warn({ err: errorMessage(error) }, 'leader subscription failed');
    }
  }

  private watchStatus(connection: NatsConnection): void {
    const statusIterator = connection.status();
    this.statusIterator = statusIterator;
    void (async () => {
      for await (const status of statusIterator) {
        if (this.closed) return;
        if (status.type === 'disconnect') this.logger.warn('nats disconnected');
        if (status.type === 'reconnect') {
          this.logger.info('nats reconnected: renewing the kv watch');
          this.renewKvWatch(connection);
        }
      }
    })().catch((error: unknown) => {
      this.logger.debug({ err: errorMessage(error) }, 'nats status iterator ended');
    });
  }

  /** Replaces the KV watch with a fresh one (old iterator stopped, its loop exits). */
  private renewKvWatch(connection: NatsConnection): void {
    if (this.closed) return;
    this.kvGeneration += 1;
    stopIterator(this.kvIterator);
    this.kvIterator = undefined;
    void this.runKvWatch(connection, this.kvGeneration);
  }

  private async runKvWatch(connection: NatsConnection, generation: number): Promise<void> {
    const current = (): boolean => !this.closed && generation === this.kvGeneration;
    while (current() && !connection.isClosed()) {
      try {
        // Bind only: a watcher may not create the bucket (whoever creates it picks its config).
        const bucket = await openLeaderBucket(connection, this.requestTimeoutMs, { create: false });
        if (!current()) return;
        await this.consumeKvWatch(bucket, current);
        if (current()) this.logger.info('kv watch ended, starting another');
      } catch (error) {
        if (isBucketMissing(error)) {
          // No replica has written a leader yet: there is nothing to catch up on.
          if (current()) this.markSynced();
          this.logger.debug('no leader bucket yet, watching again shortly');
        } else if (current()) this.logger.warn({ err: errorMessage(error) }, 'kv watch failed, retrying');
      }
      if (!current()) return;
      await sleep(this.kvRetryMs, this.abort.signal);
    }
  }

  private async consumeKvWatch(bucket: KV, current: () => boolean): Promise<void> {
    const key = keyWildcardFor(this.namespace, this.cluster);
    // The watch delivers each key's last value first; the last of those is marked isUpdate
    // (and so is every later change), which is when this watcher has caught up. With no key at
    // all nothing is delivered, so an empty bucket counts as caught up once the watch is open.
    const keys = await bucket.keys(key);
    let anyKey = false;
    for await (const found of keys) {
      void found;
      anyKey = true;
      break;
    }
    stopIterator(keys);
    if (!current()) return;
    const iterator = await bucket.watch({ key });
    if (!current()) {
      iterator.stop();
      return;
    }
    this.kvIterator = iterator;
    if (!anyKey) this.markSynced();
    for await (const entry of iterator) {
      if (!current()) break;
      this.ingestEntry(entry);
      if (entry.isUpdate) this.markSynced();
    }
    iterator.stop();
  }

  private ingestEntry(entry: KvWatchEntry): void {
    // Deletes and purges are ignored: a hint stays until a better one replaces it.
    if (entry.operation !== 'PUT') return;
    this.ingest(entry.value, entry.key, LeaderSource.kv);
  }
}
