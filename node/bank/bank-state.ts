// The bank state machine of one shard, applied from the chosen log: balances, escrow
// reservations, two-phase-commit records (coordinator and participant), exactly-once
// sessions and garbage-collection watermarks. Pure and deterministic: every replica that
// applies the same commands reaches the same state, which the simulator checks.
//
// Escrow instead of exclusive locks: a prepared debit reserves funds (available = balance -
// pending debits) and a prepared credit is only recorded (credits commute and never count as
// available). Nothing waits on a lock, so there is no deadlock; a shortfall caused only by
// pending debits is a conflict that the leader retries, never INSUFFICIENT_FUNDS.
import { assert, invariantViolated } from '../util/assert.js';
import type { Topology } from '../cluster/topology.js';
import { initialShardTotal, shardItemRange, shardOfItem, isItem } from '../cluster/topology.js';
import type {
  BankSnapshot,
  Command,
  CoordDecision,
  CoordPrepare,
  PartPrepare,
  TransferCommand,
  TxId,
  TxRecord as TxRecordMessage,
} from '../gen/shardbank/v1/peer.js';
import { BankSnapshot as BankSnapshotCodec } from '../gen/shardbank/v1/peer.js';
import { Outcome } from '../gen/shardbank/v1/bank.js';
import { SessionTable, expiredMessage, transferDigest, type SessionCheck } from './session-table.js';
import { compareTxIds, nextTxId, txIdOf, txKey, txName, ZERO_TXID, type TxKey } from './txid.js';

export const ABORT_REASONS = {
  participantNo: 0,
  insufficientFunds: 1,
  conflict: 2,
  rejected: 3,
  /** Decided by the coordinator on a timeout: the protocol before parallel commits (old log entries only). */
  timeout: 4,
  /**
   * Presumed abort: a decision proposed for a transaction the proposer had no record of. It
   * only ever makes a tombstone: applied to a transaction whose PREPARE applied first (an old
   * leader's proposal chosen late, after a newer leader's PREPARE), it is a no-op.
   */
  presumed: 5,
} as const;

export type TxState = 'prepared' | 'committed' | 'aborted';

export interface TxRecord {
  txid: TxId;
  role: 'coordinator' | 'participant';
  state: TxState;
  from: number;
  to: number;
  amount: number;
  peerShard: number;
  clientId: string;
  requestId: number;
  prepareIndex: number;
  decisionIndex: number;
  abortReason: number;
  /** A record made by a decision for an unknown transaction: a later PREPARE votes NO. */
  tombstone: boolean;
}

/** What applying one command means for the leader (replies, votes, messages to send). */
export type ApplyEvent =
  | { kind: 'transfer-final'; clientId: string; requestId: number; outcome: number; index: number }
  | { kind: 'transfer-conflict'; clientId: string; requestId: number; index: number }
  | {
      kind: 'request-rejected';
      clientId: string;
      requestId: number;
      code: 'stale' | 'mismatch' | 'expired';
      message: string;
    }
  | { kind: 'session-opened'; clientId: string; epoch: number; index: number }
  | {
      kind: 'request-duplicate';
      clientId: string;
      requestId: number;
      outcome: number;
      index: number;
      inflightTxid?: TxId;
    }
  | { kind: 'coord-prepared'; record: TxRecord }
  | { kind: 'coord-decided'; record: TxRecord }
  | { kind: 'coord-finished'; txid: TxId }
  | { kind: 'part-voted'; txid: TxId; coordinatorShard: number; yes: boolean }
  | { kind: 'part-decided'; txid: TxId; coordinatorShard: number }
  | { kind: 'noop' };

