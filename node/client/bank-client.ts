// The shardbank client library (CLI, bench, chaos, tests). Routes each request to the
// shard that owns it, prefers the known leader (NATS watcher, then the replica's leader
// hint, then the last replica that answered), and retries outcome-unknown failures with
// the SAME request id until an overall deadline: exactly-once on the server makes that safe.
import { randomBytes } from 'node:crypto';
import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import { shardOfItem, type Topology } from '../cluster/topology.js';
import {
  BankClient as BankStub,
  Consistency,
  Outcome,
  type BatchEntry,
  type BatchTransferReply,
  type ClusterStatusReply,
  type GetBalanceReply,
  type OpenSessionReply,
  type TransferReply,
} from '../gen/shardbank/v1/bank.js';
import { assert, assertNever } from '../util/assert.js';
import { chunk } from '../util/chunk.js';
import { backoffDelayMs, DEFAULT_BACKOFF, sleep, type BackoffPolicy } from './backoff.js';
import { codeName, isRetryable, unaryCall, type CallError, type CallResult } from './grpc-call.js';
import { startLeaderSource, type LeaderSource } from './leader-source.js';
import type { NatsSecurity } from '../discovery/nats-security.js';
import { mergeClusterStatus, type ClusterView, type ReplicaProbe } from './status-view.js';
import { checkClientId, checkRequestId, checkTransferInput, type InputCheck } from './transfer-input.js';
import { TransferCoalescer, type CoalescedResult } from './transfer-coalescer.js';
import { TransferStreamChannel, type ChannelBreak } from './transfer-stream-channel.js';
import { TRACING, traceStamp } from '../util/stage-trace.js';
import {
  clientIdPrefixOf,
  loadClientTls,
  tlsChannelCredentials,
  tlsChannelOptions,
  type ClientTlsFiles,
} from './tls.js';

export { Consistency } from '../gen/shardbank/v1/bank.js';

export const TRANSFER_DEADLINE_MS_DEFAULT = 30_000;
export const ATTEMPT_TIMEOUT_MS_DEFAULT = 5_000;
export const STATUS_TIMEOUT_MS_DEFAULT = 2_000;
export const ABORT_RETRIES_MAX_DEFAULT = 8;
/** Entries per batchTransfer: 8190, TigerBeetle's batch (split per shard, each call within the replica's 10,000). */
export const BATCH_ENTRIES_MAX = 8190;
export const BALANCE_ITEMS_PER_CALL_MAX = 4096;
export const MAX_TRANSFER_AMOUNT_DEFAULT = 1_000_000_000;

export const TRANSFER_OUTCOMES = [
  'COMMITTED',
  'INSUFFICIENT_FUNDS',
  'ABORTED',
  'INVALID_ARGUMENT',
  'FAILED_PRECONDITION',
  'UNKNOWN',
] as const;
export type TransferOutcome = (typeof TRANSFER_OUTCOMES)[number];

/** COMMITTED and INSUFFICIENT_FUNDS are final answers; ABORTED and rejections certainly did nothing. */
export function isDefiniteOutcome(outcome: TransferOutcome): boolean {
  return outcome !== 'UNKNOWN';
}

export interface ShardbankClientOptions {
  readonly cluster: string;
  readonly topology: Topology;
  /** Addresses by `[shard][ordinal]`. */
  readonly endpoints: readonly (readonly string[])[];
  readonly natsUrl?: string;
  /** TLS (CA file) and the `watcher` credentials for `natsUrl` (docs/SECURITY.md). */
  readonly natsSecurity?: NatsSecurity;
  readonly namespace?: string;
  readonly incarnation?: string;
  readonly clientId?: string;
  readonly maxTransferAmount?: number;
  readonly deadlineMs?: number;
  readonly attemptTimeoutMs?: number;
  readonly abortRetriesMax?: number;
  /** Client-side input checks (on by default); tests turn them off to reach the server's. */
  readonly validate?: boolean;
  readonly leaderSource?: LeaderSource;
  readonly backoff?: BackoffPolicy;
  /** Known pids of local replicas, for status. */
  readonly pidOf?: (shard: number, ordinal: number) => number | null;
  /**
   * Send the single transfers started in one event-loop turn (from any sessions) to their
   * shard in one BatchTransfer call (default true). Each keeps its own ids and outcome.
   */
  readonly coalesce?: boolean;
  /**
   * Coalesced transfers go over a TransferStream to the shard's leader once a call has found
   * it (default true): each result comes back as soon as its transfer is decided.
   */
  readonly stream?: boolean;
  /**
   * TLS with a client certificate (PEM file paths; docs/SECURITY.md). The certificate's
   * identity bounds the client_ids: generated ones are `<name>/c-<random>`. Without it the
   * client speaks plaintext (a cluster with TLS on refuses it, UNAUTHENTICATED).
   */
  readonly tls?: ClientTlsFiles;
}

