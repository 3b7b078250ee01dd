// One replica of one shard as a pure, deterministic state machine: the Paxos core, the bank
// state machine applied from its log, and the leader's volatile work (client requests
// waiting for their outcome, two-phase-commit timers, conflict retries). Like the core, it
// performs no I/O: the real driver (node/replica) and the simulator (test/sim) feed it
// messages, ticks and persistence acknowledgements, and carry out its ShardReady.
//
// Replies to clients and messages to other shards are produced only from applied state.
import { assert, invariantViolated } from '../util/assert.js';
import type { Topology } from '../cluster/topology.js';
import { shardOfItem } from '../cluster/topology.js';
import { Outcome } from '../gen/shardbank/v1/bank.js';
import type { Command, PaxosMessage, TxMessage } from '../gen/shardbank/v1/peer.js';
import { decodeCommandBatch, encodeCommandBatch } from './command-codec.js';
import { isConfigurationEntry } from '../paxos/membership.js';
import { BankState, ABORT_REASONS, type ApplyEvent, type TxRecord } from '../bank/bank-state.js';
import { txIdOf } from '../bank/txid.js';
import { ProposalQueue, PENDING_ACKS_MAX } from './proposal-queue.js';
import { TwoPhaseCommit, type TwoPhaseCommitTiming, type TxPhaseObserver } from './two-phase-commit.js';
import { LinearizableReads } from './linearizable-reads.js';
import { expiredMessage, transferDigest } from '../bank/session-table.js';
import {
  PaxosCore,
  type CoreEvent,
  type PaxosConfig,
  type PersistWork,
  type RecoveredAcceptorState,
} from '../paxos/paxos-core.js';

export interface ShardTimingConfig extends TwoPhaseCommitTiming {
  /** A linearizable read waits at most this long for pending credits to be decided. */
  readWaitTicksMax: number;
  conflictRetriesMax: number;
  conflictBackoffTicksMax: number;
}

/**
 * Pacing under heavy concurrency. A slot costs every replica a durable write, a frame each
 * way and several event-loop turns whatever it carries (about 0.3 ms of CPU per replica here,
 * against tens of microseconds per command), so on a saturated machine more commands per slot
 * means more transfers per second. With many clients waiting, a leader whose queue is short
 * holds it until it reaches `targetCommands` or the driver releases it (a short timer;
 * at the latest the next tick). With few clients waiting nothing is ever held, so a lone
 * client's latency does not change.
 */
export interface PacingConfig {
  /** Hold only while at least this many client requests wait on this leader. */
  minWaiters: number;
  /** Propose at once when this many commands are queued. */
  targetCommands: number;
}

export interface ShardNodeConfig {
  topology: Topology;
  shard: number;
  /** The replica's slot (its place in the peer table): the sender 2PC messages name. */
  ordinal: number;
  /** Its member id in the shard's configuration (docs/ARCHITECTURE.md, "Membership"); default: the slot. */
  member?: number;
  /** The shard's founding size, the core's initial configuration forever; default: topology.replicasPerShard. */
  foundingReplicas?: number;
  paxos: Omit<PaxosConfig, 'shard' | 'ordinal' | 'replicaCount' | 'random'>;
  timing: ShardTimingConfig;
  commandsPerSlotMax: number;
  snapshotEverySlots: number;
  /** Off when absent. */
  pacing?: PacingConfig;
  random: () => number;
  /** Observation hook (simulator, tests): every applied slot, in order. Must not mutate. */
  onApply?: (slot: number, value: Buffer) => void;
  /** Observation hook (the replica's metrics): 2PC phase durations on the coordinator. */
  txPhases?: TxPhaseObserver;
}

export const DEFAULT_TIMING: ShardTimingConfig = {
  txScanTicks: 2,
  txResendTicks: 8,
  txInquiryTicks: 40,
  readWaitTicksMax: 80,
  conflictRetriesMax: 6,
  conflictBackoffTicksMax: 8,
};

export interface TransferInput {
  clientId: string;
  requestId: number;
  from: number;
  to: number;
  amount: number;
  /** The client's acknowledged watermark (0: none). */
  acknowledgedBelow: number;
  /** The epoch of the client's session on this shard (submitOpenSession). */
  sessionEpoch: number;
}

export type ErrorCode = 'not-leader' | 'aborted' | 'stale' | 'mismatch' | 'expired' | 'unavailable';