export class BankState {
  readonly shard: number;
  readonly topology: Topology;
  readonly firstItem: number;
  private readonly balances: number[];
  private readonly pendingDebit = new Map<number, number>();
  /**
   * Item -> keys of the prepared outgoing debits (coordinator side). With parallel commits a
   * prepared debit may already be answered COMMITTED, so a linearizable read of the item waits
   * for its decision, as for a credit.
   */
  private readonly pendingDebitTx = new Map<number, Set<TxKey>>();
  /** Item -> keys of prepared incoming credits; reads of such an item wait for the decision. */
  private readonly pendingCredit = new Map<number, Set<TxKey>>();
  private readonly transactions = new Map<TxKey, TxRecord>();
  private sessions = new SessionTable();
  /** Participant side: per coordinator shard, ids below this are finished everywhere. */
  private readonly watermarks = new Map<number, TxId>();
  /** The highest txid of any coordinator record ever created here, tombstones included. */
  private lastCoordinatorTxid: TxId = ZERO_TXID;
  private ownWatermarkCache: TxId | undefined;
  /** The last watermark computed (for the assertion that it never goes down). */
  private ownWatermarkLast: TxId = ZERO_TXID;
  private coordinatorRecords = 0;
  /** Net money moved into this shard by committed cross-shard transfers. */
  private totalDelta = 0;
  /** Running sum of the balances, kept by setBalance and recounted in full at every snapshot. */
  private total: number;
  /** The applied index at which decided participant records were last collected. */
  private collectedAtIndex = -1;
  appliedIndex = 0;

  constructor(topology: Topology, shard: number) {
    this.topology = topology;
    this.shard = shard;
    this.firstItem = shardItemRange(topology, shard).first;
    this.balances = new Array<number>(topology.itemsPerShard).fill(topology.initialBalance);
    this.total = initialShardTotal(topology);
  }

  // ---- Queries ----

  ownsItem(item: number): boolean {
    return isItem(this.topology, item) && shardOfItem(this.topology, item) === this.shard;
  }

  balance(item: number): number {
    if (!this.ownsItem(item)) invariantViolated(`item ${item} is not on shard ${this.shard}`);
    return this.balances[item - this.firstItem]!;
  }

  pendingCreditKeys(item: number): ReadonlySet<TxKey> | undefined {
    return this.pendingCredit.get(item);
  }

  pendingDebitKeys(item: number): ReadonlySet<TxKey> | undefined {
    return this.pendingDebitTx.get(item);
  }

  transaction(txid: TxId): TxRecord | undefined {
    return this.transactions.get(txKey(txid));
  }

  /** Records with their keys (txKey of their txid), for scans that need both. */
  transactionEntries(): IterableIterator<[TxKey, TxRecord]> {
    return this.transactions.entries();
  }

  /** Transactions not yet finished: coordinators awaiting decision or ack, participants undecided. */
  inflightCount(): number {
    let count = 0;
    for (const record of this.transactions.values()) {
      if (record.role === 'coordinator' || record.state === 'prepared') count += 1;
    }
    return count;
  }

  checkSession(
    clientId: string,
    sessionEpoch: number,
    requestId: number,
    from: number,
    to: number,
    amount: number,
  ): SessionCheck {
    return this.sessions.check(clientId, sessionEpoch, requestId, transferDigest(from, to, amount));
  }

  /** The epoch of the client's open session on this shard, if it has one (applied state). */
  sessionEpochOf(clientId: string): number | undefined {
    return this.sessions.epochOf(clientId);
  }

  shardTotal(): number {
    let total = 0;
    for (const balance of this.balances) total += balance;
    return total;
  }

  /**
   * The coordinator watermark: every coordinator transaction of this shard with a smaller id
   * is finished (decided and acknowledged). Exclusive bound.
   */
  ownWatermark(): TxId {
    if (this.ownWatermarkCache) return this.ownWatermarkCache;
    let lowest: TxId | undefined;
    for (const record of this.transactions.values()) {
      if (record.role !== 'coordinator') continue;
      if (!lowest || compareTxIds(record.txid, lowest) < 0) lowest = record.txid;
    }
    const candidate = lowest ?? nextTxId(this.lastCoordinatorTxid);
    const watermark = { ...candidate, shard: this.shard };
    // Every record is created at or above the watermark and lastCoordinatorTxid covers every
    // record ever created (tombstones too), so the watermark can only rise. It must: a
    // participant forgets decided records below it and a CoordPrepare below it is refused.
    if (!(compareTxIds(watermark, this.ownWatermarkLast) >= 0))
      invariantViolated(`coordinator watermark went down: ${txName(watermark)} after ${txName(this.ownWatermarkLast)}`);
    this.ownWatermarkLast = watermark;
    this.ownWatermarkCache = watermark;
    return watermark;
  }