export interface TransferRequestInput {
  readonly from: number;
  readonly to: number;
  readonly amount: number;
  readonly clientId?: string;
  readonly requestId?: number;
  /**
   * The epoch of the client's session on the shard of `from`, from an earlier result: makes a
   * retry safe however long ago the first try was (without it the client opens the session,
   * which finds it while the shard still remembers it, else makes a new one).
   */
  readonly sessionEpoch?: number;
}

export interface TransferResult {
  outcome: TransferOutcome;
  clientId: string;
  requestId: number;
  from: number;
  to: number;
  amount: number;
  decisionIndex?: number;
  coordinatorShard?: number;
  attempts: number;
  message?: string;
  errorCode?: string;
  /** The session epoch the request was sent with (its retries must name the same one). */
  sessionEpoch?: number;
  /**
   * COMMITTED or INSUFFICIENT_FUNDS: true when the cluster had decided this request before
   * (a retry of one that ran): the outcome is that decision, nothing new was applied.
   */
  deduplicated?: boolean;
}

export interface CallOptions {
  readonly deadlineMs?: number;
  readonly session?: ClientSession;
}

export class ShardbankClientError extends Error {
  override name = 'ShardbankClientError';
  constructor(
    message: string,
    readonly codeName: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * A client id, its increasing request ids and its session epoch on each shard (opened lazily
 * with OpenSession, sent with every request; a request keeps the epoch it was first sent with
 * through all its retries, so that a forgotten session refuses it instead of running it again).
 */
export class ClientSession {
  private readonly epochs = new Map<number, number>();
  /** An OpenSession call in flight per shard: concurrent first transfers share it. */
  readonly opening = new Map<number, Promise<SessionOpen>>();
  epochOn(shard: number): number | undefined {
    return this.epochs.get(shard);
  }
  setEpoch(shard: number, epoch: number): void {
    this.epochs.set(shard, epoch);
  }
  /** After a refusal under `epoch`: the next new request asks the shard again. */
  forgetEpoch(shard: number, epoch: number): void {
    if (this.epochs.get(shard) === epoch) this.epochs.delete(shard);
  }
  /**
   * The epoch each request without a final answer was first sent with: a caller that retries
   * it by request id (chaos, an application after UNKNOWN) sends it under that epoch again,
   * never under a newer session, where it would be new. Bounded (oldest first out).
   */
  private readonly sentUnder = new Map<number, { shard: number; epoch: number }>();
  sentEpoch(requestId: number, shard: number): number | undefined {
    const sent = this.sentUnder.get(requestId);
    return sent?.shard === shard ? sent.epoch : undefined;
  }
  noteSent(requestId: number, shard: number, epoch: number): void {
    if (this.sentUnder.has(requestId)) return;
    this.sentUnder.set(requestId, { shard, epoch });
    if (this.sentUnder.size > SENT_UNDER_MAX) this.sentUnder.delete(this.sentUnder.keys().next().value as number);
  }
  private lastRequestId: number;
  constructor(
    readonly clientId: string = randomClientId(),
    firstRequestId = 1,
  ) {
    assert(checkClientId(clientId).ok, `invalid client id ${JSON.stringify(clientId)}`);
    assert(Number.isSafeInteger(firstRequestId) && firstRequestId >= 1, 'firstRequestId must be a positive integer');
    this.lastRequestId = firstRequestId - 1;
  }
  nextRequestId(): number {
    this.lastRequestId += 1;
    return this.lastRequestId;
  }
  // Request ids whose final outcome the caller has: the contiguous prefix is acknowledged to
  // the server (which may then forget them and refuses them from then on).
  private acknowledged = 0;
  private readonly completedAbove = new Set<number>();
  complete(requestId: number): void {
    this.sentUnder.delete(requestId);
    if (requestId <= this.acknowledged) return;
    this.completedAbove.add(requestId);
    while (this.completedAbove.delete(this.acknowledged + 1)) this.acknowledged += 1;
  }
  /** The acknowledged watermark to send with `requestId` (always below it). */
  acknowledgedBelow(requestId: number): number {
    return Math.min(this.acknowledged, requestId - 1);
  }
  /** Keeps later generated ids above an id the caller chose. */
  observe(requestId: number): void {
    this.lastRequestId = Math.max(this.lastRequestId, requestId);
  }
}

type SessionOpen = { ok: true; epoch: number } | { ok: false; error: CallError };

const SENT_UNDER_MAX = 65_536;

/** A fresh client id; `prefix` is the TLS identity's `<name>/` (clientIdPrefixOf). */
export function randomClientId(prefix = ''): string {
  return `${prefix}c-${randomBytes(12).toString('hex')}`;
}

interface RouteState {
  readonly shard: number;
  hint: string | undefined;
  readonly failed: Set<string>;
  rotation: number;
  failures: number;
}

type ShardCall<Reply> =
  { ok: true; value: Reply; address: string; attempts: number } | { ok: false; error: CallError; attempts: number };

export class ShardbankClient {
  readonly cluster: string;
  readonly topology: Topology;
  readonly endpoints: readonly (readonly string[])[];
  readonly session: ClientSession;
  private readonly stubs = new Map<string, BankStub>();
  private readonly lastAnswered = new Map<number, string>();
  private leaderSource: LeaderSource | undefined;
  private watcherStarting: Promise<void> | undefined;
  private readonly options: ShardbankClientOptions;
  private readonly channelCredentials: ChannelCredentials;
  private readonly tlsOn: boolean;
  /** `<name>/` of the TLS identity: generated client ids must carry it. */
  readonly clientIdPrefix: string;
  private closed = false;
  private readonly coalescer = new TransferCoalescer(
    (shard, entries) => this.sendCoalesced(shard, entries),
    BATCH_ENTRIES_MAX,
    undefined,
    undefined,
    (shard) => this.streamFor(shard),
  );
  private readonly streams = new Map<number, TransferStreamChannel>();
  /** Set when a replica does not know TransferStream (an older version): calls only from then on. */
  private streamsUnsupported = false;

  constructor(options: ShardbankClientOptions) {
    assert(
      options.endpoints.length === options.topology.shards,
      `endpoints list ${options.endpoints.length} shards, topology has ${options.topology.shards}`,
    );
    assert(
      options.endpoints.every((replicas) => replicas.length > 0),
      'every shard needs at least one endpoint',
    );
    this.options = options;
    this.cluster = options.cluster;
    this.topology = options.topology;
    this.endpoints = options.endpoints;
    const tls = options.tls ? loadClientTls(options.tls) : undefined;
    this.channelCredentials = tls ? tlsChannelCredentials(tls) : credentials.createInsecure();
    this.tlsOn = tls !== undefined;
    this.clientIdPrefix = clientIdPrefixOf(tls);
    this.session = new ClientSession(options.clientId ?? randomClientId(this.clientIdPrefix));
    this.leaderSource = options.leaderSource;
    if (options.natsUrl && !options.leaderSource) this.watcherStarting = this.startWatcher(options.natsUrl);
  }

  /** Creates a client and waits until its NATS leader watcher (if a NATS URL is given) is set up. */
  static async connect(options: ShardbankClientOptions): Promise<ShardbankClient> {
    const client = new ShardbankClient(options);
    await client.watcherStarting;
    return client;
  }

  /** Best effort: without NATS the client routes by the replicas' hints and probing. */
  private async startWatcher(natsUrl: string): Promise<void> {
    const started = await startLeaderSource({
      servers: natsUrl,
      ...(this.options.natsSecurity ? { security: this.options.natsSecurity } : {}),
      namespace: this.options.namespace ?? 'default',
      cluster: this.options.cluster,
      ...(this.options.incarnation ? { incarnation: this.options.incarnation } : {}),
    });
    if (!started.ok) return;
    if (this.closed) await started.value.close();
    else this.leaderSource = started.value;
  }

  newSession(clientId?: string): ClientSession {
    return new ClientSession(clientId ?? randomClientId(this.clientIdPrefix));
  }

  async transfer(input: TransferRequestInput, options: CallOptions = {}): Promise<TransferResult> {
    if (TRACING) traceStamp('client.transfer');
    const session = this.sessionFor(input.clientId, options.session);
    const result = await this.transferInSession(input, session, options);
    if (result.outcome !== 'UNKNOWN' && result.outcome !== 'ABORTED') session.complete(result.requestId);
    if (TRACING) traceStamp('client.done');
    return result;
  }

  private async transferInSession(
    input: TransferRequestInput,
    session: ClientSession,
    options: CallOptions,
  ): Promise<TransferResult> {
    const requestId = input.requestId ?? session.nextRequestId();
    if (input.requestId !== undefined && input.clientId === undefined) session.observe(input.requestId);
    const base = { clientId: session.clientId, requestId, from: input.from, to: input.to, amount: input.amount };
    const invalid = this.checkInput(input, session.clientId, requestId);
    if (invalid) return { ...base, outcome: 'INVALID_ARGUMENT', attempts: 0, message: invalid };
    const deadlineAtMs = Date.now() + (options.deadlineMs ?? this.options.deadlineMs ?? TRANSFER_DEADLINE_MS_DEFAULT);
    const shard = shardOfItem(this.topology, input.from);
    if (input.sessionEpoch !== undefined) session.setEpoch(shard, input.sessionEpoch);
    // The hot path (an id this client made up, a session already open on the shard) neither
    // awaits nor allocates here: at 64 clients the client process is a third of the machine's
    // CPU, and an await plus two object spreads per transfer showed in its profile.
    let sessionEpoch =
      input.sessionEpoch ??
      (input.requestId !== undefined ? session.sentEpoch(requestId, shard) : undefined) ??
      session.epochOn(shard);
    if (sessionEpoch === undefined) {
      const opened = await this.sessionEpoch(session, shard, deadlineAtMs);
      // Not sent: nothing ran (but the caller cannot tell that from other failures: UNKNOWN).
      if (!opened.ok) return { ...base, attempts: 1, ...failureOutcome(opened.error) };
      sessionEpoch = opened.epoch;
    }
    session.noteSent(requestId, shard, sessionEpoch);
    const request = {
      cluster: this.cluster,
      clientId: session.clientId,
      requestId,
      from: input.from,
      to: input.to,
      amount: input.amount,
      acknowledgedBelow: session.acknowledgedBelow(requestId),
      sessionEpoch,
    };
    const result =
      this.options.coalesce !== false
        ? await this.transferCoalesced(shard, request, deadlineAtMs)
        : await this.transferByCalls(shard, base, request, deadlineAtMs);
    if (result.outcome === 'FAILED_PRECONDITION') session.forgetEpoch(shard, sessionEpoch);
    result.sessionEpoch = sessionEpoch;
    return result;
  }

  private async transferByCalls(
    shard: number,
    base: Omit<TransferResult, 'outcome' | 'attempts'>,
    request: {
      cluster: string;
      clientId: string;
      requestId: number;
      from: number;
      to: number;
      amount: number;
      acknowledgedBelow: number;
      sessionEpoch: number;
    },
    deadlineAtMs: number,
  ): Promise<TransferResult> {
    let attempts = 0;
    for (let aborts = 0; ; aborts += 1) {
      const call = await this.callShard<TransferReply>(shard, 'transfer', request, deadlineAtMs, isUsableTransferReply);
      attempts += call.attempts;
      const result = transferResultOf(base, call, attempts);
      const abortRetriesMax = this.options.abortRetriesMax ?? ABORT_RETRIES_MAX_DEFAULT;
      if (result.outcome !== 'ABORTED' || aborts >= abortRetriesMax || Date.now() >= deadlineAtMs) return result;
      await sleep(Math.min(backoffDelayMs(this.backoff(), aborts + 2), deadlineAtMs - Date.now()));
    }
  }

  /**
   * The session's epoch on the shard, opening the session there on first use (OpenSession
   * returns the existing session if the shard has one, so a retried open is harmless).
   */
  private async sessionEpoch(session: ClientSession, shard: number, deadlineAtMs: number): Promise<SessionOpen> {
    const known = session.epochOn(shard);
    if (known !== undefined) return { ok: true, epoch: known };
    let opening = session.opening.get(shard);
    if (opening === undefined) {
      opening = this.callShard<OpenSessionReply>(
        shard,
        'openSession',
        { cluster: this.cluster, clientId: session.clientId, shard },
        deadlineAtMs,
        (reply) => reply.sessionEpoch > 0,
      ).then((call): SessionOpen => {
        if (!call.ok) return { ok: false, error: call.error };
        session.setEpoch(shard, call.value.sessionEpoch);
        return { ok: true, epoch: call.value.sessionEpoch };
      });
      session.opening.set(shard, opening);
      void opening.finally(() => session.opening.delete(shard));
    }
    return opening;
  }

  /**
   * One transfer through the coalescer: retried with the same ids until a definite answer,
   * a refusal, the ABORTED retry bound or the deadline (then the outcome is UNKNOWN).
   */
  private async transferCoalesced(
    shard: number,
    request: {
      clientId: string;
      requestId: number;
      from: number;
      to: number;
      amount: number;
      acknowledgedBelow: number;
      sessionEpoch: number;
    },
    deadlineAtMs: number,
  ): Promise<TransferResult> {
    const base = {
      clientId: request.clientId,
      requestId: request.requestId,
      from: request.from,
      to: request.to,
      amount: request.amount,
    };
    const abortRetriesMax = this.options.abortRetriesMax ?? ABORT_RETRIES_MAX_DEFAULT;
    let attempts = 0;
    let aborts = 0;
    let failures = 0;
    for (;;) {
      attempts += 1;
      const result: CoalescedResult = await this.coalescer.submit(shard, request);
      let outcome: TransferOutcome;
      let message: string | undefined;
      if (result.ok) {
        outcome = batchEntryOutcome(result.reply.outcome);
        message = result.reply.message || undefined;
        if (outcome === 'COMMITTED' || outcome === 'INSUFFICIENT_FUNDS') {
          return {
            outcome,
            clientId: request.clientId,
            requestId: request.requestId,
            from: request.from,
            to: request.to,
            amount: request.amount,
            decisionIndex: result.reply.decisionIndex,
            coordinatorShard: result.reply.coordinatorShard,
            attempts,
            message: undefined,
            errorCode: undefined,
            sessionEpoch: request.sessionEpoch,
            deduplicated: result.reply.deduplicated === true,
          };
        }
        if (outcome === 'INVALID_ARGUMENT' || outcome === 'FAILED_PRECONDITION')
          return { ...base, outcome, attempts, ...(message ? { message } : {}) };
      } else {
        const failure = failureOutcome({ ...result.error, leaderHint: undefined });
        if (!isRetryable(result.error.code) && failure.outcome !== 'ABORTED') return { ...base, attempts, ...failure };
        outcome = failure.outcome;
        message = failure.message;
      }
      if (outcome === 'ABORTED') aborts += 1;
      else failures += 1;
      if (Date.now() >= deadlineAtMs || aborts > abortRetriesMax) {
        return {
          ...base,
          outcome: outcome === 'ABORTED' ? 'ABORTED' : 'UNKNOWN',
          attempts,
          ...(message ? { message } : {}),
        };
      }
      await sleep(
        Math.min(backoffDelayMs(this.backoff(), aborts + failures + 1), Math.max(0, deadlineAtMs - Date.now())),
      );
    }
  }

  private async sendCoalesced(shard: number, entries: BatchEntry[]): Promise<CoalescedResult[]> {
    const deadlineAtMs = Date.now() + (this.options.attemptTimeoutMs ?? ATTEMPT_TIMEOUT_MS_DEFAULT);
    const request = { cluster: this.cluster, clientId: entries[0]!.clientId, entries };
    const call = await this.callShard<BatchTransferReply>(
      shard,
      'batchTransfer',
      request,
      deadlineAtMs,
      (reply) => reply.results.length === entries.length,
    );
    if (!call.ok) return entries.map(() => ({ ok: false as const, error: call.error }));
    return call.value.results.map((reply) => ({ ok: true as const, reply }));
  }

  /**
   * The stream to the replica that last served this shard as its leader, opened on first use.
   * None until a call has found the leader (the call path knows how to look for one).
   */
  private streamFor(shard: number): TransferStreamChannel | undefined {
    if (this.options.stream === false || this.streamsUnsupported || this.closed) return undefined;
    const address = this.lastAnswered.get(shard);
    if (address === undefined) return undefined;
    const open = this.streams.get(shard);
    if (open !== undefined && !open.broken && open.address === address) return open;
    open?.close();
    const attemptTimeoutMs = this.options.attemptTimeoutMs ?? ATTEMPT_TIMEOUT_MS_DEFAULT;
    const channel = new TransferStreamChannel(
      this.stub(address),
      address,
      this.cluster,
      attemptTimeoutMs,
      (broken, why) => this.streamBroken(shard, broken, why),
    );
    this.streams.set(shard, channel);
    return channel;
  }

  private streamBroken(shard: number, channel: TransferStreamChannel, why: ChannelBreak): void {
    if (this.streams.get(shard) === channel) this.streams.delete(shard);
    if (why.reason === 'closed') return;
    if (why.reason === 'unsupported') this.streamsUnsupported = true;
    if (this.lastAnswered.get(shard) !== channel.address) return;
    // The next transfers find the leader by call (or go straight to the one the replica named).
    const hinted = why.leaderHint ? this.addressOf(shard, why.leaderHint.ordinal, why.leaderHint.address) : undefined;
    if (hinted !== undefined && hinted !== channel.address) this.lastAnswered.set(shard, hinted);
    else this.lastAnswered.delete(shard);
  }

  /** Many transfers in one call per round; entries that come back ABORTED or UNAVAILABLE are re-sent with their ids. */
  async batchTransfer(inputs: readonly TransferRequestInput[], options: CallOptions = {}): Promise<TransferResult[]> {
    assert(inputs.length <= BATCH_ENTRIES_MAX, `batch of ${inputs.length} entries, at most ${BATCH_ENTRIES_MAX}`);
    const session = options.session ?? this.session;
    const results: TransferResult[] = inputs.map((input) => {
      const requestId = input.requestId ?? session.nextRequestId();
      const invalid = this.checkInput(input, session.clientId, requestId);
      return newTransferResult(
        session.clientId,
        requestId,
        input,
        invalid === undefined ? 'UNKNOWN' : 'INVALID_ARGUMENT',
        invalid,
      );
    });
    if (inputs.length === 0) return results;
    const deadlineAtMs = Date.now() + (options.deadlineMs ?? this.options.deadlineMs ?? TRANSFER_DEADLINE_MS_DEFAULT);
    const abortRetriesMax = this.options.abortRetriesMax ?? ABORT_RETRIES_MAX_DEFAULT;
    for (let round = 0; round <= abortRetriesMax && Date.now() < deadlineAtMs; round += 1) {
      const pending = results.filter(
        (result) => result.outcome === 'UNKNOWN' || (result.outcome === 'ABORTED' && round > 0),
      );
      if (pending.length === 0) break;
      if (round > 0) await sleep(Math.min(backoffDelayMs(this.backoff(), round + 1), deadlineAtMs - Date.now()));
      await this.batchRound(session, pending, deadlineAtMs);
      if (!pending.some((result) => result.outcome === 'ABORTED' || result.outcome === 'UNKNOWN')) break;
    }
    return results;
  }

  /**
   * One BatchTransfer per coordinator shard (the shard of each entry's `from`), in parallel:
   * each goes straight to its shard's leader instead of through one leader that forwards
   * the others' entries (a second call, and that leader's CPU).
   */
  private async batchRound(session: ClientSession, pending: TransferResult[], deadlineAtMs: number): Promise<void> {
    const byShard = new Map<number, TransferResult[]>();
    for (const result of pending) {
      const shard = shardOfItem(this.topology, result.from);
      const group = byShard.get(shard);
      if (group) group.push(result);
      else byShard.set(shard, [result]);
    }
    await Promise.all(
      [...byShard].map(([shard, group]) => this.batchRoundOnShard(shard, session, group, deadlineAtMs)),
    );
  }

  private async batchRoundOnShard(
    shard: number,
    session: ClientSession,
    pending: TransferResult[],
    deadlineAtMs: number,
  ): Promise<void> {
    if (pending.some((result) => result.sessionEpoch === undefined)) {
      const opened = await this.sessionEpoch(session, shard, deadlineAtMs);
      if (!opened.ok) {
        const failure = failureOutcome(opened.error);
        for (const result of pending)
          if (result.sessionEpoch === undefined) Object.assign(result, failure, { attempts: result.attempts + 1 });
        pending = pending.filter((result) => result.sessionEpoch !== undefined);
        if (pending.length === 0) return;
      } else {
        // Fixed at the first send: every retry of an entry names the same session.
        for (const result of pending) result.sessionEpoch ??= opened.epoch;
      }
    }
    const request = {
      cluster: this.cluster,
      clientId: session.clientId,
      entries: pending.map((result) => ({
        requestId: result.requestId,
        from: result.from,
        to: result.to,
        amount: result.amount,
        clientId: '',
        acknowledgedBelow: 0,
        sessionEpoch: result.sessionEpoch!,
      })),
    };
    const call = await this.callShard<BatchTransferReply>(
      shard,
      'batchTransfer',
      request,
      deadlineAtMs,
      (reply) => reply.results.length === pending.length,
    );
    if (!call.ok) {
      const failure = failureOutcome(call.error);
      for (const result of pending) {
        result.attempts += call.attempts;
        Object.assign(result, failure);
      }
      return;
    }
    const replies = call.value.results;
    for (let index = 0; index < pending.length; index += 1) {
      const result = pending[index]!;
      const reply = replies[index]!;
      result.attempts += call.attempts;
      result.outcome = batchEntryOutcome(reply.outcome);
      result.decisionIndex = reply.decisionIndex;
      result.coordinatorShard = reply.coordinatorShard;
      if (reply.message) result.message = reply.message;
      if (result.outcome === 'FAILED_PRECONDITION') session.forgetEpoch(shard, result.sessionEpoch!);
    }
  }

  /** Balances of the given items, one call per shard (not a snapshot across shards). */
  async balance(
    items: readonly number[],
    consistency: Consistency = Consistency.LINEARIZABLE,
    options: CallOptions = {},
  ): Promise<Map<number, number>> {
    const byShard = new Map<number, number[]>();
    for (const item of items) {
      const check = checkItemInTopology(this.topology, item);
      if (!check.ok) throw new ShardbankClientError(check.message, 'INVALID_ARGUMENT');
      const shard = shardOfItem(this.topology, item);
      byShard.set(shard, [...(byShard.get(shard) ?? []), item]);
    }
    const deadlineAtMs = Date.now() + (options.deadlineMs ?? this.options.deadlineMs ?? TRANSFER_DEADLINE_MS_DEFAULT);
    const balances = new Map<number, number>();
    const calls = [...byShard].flatMap(([shard, shardItems]) =>
      chunk(shardItems, BALANCE_ITEMS_PER_CALL_MAX).map((part) => ({ shard, part })),
    );
    const replies = await Promise.all(
      calls.map(({ shard, part }) =>
        this.callShard<GetBalanceReply>(
          shard,
          'getBalance',
          { cluster: this.cluster, items: part, consistency },
          deadlineAtMs,
          () => true,
        ),
      ),
    );
    for (const reply of replies) {
      if (!reply.ok)
        throw new ShardbankClientError(
          `balance: ${reply.error.codeName}: ${reply.error.details}`,
          reply.error.codeName,
        );
      for (const entry of reply.value.balances) balances.set(entry.item, entry.balance);
    }
    return balances;
  }

  /** One GetBalance on one replica, no retry (chaos compares replicas this way). */
  async balanceAt(
    address: string,
    items: readonly number[],
    consistency: Consistency,
    timeoutMs = STATUS_TIMEOUT_MS_DEFAULT * 5,
  ): Promise<CallResult<GetBalanceReply>> {
    return unaryCall<unknown, GetBalanceReply>(
      this.stub(address),
      'getBalance',
      { cluster: this.cluster, items: [...items], consistency },
      timeoutMs,
    );
  }

  /** Asks every replica about itself (local_only) and merges; a replica that does not answer is `down`. */
  async clusterStatus(timeoutMs = STATUS_TIMEOUT_MS_DEFAULT): Promise<ClusterView> {
    const targets = this.endpoints.flatMap((replicas, shard) =>
      replicas.map((address, ordinal) => ({ shard, ordinal, address })),
    );
    const probes: ReplicaProbe[] = await Promise.all(
      targets.map(async ({ shard, ordinal, address }) => {
        const reply = await unaryCall<unknown, ClusterStatusReply>(
          this.stub(address),
          'clusterStatus',
          { cluster: this.cluster, localOnly: true },
          timeoutMs,
        );
        const status = reply.ok
          ? (reply.value.shards
              .flatMap((entry) => entry.replicas)
              .find((r) => r.shard === shard && r.ordinal === ordinal) ?? reply.value.shards[0]?.replicas[0])
          : undefined;
        return { shard, ordinal, address, status, pid: this.options.pidOf?.(shard, ordinal) ?? null };
      }),
    );
    return mergeClusterStatus(this.cluster, this.topology, probes);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const channel of [...this.streams.values()]) channel.close();
    this.streams.clear();
    for (const stub of this.stubs.values()) stub.close();
    this.stubs.clear();
    await this.watcherStarting;
    await this.leaderSource?.close();
  }

  private sessionFor(clientId: string | undefined, session: ClientSession | undefined): ClientSession {
    if (clientId !== undefined) return new ClientSession(checkClientId(clientId).ok ? clientId : 'invalid');
    return session ?? this.session;
  }

  private checkInput(input: TransferRequestInput, clientId: string, requestId: number): string | undefined {
    if (this.options.validate === false) return undefined;
    // One check at a time: a batch of a thousand entries runs this a thousand times.
    const client = checkClientId(input.clientId ?? clientId);
    if (!client.ok) return client.message;
    const request = checkRequestId(requestId);
    if (!request.ok) return request.message;
    const transfer = checkTransferInput(
      this.topology,
      input,
      this.options.maxTransferAmount ?? MAX_TRANSFER_AMOUNT_DEFAULT,
    );
    return transfer.ok ? undefined : transfer.message;
  }

  private backoff(): BackoffPolicy {
    return this.options.backoff ?? DEFAULT_BACKOFF;
  }

  private stub(address: string): BankStub {
    let stub = this.stubs.get(address);
    if (stub === undefined) {
      assert(!this.closed, 'client is closed');
      stub = new BankStub(address, this.channelCredentials, {
        ...(this.tlsOn ? tlsChannelOptions(address) : {}),
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1000,
        'grpc.enable_retries': 0,
        // Channelz keeps per-call statistics and traces nobody reads: CPU on every call.
        'grpc.enable_channelz': 0,
      });
      this.stubs.set(address, stub);
    }
    return stub;
  }

  /**
   * Calls the shard until a usable answer, a non-retryable error or the deadline.
   * Order of preference: a fresh leader hint, the NATS leader, the last replica that
   * answered, then the others in turn; jittered backoff between failures.
   */
  private async callShard<Reply>(
    shard: number,
    method: 'openSession' | 'transfer' | 'batchTransfer' | 'getBalance',
    request: unknown,
    deadlineAtMs: number,
    usable: (reply: Reply) => boolean,
  ): Promise<ShardCall<Reply>> {
    const route: RouteState = {
      shard,
      hint: undefined,
      failed: new Set(),
      rotation: Math.floor(Math.random() * 1024),
      failures: 0,
    };
    let lastError: CallError = {
      code: 4,
      codeName: 'DEADLINE_EXCEEDED',
      details: 'deadline passed before any attempt',
      leaderHint: undefined,
    };
    let attempts = 0;
    while (Date.now() < deadlineAtMs) {
      const address = this.pickAddress(route);
      const timeoutMs = Math.min(
        this.options.attemptTimeoutMs ?? ATTEMPT_TIMEOUT_MS_DEFAULT,
        deadlineAtMs - Date.now(),
      );
      attempts += 1;
      const result = await unaryCall<unknown, Reply>(this.stub(address), method, request, timeoutMs);
      if (result.ok && usable(result.value)) {
        // The replica that served it (the leader, if a follower forwarded) is tried first next time.
        const served = result.leaderHint
          ? this.addressOf(shard, result.leaderHint.ordinal, result.leaderHint.address)
          : address;
        this.lastAnswered.set(shard, served);
        return { ok: true, value: result.value, address, attempts };
      }
      lastError = result.ok
        ? { code: 13, codeName: 'INTERNAL', details: `unusable reply from ${address}`, leaderHint: undefined }
        : result.error;
      if (!isRetryable(lastError.code)) return { ok: false, error: lastError, attempts };
      const followHint = this.noteFailure(route, address, lastError);
      if (!followHint) {
        route.failures += 1;
        await sleep(Math.min(backoffDelayMs(this.backoff(), route.failures), deadlineAtMs - Date.now()));
      }
    }
    return { ok: false, error: lastError, attempts };
  }

  private pickAddress(route: RouteState): string {
    const replicas = this.endpoints[route.shard]!;
    if (route.hint !== undefined) {
      const hint = route.hint;
      route.hint = undefined;
      return hint;
    }
    const watched = this.leaderSource?.leader(route.shard);
    if (watched && !route.failed.has(this.addressOf(route.shard, watched.leaderOrdinal, watched.address))) {
      return this.addressOf(route.shard, watched.leaderOrdinal, watched.address);
    }
    const last = this.lastAnswered.get(route.shard);
    if (last !== undefined && !route.failed.has(last)) return last;
    if (route.failed.size >= replicas.length) route.failed.clear();
    for (let step = 0; step < replicas.length; step += 1) {
      route.rotation += 1;
      const candidate = replicas[route.rotation % replicas.length]!;
      if (!route.failed.has(candidate)) return candidate;
    }
    return replicas[route.rotation % replicas.length]!;
  }

  /** Records a failed attempt; returns true when a fresh leader hint should be tried at once. */
  private noteFailure(route: RouteState, address: string, error: CallError): boolean {
    route.failed.add(address);
    if (this.lastAnswered.get(route.shard) === address) this.lastAnswered.delete(route.shard);
    const watched = this.leaderSource?.leader(route.shard);
    if (
      watched &&
      this.addressOf(route.shard, watched.leaderOrdinal, watched.address) === address &&
      error.leaderHint?.ordinal !== watched.leaderOrdinal
    ) {
      this.leaderSource?.forgetLeader(route.shard, watched.ballot);
    }
    const hint = error.leaderHint;
    if (hint === undefined) return false;
    const hinted = this.addressOf(route.shard, hint.ordinal, hint.address);
    if (hinted === address || route.failed.has(hinted)) return false;
    route.hint = hinted;
    return true;
  }

  /** Our own endpoint for an ordinal wins over an announced address (which may be a pod name). */
  private addressOf(shard: number, ordinal: number, announced: string | undefined): string {
    return this.endpoints[shard]?.[ordinal] ?? announced ?? this.endpoints[shard]![0]!;
  }
}

function isUsableTransferReply(reply: TransferReply): boolean {
  return (
    reply.outcome === Outcome.COMMITTED ||
    reply.outcome === Outcome.INSUFFICIENT_FUNDS ||
    reply.outcome === Outcome.ABORTED
  );
}

function transferResultOf(
  base: Omit<TransferResult, 'outcome' | 'attempts'>,
  call: ShardCall<TransferReply>,
  attempts: number,
): TransferResult {
  if (!call.ok) return { ...base, attempts, ...failureOutcome(call.error) };
  const reply = call.value;
  const outcome: TransferOutcome =
    reply.outcome === Outcome.COMMITTED
      ? 'COMMITTED'
      : reply.outcome === Outcome.INSUFFICIENT_FUNDS
        ? 'INSUFFICIENT_FUNDS'
        : 'ABORTED';
  return {
    ...base,
    outcome,
    attempts,
    decisionIndex: reply.decisionIndex,
    coordinatorShard: reply.coordinatorShard,
    ...(outcome !== 'ABORTED' ? { deduplicated: reply.deduplicated === true } : {}),
    ...(reply.message ? { message: reply.message } : {}),
  };
}

/**
 * Every field present from the start, so the thousands of results of a batch share one
 * object shape (adding fields later cost a batch client a sixth of its time in profiles).
 */
function newTransferResult(
  clientId: string,
  requestId: number,
  input: TransferRequestInput,
  outcome: TransferOutcome,
  message: string | undefined,
): TransferResult {
  return {
    outcome,
    clientId,
    requestId,
    from: input.from,
    to: input.to,
    amount: input.amount,
    decisionIndex: undefined,
    coordinatorShard: undefined,
    attempts: 0,
    message,
    errorCode: undefined,
    sessionEpoch: input.sessionEpoch,
    deduplicated: undefined,
  };
}

function failureOutcome(error: CallError): Pick<TransferResult, 'outcome' | 'message' | 'errorCode'> {
  const outcome: TransferOutcome =
    error.codeName === 'INVALID_ARGUMENT'
      ? 'INVALID_ARGUMENT'
      : // Refused credentials or rights: definitely not run (errorCode says which).
        error.codeName === 'FAILED_PRECONDITION' ||
          error.codeName === 'UNAUTHENTICATED' ||
          error.codeName === 'PERMISSION_DENIED'
        ? 'FAILED_PRECONDITION'
        : error.codeName === 'ABORTED'
          ? 'ABORTED'
          : 'UNKNOWN';
  const refused = error.codeName === 'UNAUTHENTICATED' || error.codeName === 'PERMISSION_DENIED';
  return {
    outcome,
    message: refused ? `${error.codeName}: ${error.details}` : error.details,
    errorCode: codeName(error.code),
  };
}

function batchEntryOutcome(outcome: Outcome): TransferOutcome {
  switch (outcome) {
    case Outcome.COMMITTED:
      return 'COMMITTED';
    case Outcome.INSUFFICIENT_FUNDS:
      return 'INSUFFICIENT_FUNDS';
    case Outcome.ABORTED:
      return 'ABORTED';
    case Outcome.INVALID_ARGUMENT:
      return 'INVALID_ARGUMENT';
    case Outcome.FAILED_PRECONDITION:
      return 'FAILED_PRECONDITION';
    case Outcome.UNAVAILABLE:
    case Outcome.OUTCOME_UNSPECIFIED:
    case Outcome.UNRECOGNIZED:
      return 'UNKNOWN';
    default:
      return assertNever(outcome, 'batch entry outcome');
  }
}

function checkItemInTopology(topology: Topology, item: number): InputCheck {
  if (!Number.isSafeInteger(item) || item < 1 || item > topology.shards * topology.itemsPerShard) {
    return {
      ok: false,
      field: 'items',
      message: `items: ${String(item)} is not an item from 1 to ${topology.shards * topology.itemsPerShard}`,
    };
  }
  return { ok: true };
}