export type ClientReply =
  | { token: number; kind: 'transfer'; outcome: number; index: number; deduplicated?: true }
  | { token: number; kind: 'error'; code: ErrorCode; message: string; leaderOrdinal: number }
  | { token: number; kind: 'read'; balances: number[]; index: number }
  | { token: number; kind: 'session'; epoch: number; index: number };

export interface ShardReady {
  messages: PaxosMessage[];
  persist: PersistWork | undefined;
  messagesAfterPersist: PaxosMessage[];
  txMessages: TxMessage[];
  replies: ClientReply[];
  events: CoreEvent[];
}

interface Waiter {
  tokens: number[];
  input: TransferInput;
  attempts: number;
}

export class ShardNode {
  readonly config: ShardNodeConfig;
  readonly core: PaxosCore;
  private bankState: BankState;
  private ticks = 0;
  private lastSnapshotIndex = 0;
  private wasReadyLeader = false;
  // Leader-volatile state; rebuilt from replicated state by each new leader.
  private readonly waiters = new WaiterTable();
  /** OpenSession requests by client id, answered when their command applies. */
  private readonly openWaiters = new Map<string, number[]>();
  private readonly queue = new ProposalQueue();
  private readonly twoPhaseCommit: TwoPhaseCommit;
  /** Pacing: the queue is being held for more commands; released by the driver or a tick. */
  private held = false;
  private holdReleased = false;
  private readonly proposedCommands = new WeakMap<Buffer, Command[]>();
  private retries: { dueTick: number; clientId: string; requestId: number }[] = [];
  private readonly reads: LinearizableReads;
  /**
   * Counters for /metrics: how well commands batch into slots, the last slot proposed (for the
   * commit latency) and the ABORT decisions applied as leader, by reason (ABORT_REASONS).
   */
  readonly counters = {
    commandsProposed: 0,
    slotsProposed: 0,
    txMessagesSent: 0,
    pacingHolds: 0,
    lastProposedSlot: 0,
    txAborts: [0, 0, 0, 0, 0, 0],
  };
  // Outputs.
  private replies: ClientReply[] = [];

  constructor(config: ShardNodeConfig, recovered?: RecoveredAcceptorState) {
    this.config = config;
    const { topology, shard, ordinal } = config;
    const member = config.member ?? ordinal;
    const replicaCount = config.foundingReplicas ?? topology.replicasPerShard;
    this.core = new PaxosCore(
      { ...config.paxos, shard, ordinal: member, replicaCount, random: config.random },
      recovered,
    );
    this.bankState = new BankState(topology, shard);
    this.twoPhaseCommit = new TwoPhaseCommit(shard, ordinal, config.timing, this.queue, config.txPhases);
    this.reads = new LinearizableReads(config.timing.readWaitTicksMax);
  }

  get bank(): BankState {
    return this.bankState;
  }

  get isReadyLeader(): boolean {
    return this.core.isReadyLeader;
  }

  // ---- Inputs ----

  tick(): void {
    this.ticks += 1;
    // A held batch never waits longer than a tick, whatever the driver does.
    this.releaseHeldProposals();
    this.core.tick();
    this.twoPhaseCommit.tick(this.core.isReadyLeader, this.bankState);
    if (!this.core.isReadyLeader) return;
    if (this.queue.ackCount > 0 && this.queue.length === 0) this.queue.queueAcks();
    this.runRetries();
    this.reads.expire(this.ticks);
  }

  stepPaxos(message: PaxosMessage): void {
    this.core.step(message);
  }

  persisted(id: number): void {
    this.core.persisted(id);
  }