  watermarkOf(coordinatorShard: number): TxId {
    return this.watermarks.get(coordinatorShard) ?? { ...ZERO_TXID, shard: coordinatorShard };
  }

  // ---- Apply ----

  apply(index: number, command: Command): ApplyEvent[] {
    if (!(index >= this.appliedIndex)) invariantViolated(`apply went backwards: ${index} after ${this.appliedIndex}`);
    this.appliedIndex = index;
    const body = command.body;
    if (!body) return [];
    let events: ApplyEvent[];
    switch (body.$case) {
      case 'noop':
        events = [];
        break;
      case 'transfer':
        events = this.applyTransfer(index, body.transfer);
        break;
      case 'coordPrepare':
        events = this.applyCoordPrepare(index, body.coordPrepare);
        break;
      case 'coordDecision':
        events = this.applyCoordDecision(index, body.coordDecision);
        break;
      case 'coordAck': {
        const { txid, txids } = body.coordAck;
        events = txid ? this.applyCoordAck(txid) : [];
        for (const acked of txids) events.push(...this.applyCoordAck(acked));
        break;
      }
      case 'partPrepare':
        events = this.applyPartPrepare(index, body.partPrepare);
        break;
      case 'partDecision':
        events = this.applyPartDecision(
          index,
          txIdOf(body.partDecision.txid),
          body.partDecision.commit,
          body.partDecision.coordWatermark,
        );
        break;
      case 'openSession': {
        const { clientId } = body.openSession;
        events = [{ kind: 'session-opened', clientId, epoch: this.sessions.open(clientId).epoch, index }];
        break;
      }
      default: {
        const unknown: never = body;
        throw new Error(`unknown command ${JSON.stringify(unknown)}`);
      }
    }
    this.assertConservation(this.total);
    return events;
  }

  /**
   * A shard's own total moves only by the amounts of committed cross-shard transfers. Checked
   * after every command on the running sum, and on a full recount at every snapshot.
   */
  private assertConservation(total: number): void {
    if (!(total === initialShardTotal(this.topology) + this.totalDelta))
      invariantViolated(`shard ${this.shard} total ${total} != initial + committed moves`);
  }

  private setBalance(item: number, value: number): void {
    if (!(Number.isSafeInteger(value) && value >= 0)) invariantViolated(`balance of item ${item} would be ${value}`);
    const index = item - this.firstItem;
    this.total += value - this.balances[index]!;
    this.balances[index] = value;
  }

  private available(item: number): number {
    return this.balance(item) - (this.pendingDebit.get(item) ?? 0);
  }

  /** Sum of the prepared, undecided credits to `item` (they never count as available). */
  private pendingCreditTotal(item: number): number {
    const keys = this.pendingCredit.get(item);
    if (keys === undefined) return 0;
    let total = 0;
    for (const key of keys) total += this.transactions.get(key)!.amount;
    return total;
  }

  /**
   * INSUFFICIENT_FUNDS is final, so it must be true when it is decided: a shortfall that
   * pending credits could cover (a credit whose transfer may already be answered COMMITTED
   * but whose decision this participant has not applied yet) is a conflict, retried like
   * one caused by pending debits, never a final refusal that a committed credit contradicts.
   */
  /**
   * True when a debit of `amount` from `item` would be a conflict if it applied now (pending
   * debits or undecided credits stand in its way): the leader's fast path, so that an attempt
   * bound to conflict takes no slot here and none at a participant (ShardNode.startAttempt).
   */
  debitWouldConflict(item: number, amount: number): boolean {
    return this.fundsShort(item, amount) === 'conflict';
  }

  private fundsShort(item: number, amount: number): 'insufficient' | 'conflict' | undefined {
    const balance = this.balance(item);
    if (balance < amount) return balance + this.pendingCreditTotal(item) >= amount ? 'conflict' : 'insufficient';
    return this.available(item) < amount ? 'conflict' : undefined;
  }

  /** The client's acknowledged watermark, applied with its request (never past that request). */
  private acknowledge(clientId: string, sessionEpoch: number, requestId: number, acknowledgedBelow: number): void {
    if (acknowledgedBelow > 0)
      this.sessions.acknowledge(clientId, sessionEpoch, Math.min(acknowledgedBelow, requestId - 1));
  }

  private rejection(check: SessionCheck, clientId: string, requestId: number): ApplyEvent | undefined {
    if (check.kind === 'expired')
      return {
        kind: 'request-rejected',
        clientId,
        requestId,
        code: 'expired',
        message: expiredMessage(clientId, check),
      };
    if (check.kind === 'stale') {
      return {
        kind: 'request-rejected',
        clientId,
        requestId,
        code: 'stale',
        message: `request_id: ${requestId} is at or below client ${clientId}'s watermark ${check.watermark} (already acknowledged or evicted); it will not run again`,
      };
    }
    if (check.kind === 'mismatch') {
      return {
        kind: 'request-rejected',
        clientId,
        requestId,
        code: 'mismatch',
        message: `request_id: ${requestId} was already used by client ${clientId} with other from/to/amount`,
      };
    }
    return undefined;
  }

  private applyTransfer(index: number, t: TransferCommand): ApplyEvent[] {
    assert(this.ownsItem(t.from) && this.ownsItem(t.to) && t.from !== t.to, 'intra-shard transfer with foreign items');
    this.acknowledge(t.clientId, t.sessionEpoch, t.requestId, t.acknowledgedBelow);
    const check = this.checkSession(t.clientId, t.sessionEpoch, t.requestId, t.from, t.to, t.amount);
    const rejected = this.rejection(check, t.clientId, t.requestId);
    if (rejected) return [rejected];
    if (check.kind === 'duplicate') {
      const r = check.result;
      return [
        {
          kind: 'request-duplicate',
          clientId: t.clientId,
          requestId: t.requestId,
          outcome: r.outcome,
          index: r.index,
          inflightTxid: r.state === 'inflight' ? r.txid : undefined,
        },
      ];
    }
    const digest = transferDigest(t.from, t.to, t.amount);
    const short = this.fundsShort(t.from, t.amount);
    if (short === 'insufficient') {
      this.sessions.record(t.clientId, t.requestId, {
        digest,
        state: 'final',
        outcome: Outcome.INSUFFICIENT_FUNDS,
        index,
        txid: undefined,
      });
      return [
        {
          kind: 'transfer-final',
          clientId: t.clientId,
          requestId: t.requestId,
          outcome: Outcome.INSUFFICIENT_FUNDS,
          index,
        },
      ];
    }
    if (short === 'conflict') {
      this.sessions.record(t.clientId, t.requestId, {
        digest,
        state: 'aborted',
        outcome: Outcome.ABORTED,
        index,
        txid: undefined,
      });
      return [{ kind: 'transfer-conflict', clientId: t.clientId, requestId: t.requestId, index }];
    }
    this.setBalance(t.from, this.balance(t.from) - t.amount);
    this.setBalance(t.to, this.balance(t.to) + t.amount);
    this.sessions.record(t.clientId, t.requestId, {
      digest,
      state: 'final',
      outcome: Outcome.COMMITTED,
      index,
      txid: undefined,
    });
    return [
      { kind: 'transfer-final', clientId: t.clientId, requestId: t.requestId, outcome: Outcome.COMMITTED, index },
    ];
  }

  private newCoordinatorRecord(index: number, p: CoordPrepare, state: TxState, abortReason: number): TxRecord {
    const txid = txIdOf(p.txid);
    const record: TxRecord = {
      txid,
      role: 'coordinator',
      state,
      from: p.from,
      to: p.to,
      amount: p.amount,
      peerShard: p.toShard,
      clientId: p.clientId,
      requestId: p.requestId,
      prepareIndex: index,
      decisionIndex: state === 'prepared' ? 0 : index,
      abortReason,
      tombstone: false,
    };
    this.transactions.set(txKey(txid), record);
    this.noteCoordinatorRecordAdded(txid);
    return record;
  }