  submitTransfer(input: TransferInput, token: number): void {
    if (!this.core.isReadyLeader) {
      this.replyError(token, 'not-leader', 'not the leader of this shard');
      return;
    }
    const existing = this.waiters.get(input.clientId, input.requestId);
    if (existing) {
      if (existing.input.sessionEpoch !== input.sessionEpoch) {
        this.replyError(
          token,
          'unavailable',
          `request_id: ${input.requestId} is in flight under session epoch ${existing.input.sessionEpoch}, not ${input.sessionEpoch}; retry`,
        );
      } else if (!sameTransfer(existing.input, input)) {
        this.replyError(token, 'mismatch', `request_id: ${input.requestId} is in flight with other from/to/amount`);
      } else {
        existing.tokens.push(token);
      }
      return;
    }
    // Fast path on applied state; the authoritative check runs again when the entry applies.
    const check = this.bankState.checkSession(
      input.clientId,
      input.sessionEpoch,
      input.requestId,
      input.from,
      input.to,
      input.amount,
    );
    // Only refusals that later state cannot undo are given on arrival. An epoch this replica's
    // applied state has not issued yet may have been issued since (a leader that was paused or
    // cut off still believes it leads): the request goes through the log, where the check on
    // apply is authoritative and the slot is chosen only under the current leader.
    if (check.kind === 'expired' && check.issued) {
      this.replyError(token, 'expired', expiredMessage(input.clientId, check));
      return;
    }
    if (check.kind === 'stale') {
      this.replyError(
        token,
        'stale',
        `request_id: ${input.requestId} is at or below the client's watermark ${check.watermark}; it will not run again`,
      );
      return;
    }
    if (check.kind === 'mismatch') {
      this.replyError(token, 'mismatch', `request_id: ${input.requestId} was already used with other from/to/amount`);
      return;
    }
    if (check.kind === 'duplicate' && check.result.state === 'final') {
      this.replies.push({
        token,
        kind: 'transfer',
        outcome: check.result.outcome,
        index: check.result.index,
        deduplicated: true,
      });
      return;
    }
    const waiter: Waiter = { tokens: [token], input, attempts: 0 };
    this.waiters.add(waiter);
    // A request already in flight (an attempt by an earlier leader) is joined, not re-run.
    if (check.kind === 'duplicate') return;
    this.startAttempt(waiter);
  }

  /**
   * Opens the client's session on this shard, or finds the one it has: replies its epoch. An
   * open session in the applied state is answered at once; otherwise an OpenSession command
   * goes through the log (an effect-free command, so a retried open is harmless).
   */
  submitOpenSession(clientId: string, token: number): void {
    if (!this.core.isReadyLeader) {
      this.replyError(token, 'not-leader', 'not the leader of this shard');
      return;
    }
    const epoch = this.bankState.sessionEpochOf(clientId);
    if (epoch !== undefined) {
      this.replies.push({ token, kind: 'session', epoch, index: this.bankState.appliedIndex });
      return;
    }
    const waiting = this.openWaiters.get(clientId);
    if (waiting) {
      waiting.push(token);
      return;
    }
    this.openWaiters.set(clientId, [token]);
    this.propose({ body: { $case: 'openSession', openSession: { clientId } } });
  }

  /** A linearizable read of items of this shard: read-index, then wait for pending credits. */
  submitRead(items: number[], token: number): void {
    const id = this.reads.nextId();
    if (!this.core.readIndex(id)) {
      this.replyError(token, 'not-leader', 'linearizable reads are served by the leader');
      return;
    }
    this.reads.register(id, token, items);
  }

  stepTx(message: TxMessage): void {
    if (message.toShard !== this.config.shard || !message.body) return;
    if (!this.core.isReadyLeader) return;
    const body = message.body;
    const tpc = this.twoPhaseCommit;
    switch (body.$case) {
      case 'prepare':
        return tpc.onPrepare(message.fromShard, body, this.bankState);
      case 'vote':
        return tpc.onVote(message.fromShard, txIdOf(body.vote.txid), body.vote.yes, this.bankState);
      case 'inquiry':
        // A prepared participant's inquiry is its YES vote.
        return tpc.onVote(message.fromShard, txIdOf(body.inquiry.txid), true, this.bankState);
      case 'decision':
        return tpc.onDecision(message.fromShard, body, this.bankState);
      case 'ack':
        return tpc.onAck(txIdOf(body.ack.txid), this.bankState);
      default: {
        const unknown: never = body;
        void unknown;
      }
    }
  }

  /** Hand leadership to the most caught-up follower (graceful shutdown). */
  transferLeadership(): number {
    if (this.core.role !== 'leader') return -1;
    let best = -1;
    let bestCommit = -1;
    for (const [ordinal, commit] of this.core.followerCommitIndexes()) {
      if (commit > bestCommit) {
        best = ordinal;
        bestCommit = commit;
      }
    }
    if (best >= 0) this.core.transferLeadership(best);
    return best;
  }