  /** Keeps the watermark cache valid without a scan in the common case (ids only grow). */
  private noteCoordinatorRecordAdded(txid: TxId): void {
    if (!(compareTxIds(txid, this.ownWatermark()) >= 0))
      invariantViolated(`coordinator record ${txName(txid)} below the watermark`);
    if (compareTxIds(txid, this.lastCoordinatorTxid) > 0) this.lastCoordinatorTxid = txid;
    const cached = this.ownWatermarkCache;
    if (cached && compareTxIds(txid, cached) < 0) this.ownWatermarkCache = undefined;
    else if (cached && this.coordinatorRecords === 0) this.ownWatermarkCache = undefined;
    this.coordinatorRecords += 1;
  }

  private noteCoordinatorRecordRemoved(txid: TxId): void {
    this.coordinatorRecords -= 1;
    const cached = this.ownWatermarkCache;
    if (!cached || compareTxIds(txid, cached) <= 0 || this.coordinatorRecords === 0) this.ownWatermarkCache = undefined;
  }

  /**
   * The coordinator's PREPARE. A PREPARE that fails its own checks (funds, conflict, a
   * duplicate or rejected request) is at once its own ABORT decision: deterministic, chosen
   * with this slot, and still announced to the participant, which may have prepared in parallel.
   */
  private applyCoordPrepare(index: number, p: CoordPrepare): ApplyEvent[] {
    const txid = txIdOf(p.txid);
    assert(txid.shard === this.shard && this.ownsItem(p.from) && !this.ownsItem(p.to), 'malformed coordinator prepare');
    if (this.transactions.has(txKey(txid))) return [{ kind: 'noop' }];
    if (compareTxIds(txid, this.ownWatermark()) < 0) return [{ kind: 'noop' }];
    this.acknowledge(p.clientId, p.sessionEpoch, p.requestId, p.acknowledgedBelow);
    const check = this.checkSession(p.clientId, p.sessionEpoch, p.requestId, p.from, p.to, p.amount);
    const rejected = this.rejection(check, p.clientId, p.requestId);
    if (rejected) {
      const record = this.newCoordinatorRecord(index, p, 'aborted', ABORT_REASONS.rejected);
      return [rejected, { kind: 'coord-decided', record }];
    }
    if (check.kind === 'duplicate') {
      const r = check.result;
      const record = this.newCoordinatorRecord(index, p, 'aborted', ABORT_REASONS.rejected);
      return [
        {
          kind: 'request-duplicate',
          clientId: p.clientId,
          requestId: p.requestId,
          outcome: r.outcome,
          index: r.index,
          inflightTxid: r.state === 'inflight' ? r.txid : undefined,
        },
        { kind: 'coord-decided', record },
      ];
    }
    const digest = transferDigest(p.from, p.to, p.amount);
    const short = this.fundsShort(p.from, p.amount);
    if (short === 'insufficient') {
      const record = this.newCoordinatorRecord(index, p, 'aborted', ABORT_REASONS.insufficientFunds);
      this.sessions.record(p.clientId, p.requestId, {
        digest,
        state: 'final',
        outcome: Outcome.INSUFFICIENT_FUNDS,
        index,
        txid,
      });
      return [{ kind: 'coord-decided', record }];
    }
    if (short === 'conflict') {
      const record = this.newCoordinatorRecord(index, p, 'aborted', ABORT_REASONS.conflict);
      this.sessions.record(p.clientId, p.requestId, {
        digest,
        state: 'aborted',
        outcome: Outcome.ABORTED,
        index,
        txid,
      });
      return [{ kind: 'coord-decided', record }];
    }
    this.pendingDebit.set(p.from, (this.pendingDebit.get(p.from) ?? 0) + p.amount);
    addKey(this.pendingDebitTx, p.from, txKey(txid));
    const record = this.newCoordinatorRecord(index, p, 'prepared', 0);
    this.sessions.record(p.clientId, p.requestId, { digest, state: 'inflight', outcome: 0, index, txid });
    return [{ kind: 'coord-prepared', record }];
  }

  /** The DECISION: the first one in log order for a transaction wins; later ones are no-ops. */
  private applyCoordDecision(index: number, decision: CoordDecision): ApplyEvent[] {
    const txid = txIdOf(decision.txid);
    const { commit, reason } = decision;
    assert(txid.shard === this.shard, 'decision for another coordinator shard');
    const record = this.transactions.get(txKey(txid));
    if (!record) {
      // Below the watermark the transaction is finished (decided, acknowledged, forgotten) or
      // was refused for good: a decision chosen only now (an old leader's unchosen tail, chosen
      // in a later leader's recovery) is a no-op, COMMIT or ABORT alike.
      if (compareTxIds(txid, this.ownWatermark()) < 0) return [{ kind: 'noop' }];
      // A COMMIT is proposed only for a prepared record, so one for an unknown transaction is a
      // late copy of the decision of a transaction already decided, acknowledged and forgotten
      // (above the watermark when an older transaction holds it down): a no-op too.
      if (commit) return [{ kind: 'noop' }];
      // Presumed abort: a decision for an unknown transaction leaves a tombstone, so that a
      // PREPARE applied later is a no-op and can never commit.
      const tombstone: TxRecord = {
        txid,
        role: 'coordinator',
        state: 'aborted',
        from: 0,
        to: 0,
        amount: 0,
        peerShard: decision.participantShard,
        clientId: '',
        requestId: 0,
        prepareIndex: 0,
        decisionIndex: index,
        abortReason: reason,
        tombstone: true,
      };
      this.transactions.set(txKey(txid), tombstone);
      this.noteCoordinatorRecordAdded(txid);
      return [{ kind: 'coord-decided', record: tombstone }];
    }
    if (record.state !== 'prepared') return [{ kind: 'noop' }];
    // Parallel commits: a prepared transaction may already be answered COMMITTED, so the only
    // ABORT proposed today, a presumed one, must not touch it. Multi-Paxos fills each slot on its
    // own, so a presumed ABORT proposed by a leader that never saw the PREPARE (a stale one, or
    // one whose phase 1 missed a PREPARE accepted by a minority) can be chosen in a later slot
    // than the PREPARE, in a later leader's recovery (coordinator-failover seed 742).
    if (!commit && reason === ABORT_REASONS.presumed) return [{ kind: 'noop' }];
    const pending = this.pendingDebit.get(record.from) ?? 0;
    if (!(pending >= record.amount))
      invariantViolated(`reservation of item ${record.from} is smaller than its prepared debit`);
    if (pending === record.amount) this.pendingDebit.delete(record.from);
    else this.pendingDebit.set(record.from, pending - record.amount);
    removeKey(this.pendingDebitTx, record.from, txKey(txid));
    record.decisionIndex = index;
    const digest = transferDigest(record.from, record.to, record.amount);
    if (commit) {
      this.setBalance(record.from, this.balance(record.from) - record.amount);
      this.totalDelta -= record.amount;
      record.state = 'committed';
      // The reply's index is the PREPARE's: parallel commits answer COMMITTED from there, and a
      // retry answered from the session must name the same index.
      this.sessions.record(record.clientId, record.requestId, {
        digest,
        state: 'final',
        outcome: Outcome.COMMITTED,
        index: record.prepareIndex,
        txid,
      });
    } else {
      record.state = 'aborted';
      record.abortReason = reason;
      this.sessions.record(record.clientId, record.requestId, {
        digest,
        state: 'aborted',
        outcome: Outcome.ABORTED,
        index,
        txid,
      });
    }
    return [{ kind: 'coord-decided', record }];
  }

  private applyCoordAck(txid: TxId): ApplyEvent[] {
    const key = txKey(txid);
    const record = this.transactions.get(key);
    if (!record || record.role !== 'coordinator' || record.state === 'prepared') return [];
    this.transactions.delete(key);
    this.noteCoordinatorRecordRemoved(txid);
    return [{ kind: 'coord-finished', txid }];
  }

  private raiseWatermark(coordinatorShard: number, watermark: TxId | undefined): void {
    if (!watermark) return;
    const current = this.watermarkOf(coordinatorShard);
    if (compareTxIds(watermark, current) <= 0) return;
    this.watermarks.set(coordinatorShard, { ...watermark, shard: coordinatorShard });
    // Decided participant records below the watermark are finished everywhere: forget them.
    // Memory only (the watermark itself already refuses old PREPAREs), so once per slot is
    // enough; the slot index keeps it deterministic across replicas.
    if (this.collectedAtIndex === this.appliedIndex) return;
    this.collectedAtIndex = this.appliedIndex;
    for (const [key, record] of this.transactions) {
      if (record.role !== 'participant' || record.state === 'prepared') continue;
      if (compareTxIds(record.txid, this.watermarkOf(record.peerShard)) < 0) this.transactions.delete(key);
    }
  }