  ready(): ShardReady {
    this.flushProposals();
    const core = this.core.ready();
    if (core.snapshotToApply) {
      this.bankState = BankState.fromSnapshot(this.config.topology, this.config.shard, core.snapshotToApply.data);
      this.lastSnapshotIndex = core.snapshotToApply.index;
      assert(this.bankState.appliedIndex === core.snapshotToApply.index, 'snapshot index mismatch');
    }
    for (const entry of core.committed) this.applySlot(entry.slot, entry.value);
    // Parallel commits: a cross-shard transfer is answered once its PREPARE applied here and the
    // participant voted YES (in an apply above or a vote since the last pass), not at its decision.
    for (const record of this.twoPhaseCommit.takeCommitted())
      this.resolve(this.waiters.get(record.clientId, record.requestId), Outcome.COMMITTED, record.prepareIndex);
    for (const event of core.events) if (event.type === 'read-failed') this.reads.onReadFailed(event.id);
    for (const read of core.readsReady) this.reads.onReadIndex(read.id, read.index, this.ticks);
    this.reads.serve(this.bankState);
    if (this.core.isReadyLeader && !this.wasReadyLeader) this.onLeadershipReady();
    if (!this.core.isReadyLeader && this.wasReadyLeader) this.onLeadershipLost();
    this.wasReadyLeader = this.core.isReadyLeader;
    this.maybeSnapshot();
    for (const outcome of this.reads.takeOutcomes()) {
      if (outcome.kind === 'read') this.replies.push(outcome);
      else this.replyError(outcome.token, outcome.code, outcome.message);
    }
    const ready: ShardReady = {
      messages: core.messages,
      persist: core.persist,
      messagesAfterPersist: core.messagesAfterPersist,
      txMessages: this.twoPhaseCommit.takeMessages(),
      replies: this.replies,
      events: core.events,
    };
    this.counters.txMessagesSent = this.twoPhaseCommit.messagesSent;
    this.replies = [];
    return ready;
  }

  /** True when ready() would hand out something or has proposals to flush. */
  hasQueuedWork(): boolean {
    // A held queue counts again once commands applied since then have filled it.
    return this.queue.length > 0 && this.core.canPropose && !(this.held && this.shouldHold());
  }

  /** Pacing holds the queue: the driver should call releaseHeldProposals() soon. */
  get proposalsHeld(): boolean {
    return this.held;
  }

  releaseHeldProposals(): void {
    if (this.held) this.holdReleased = true;
  }

  // ---- Proposals ----

  private startAttempt(waiter: Waiter): void {
    const { input } = waiter;
    const toShard = shardOfItem(this.config.topology, input.to);
    if (toShard === this.config.shard) {
      this.propose({ body: { $case: 'transfer', transfer: { ...input } } });
      return;
    }
    // A debit that applied state already shows to conflict is retried without a slot: the
    // attempt would cost this shard a CoordPrepare and the participant a PartPrepare and an
    // ABORT, and under contention such attempts can outrun a slow participant for good (each
    // one delays the votes that would release the reservation; swarm seed 46844).
    if (this.bankState.debitWouldConflict(input.from, input.amount)) {
      this.retryOrAbort(this.waiters.get(input.clientId, input.requestId));
      return;
    }
    // The participant prepares in parallel with our own PREPARE.
    const txid = this.twoPhaseCommit.beginAttempt(
      this.core.leaderBallot,
      toShard,
      { from: input.from, to: input.to, amount: input.amount },
      this.bankState,
    );
    this.propose({
      body: {
        $case: 'coordPrepare',
        coordPrepare: {
          txid,
          clientId: input.clientId,
          requestId: input.requestId,
          from: input.from,
          to: input.to,
          amount: input.amount,
          toShard,
          acknowledgedBelow: input.acknowledgedBelow,
          sessionEpoch: input.sessionEpoch,
        },
      },
    });
  }

  private propose(command: Command): void {
    this.queue.push(command);
  }

  private flushProposals(): void {
    const wasHeld = this.held;
    this.held = false;
    if (this.queue.length === 0 && this.queue.ackCount < PENDING_ACKS_MAX) return;
    if (this.core.role !== 'leader') {
      this.queue.clear();
      return;
    }
    if (!this.core.canPropose) return;
    if (this.shouldHold()) {
      this.held = true;
      if (!wasHeld) this.counters.pacingHolds += 1;
      return;
    }
    this.holdReleased = false;
    this.queue.queueAcks();
    while (this.queue.length > 0 && this.core.canPropose) {
      const commands = this.queue.take(this.config.commandsPerSlotMax);
      const value = encodeCommandBatch(commands);
      this.proposedCommands.set(value, commands);
      const slot = this.core.propose(value);
      assert(slot !== undefined, 'canPropose promised a slot');
      this.counters.commandsProposed += commands.length;
      this.counters.slotsProposed += 1;
      this.counters.lastProposedSlot = slot;
    }
  }