  private applyPartPrepare(index: number, p: PartPrepare): ApplyEvent[] {
    const txid = txIdOf(p.txid);
    const coordinatorShard = txid.shard;
    assert(coordinatorShard !== this.shard && this.ownsItem(p.to), 'malformed participant prepare');
    this.raiseWatermark(coordinatorShard, p.coordWatermark);
    const existing = this.transactions.get(txKey(txid));
    if (existing) {
      return [{ kind: 'part-voted', txid, coordinatorShard, yes: existing.state !== 'aborted' }];
    }
    if (compareTxIds(txid, this.watermarkOf(coordinatorShard)) < 0) {
      return [{ kind: 'part-voted', txid, coordinatorShard, yes: false }];
    }
    const key = txKey(txid);
    this.transactions.set(key, {
      txid,
      role: 'participant',
      state: 'prepared',
      from: p.from,
      to: p.to,
      amount: p.amount,
      peerShard: coordinatorShard,
      clientId: '',
      requestId: 0,
      prepareIndex: index,
      decisionIndex: 0,
      abortReason: 0,
      tombstone: false,
    });
    addKey(this.pendingCredit, p.to, key);
    return [{ kind: 'part-voted', txid, coordinatorShard, yes: true }];
  }

  private applyPartDecision(index: number, txid: TxId, commit: boolean, watermark: TxId | undefined): ApplyEvent[] {
    const coordinatorShard = txid.shard;
    this.raiseWatermark(coordinatorShard, watermark);
    const key = txKey(txid);
    const record = this.transactions.get(key);
    if (!record) {
      if (compareTxIds(txid, this.watermarkOf(coordinatorShard)) >= 0) {
        if (commit) invariantViolated(`COMMIT for transaction ${txName(txid)} that this participant never prepared`);
        this.transactions.set(key, {
          txid,
          role: 'participant',
          state: 'aborted',
          from: 0,
          to: 0,
          amount: 0,
          peerShard: coordinatorShard,
          clientId: '',
          requestId: 0,
          prepareIndex: 0,
          decisionIndex: index,
          abortReason: 0,
          tombstone: true,
        });
      }
      return [{ kind: 'part-decided', txid, coordinatorShard }];
    }
    if (record.state !== 'prepared') {
      if (!((record.state === 'committed') === commit || record.tombstone))
        invariantViolated(`conflicting decisions for ${txName(txid)}`);
      return [{ kind: 'part-decided', txid, coordinatorShard }];
    }
    removeKey(this.pendingCredit, record.to, key);
    record.decisionIndex = index;
    if (commit) {
      this.setBalance(record.to, this.balance(record.to) + record.amount);
      this.totalDelta += record.amount;
      record.state = 'committed';
    } else {
      record.state = 'aborted';
    }
    return [{ kind: 'part-decided', txid, coordinatorShard }];
  }

  // ---- Snapshots ----

  toSnapshot(): Buffer {
    if (!(this.shardTotal() === this.total))
      invariantViolated(`shard ${this.shard}: running total ${this.total} differs from a recount`);
    const { sessions, nextEpoch } = this.sessions.toRecords();
    const snapshot: BankSnapshot = {
      shard: this.shard,
      firstItem: this.firstItem,
      balances: this.balances.slice(),
      transactions: [...this.transactions.values()].map(recordToMessage),
      sessions,
      nextSessionEpoch: nextEpoch,
      watermarks: [...this.watermarks].map(([shard, watermark]) => ({ shard, watermark })),
      appliedIndex: this.appliedIndex,
      lastTxid: this.lastCoordinatorTxid,
      initialTotal: initialShardTotal(this.topology),
      totalDelta: this.totalDelta,
    };
    return Buffer.from(BankSnapshotCodec.encode(snapshot).finish());
  }

  static fromSnapshot(topology: Topology, shard: number, data: Buffer): BankState {
    const snapshot = BankSnapshotCodec.decode(data);
    if (!(snapshot.shard === shard)) invariantViolated(`snapshot is of shard ${snapshot.shard}, not ${shard}`);
    assert(snapshot.balances.length === topology.itemsPerShard, 'snapshot from a different topology');
    assert(snapshot.initialTotal === initialShardTotal(topology), 'snapshot from a different initial balance');
    const state = new BankState(topology, shard);
    for (let i = 0; i < snapshot.balances.length; i += 1) state.balances[i] = snapshot.balances[i]!;
    for (const message of snapshot.transactions) {
      const record = recordFromMessage(message);
      const key = txKey(record.txid);
      state.transactions.set(key, record);
      if (record.state !== 'prepared') continue;
      if (record.role === 'coordinator') {
        state.pendingDebit.set(record.from, (state.pendingDebit.get(record.from) ?? 0) + record.amount);
        addKey(state.pendingDebitTx, record.from, key);
      } else {
        addKey(state.pendingCredit, record.to, key);
      }
    }
    state.sessions = SessionTable.fromRecords(snapshot.sessions, snapshot.nextSessionEpoch);
    for (const w of snapshot.watermarks) state.watermarks.set(w.shard, txIdOf(w.watermark));
    state.appliedIndex = snapshot.appliedIndex;
    state.lastCoordinatorTxid = txIdOf(snapshot.lastTxid);
    state.totalDelta = snapshot.totalDelta;
    state.total = state.shardTotal();
    state.coordinatorRecords = [...state.transactions.values()].filter((r) => r.role === 'coordinator').length;
    state.assertConservation(state.total);
    return state;
  }

  /** A fingerprint of the whole state, for replica-agreement checks. */
  fingerprint(): string {
    const txs = [...this.transactions.values()]
      .map((r) => `${txName(r.txid)}:${r.role}:${r.state}:${r.amount}`)
      .sort()
      .join(',');
    return `${this.appliedIndex}|${this.balances.join(',')}|${txs}|${this.sessions.fingerprint()}|${this.totalDelta}`;
  }

  balancesCopy(): number[] {
    return this.balances.slice();
  }

  get netTransferredIn(): number {
    return this.totalDelta;
  }
}

const STATE_CODES: Record<TxState, number> = { prepared: 0, committed: 1, aborted: 2 };
const STATES_BY_CODE: TxState[] = ['prepared', 'committed', 'aborted'];

function recordToMessage(r: TxRecord): TxRecordMessage {
  return {
    txid: r.txid,
    role: r.role === 'coordinator' ? 0 : 1,
    state: STATE_CODES[r.state],
    from: r.from,
    to: r.to,
    amount: r.amount,
    peerShard: r.peerShard + 1,
    clientId: r.clientId,
    requestId: r.requestId,
    prepareIndex: r.prepareIndex,
    decisionIndex: r.decisionIndex,
    abortReason: r.abortReason,
    fundsOk: true,
    tombstone: r.tombstone,
  };
}

function recordFromMessage(m: TxRecordMessage): TxRecord {
  const state = STATES_BY_CODE[m.state];
  if (!(state !== undefined)) invariantViolated(`bad transaction state ${m.state} in snapshot`);
  return {
    txid: txIdOf(m.txid),
    role: m.role === 0 ? 'coordinator' : 'participant',
    state,
    from: m.from,
    to: m.to,
    amount: m.amount,
    peerShard: m.peerShard - 1,
    clientId: m.clientId,
    requestId: m.requestId,
    prepareIndex: m.prepareIndex,
    decisionIndex: m.decisionIndex,
    abortReason: m.abortReason,
    tombstone: m.tombstone,
  };
}

/** Adds a transaction's key to the set of an item (pending debits or credits). */
function addKey(byItem: Map<number, Set<TxKey>>, item: number, key: TxKey): void {
  let keys = byItem.get(item);
  if (!keys) byItem.set(item, (keys = new Set()));
  keys.add(key);
}

/** Removes a transaction's key from an item's set; an emptied set goes. */
function removeKey(byItem: Map<number, Set<TxKey>>, item: number, key: TxKey): void {
  const keys = byItem.get(item);
  if (!keys) return;
  keys.delete(key);
  if (keys.size === 0) byItem.delete(item);
}