  private shouldHold(): boolean {
    const pacing = this.config.pacing;
    if (!pacing || this.holdReleased || this.waiters.size < pacing.minWaiters) return false;
    return this.queue.queuedWithAcks < pacing.targetCommands;
  }

  // ---- Apply ----

  private applySlot(slot: number, value: Buffer): void {
    this.config.onApply?.(slot, value);
    // A configuration entry is the Paxos core's (docs/ARCHITECTURE.md, "Membership"): a no-op here.
    if (value.length === 0 || isConfigurationEntry(value)) {
      this.bankState.apply(slot, { body: { $case: 'noop', noop: {} } });
      return;
    }
    // The very buffer this replica proposed comes back when it is chosen: apply the commands it
    // was encoded from instead of decoding it again (identity, so never another value's).
    const commands = this.proposedCommands.get(value) ?? decodeCommandBatch(value);
    this.proposedCommands.delete(value);
    const leader = this.core.role === 'leader';
    for (const command of commands) {
      const events = this.bankState.apply(slot, command);
      if (leader) for (const event of events) this.onApplied(event);
    }
  }

  private onApplied(event: ApplyEvent): void {
    switch (event.kind) {
      case 'noop':
        return;
      case 'transfer-final':
        return this.resolve(this.waiters.get(event.clientId, event.requestId), event.outcome, event.index);
      case 'transfer-conflict':
        return this.retryOrAbort(this.waiters.get(event.clientId, event.requestId));
      case 'request-rejected':
        return this.rejectWaiter(this.waiters.get(event.clientId, event.requestId), event.code, event.message);
      case 'request-duplicate':
        if (event.inflightTxid) return; // joined: resolved when that attempt is decided
        return this.resolve(this.waiters.get(event.clientId, event.requestId), event.outcome, event.index, true);
      case 'coord-prepared':
        return this.twoPhaseCommit.onCoordPrepared(event.record);
      case 'coord-decided':
        if (event.record.state === 'aborted' && event.record.abortReason < this.counters.txAborts.length)
          this.counters.txAborts[event.record.abortReason]! += 1;
        this.resolveCoordinated(event.record);
        return this.twoPhaseCommit.onCoordDecided(event.record, this.bankState);
      case 'coord-finished':
        return this.twoPhaseCommit.onCoordFinished(event.txid);
      case 'session-opened': {
        const tokens = this.openWaiters.get(event.clientId) ?? [];
        this.openWaiters.delete(event.clientId);
        for (const token of tokens)
          this.replies.push({ token, kind: 'session', epoch: event.epoch, index: event.index });
        return;
      }
      case 'part-voted':
        return this.twoPhaseCommit.onPartVoted(event.txid, event.coordinatorShard, event.yes);
      case 'part-decided':
        return this.twoPhaseCommit.onPartDecided(event.txid, event.coordinatorShard);
      default: {
        const unknown: never = event;
        void unknown;
      }
    }
  }

  /** The client's outcome of a coordinated transfer, once its decision applied. */
  private resolveCoordinated(record: TxRecord): void {
    if (record.tombstone || record.abortReason === ABORT_REASONS.rejected) return;
    const waiterKey = this.waiters.get(record.clientId, record.requestId);
    if (record.state === 'committed') this.resolve(waiterKey, Outcome.COMMITTED, record.prepareIndex);
    else if (record.abortReason === ABORT_REASONS.insufficientFunds)
      this.resolve(waiterKey, Outcome.INSUFFICIENT_FUNDS, record.decisionIndex);
    else this.retryOrAbort(waiterKey);
  }

  private onLeadershipReady(): void {
    this.twoPhaseCommit.onLeadershipReady(this.bankState);
  }

  private onLeadershipLost(): void {
    for (const waiter of this.waiters.values()) {
      for (const token of waiter.tokens) {
        this.replies.push({
          token,
          kind: 'error',
          code: 'not-leader',
          message: 'leadership lost; the outcome is unknown: retry with the same request id',
          leaderOrdinal: this.core.leaderOrdinal,
        });
      }
    }
    this.waiters.clear();
    for (const tokens of this.openWaiters.values())
      for (const token of tokens)
        this.replyError(token, 'not-leader', 'leadership lost while opening the session; retry');
    this.openWaiters.clear();
    this.queue.clear();
    this.twoPhaseCommit.onLeadershipLost();
    this.retries = [];
    this.reads.onLeadershipLost();
  }

  // ---- Client outcomes ----

  private resolve(waiter: Waiter | undefined, outcome: number, index: number, deduplicated = false): void {
    if (!waiter) return;
    this.waiters.remove(waiter);
    for (const token of waiter.tokens)
      this.replies.push(
        deduplicated
          ? { token, kind: 'transfer', outcome, index, deduplicated }
          : { token, kind: 'transfer', outcome, index },
      );
  }

  private rejectWaiter(waiter: Waiter | undefined, code: ErrorCode, message: string): void {
    if (!waiter) return;
    this.waiters.remove(waiter);
    for (const token of waiter.tokens) this.replyError(token, code, message);
  }

  /** A transient conflict is retried within a bound, then returned as a retryable ABORTED. */
  private retryOrAbort(waiter: Waiter | undefined): void {
    if (!waiter) return;
    if (waiter.attempts >= this.config.timing.conflictRetriesMax) {
      this.rejectWaiter(
        waiter,
        'aborted',
        'transaction aborted after repeated conflicts; retry with the same request id',
      );
      return;
    }
    waiter.attempts += 1;
    const spread = Math.min(2 ** waiter.attempts, this.config.timing.conflictBackoffTicksMax);
    const delay = 1 + Math.floor(this.config.random() * spread);
    const { clientId, requestId } = waiter.input;
    this.retries.push({ dueTick: this.ticks + delay, clientId, requestId });
  }

  private runRetries(): void {
    if (this.retries.length === 0) return;
    const due = this.retries.filter((r) => r.dueTick <= this.ticks);
    this.retries = this.retries.filter((r) => r.dueTick > this.ticks);
    for (const retry of due) {
      const waiter = this.waiters.get(retry.clientId, retry.requestId);
      if (waiter) this.startAttempt(waiter);
    }
  }

  private replyError(token: number, code: ErrorCode, message: string): void {
    this.replies.push({ token, kind: 'error', code, message, leaderOrdinal: this.core.leaderOrdinal });
  }

  // ---- Snapshots ----

  private maybeSnapshot(): void {
    const applied = this.bankState.appliedIndex;
    // Also once a configuration comes into force: a restart must never fall back to one older.
    const due = applied - this.lastSnapshotIndex >= this.config.snapshotEverySlots;
    if (!due && !this.core.configurationSnapshotDue) return;
    this.lastSnapshotIndex = applied;
    this.core.compact(applied, this.bankState.toSnapshot());
  }
}

/**
 * The leader's waiting requests by client id, then request id. Not one map keyed by a string
 * made of both: that string was built and hashed several times per transfer, while the client
 * id strings of a batch are one string whose hash is computed once, and request ids are numbers.
 */
class WaiterTable {
  private readonly byClient = new Map<string, Map<number, Waiter>>();
  /** Clients whose map is empty: kept for reuse (no map per request), swept past a bound. */
  private empty = 0;
  size = 0;

  get(clientId: string, requestId: number): Waiter | undefined {
    return this.byClient.get(clientId)?.get(requestId);
  }

  /** Adds a waiter for a request that has none. */
  add(waiter: Waiter): void {
    const { clientId, requestId } = waiter.input;
    let requests = this.byClient.get(clientId);
    if (requests === undefined) this.byClient.set(clientId, (requests = new Map()));
    else if (requests.size === 0) this.empty -= 1;
    if (requests.has(requestId)) invariantViolated(`two waiters for request ${requestId} of client ${clientId}`);
    requests.set(requestId, waiter);
    this.size += 1;
  }

  /** Removes this waiter (no other of the same request). */
  remove(waiter: Waiter): void {
    const { clientId, requestId } = waiter.input;
    const requests = this.byClient.get(clientId);
    if (requests === undefined || requests.get(requestId) !== waiter) return;
    requests.delete(requestId);
    this.size -= 1;
    if (requests.size > 0) return;
    this.empty += 1;
    if (this.empty > WAITER_CLIENTS_EMPTY_MAX) {
      for (const [id, map] of this.byClient) if (map.size === 0) this.byClient.delete(id);
      this.empty = 0;
    }
  }

  *values(): IterableIterator<Waiter> {
    for (const requests of this.byClient.values()) yield* requests.values();
  }

  clear(): void {
    this.byClient.clear();
    this.empty = 0;
    this.size = 0;
  }
}

const WAITER_CLIENTS_EMPTY_MAX = 1024;

function sameTransfer(a: TransferInput, b: TransferInput): boolean {
  return (
    transferDigest(a.from, a.to, a.amount) === transferDigest(b.from, b.to, b.amount) &&
    a.from === b.from &&
    a.to === b.to &&
    a.amount === b.amount
  );
}
