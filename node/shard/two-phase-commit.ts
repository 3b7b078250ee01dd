// The leader's volatile side of two-phase commit, for both roles a shard plays: coordinator of
// its own cross-shard transfers, participant in other shards'. One record per transaction
// holds what this leader has proposed or sent for it and when it last did; the authoritative
// state (prepared, decided, tombstoned, watermarks) is the replicated BankState, which every
// decision here reads and never writes. Effects go into the proposal queue and the outbox that
// ShardNode drains; nothing here calls back up. A new leader starts empty and rebuilds from the
// replicated state (see onLeadershipReady).
//
// Parallel commits: a transfer is answered COMMITTED as soon as our own PREPARE is applied (its
// funds check passed) and the participant voted YES (a vote it sends only once its PREPARE is
// chosen and applied); the CoordDecision follows in the background. From that moment nothing
// may decide ABORT, so the coordinator never aborts on a timeout: a prepared transaction
// without a vote keeps asking the participant (its PREPARE again) until the participant answers
// from its replicated state, YES (commit) or NO (it has durably refused: a tombstone, an
// aborted record or the watermark), whichever leader of either shard asks or answers.
import { invariantViolated } from '../util/assert.js';
import type { TxId, TxMessage } from '../gen/shardbank/v1/peer.js';
import { ABORT_REASONS, type BankState, type TxRecord } from '../bank/bank-state.js';
import { compareTxIds, txIdOf, txKey, txName, type TxKey } from '../bank/txid.js';
import type { ProposalQueue } from './proposal-queue.js';

export interface TwoPhaseCommitTiming {
  /** Ticks between scans of in-flight transactions for resends and timeouts. */
  txScanTicks: number;
  /** Ticks between resends of a PREPARE without a vote, or of a decision without an ack. */
  txResendTicks: number;
  /** A prepared participant asks the coordinator for the outcome after this long. */
  txInquiryTicks: number;
}

/**
 * Optional timing of the coordinator's phases (the replica's metrics; the simulator has none):
 * now() in ms, prepareVoted/decisionAcked get the time the PREPARE / decision went out.
 */
export interface TxPhaseObserver {
  now(): number;
  prepareVoted(sentAtMs: number): void;
  decisionAcked(sentAtMs: number): void;
}

export type TxBody = NonNullable<TxMessage['body']>;
type BodyOf<K extends TxBody['$case']> = Extract<TxBody, { $case: K }>;

/** What this leader did for one transaction that the replicated state does not show yet. */
interface LeaderTx {
  /** Coordinator: this leader proposed its CoordPrepare, not applied yet; the participant shard. */
  proposedTo: number | undefined;
  /** Coordinator: the participant's vote, arrived before our own CoordPrepare applied. */
  earlyVote: boolean | undefined;
  /** Coordinator: a CoordDecision is proposed and not applied yet. */
  decisionProposed: boolean;
  /** Coordinator: the decision proposed is COMMIT. */
  decisionCommit: boolean;
  /** Coordinator: this leader answered the client COMMITTED before the decision applied. */
  answeredCommitted: boolean;
  /** Coordinator: the participant's acknowledgement is queued for a CoordAck. */
  ackQueued: boolean;
  /** Participant: a PartPrepare is proposed and not applied yet. */
  prepareProposed: boolean;
  /** Participant: a PartDecision is proposed and not applied yet. */
  decisionApplyProposed: boolean;
  /**
   * The resend/timeout timer, kept inline (no object of its own: a record per transaction is
   * made on every leader at thousands per second). timed: the timer runs.
   */
  timed: boolean;
  /** The scan that last saw this transaction live; older timers belong to finished ones. */
  seenInScan: number;
  sinceTick: number;
  lastSentTick: number;
  /** Coordinator, with a TxPhaseObserver: when the first PREPARE / the decision went out (0: not timed). */
  prepareSentAt: number;
  decisionSentAt: number;
}

/** Leader records at once: bounded by the transactions in flight, which client limits bound. */
const LEADER_TXS_MAX = 4_000_000;

export class TwoPhaseCommit {
  private readonly txs = new Map<TxKey, LeaderTx>();
  private txSeq = 0;
  private ticks = 0;
  private scans = 0;
  private outbox: TxMessage[] = [];
  private committed: TxRecord[] = [];
  messagesSent = 0;
  /** NO votes on transactions prepared here: ignored (only a leader that is behind can get one). */
  staleNoVotes = 0;

  constructor(
    private readonly shard: number,
    private readonly ordinal: number,
    private readonly timing: TwoPhaseCommitTiming,
    private readonly queue: ProposalQueue,
    private readonly phases?: TxPhaseObserver,
  ) {}

  /** The 2PC messages produced since the last call, for the driver to route. */
  takeMessages(): TxMessage[] {
    const messages = this.outbox;
    this.outbox = [];
    return messages;
  }

  /**
   * The prepared transactions that may be answered COMMITTED now (parallel commits), for the
   * driver to answer their clients; each one once per leader.
   */
  takeCommitted(): TxRecord[] {
    const committed = this.committed;
    if (committed.length > 0) this.committed = [];
    return committed;
  }

  // ---- Coordinator: a new attempt ----

  /**
   * Names a new attempt (coordinator shard, this leader's ballot, a sequence number) and sends
   * the participant its PREPARE at once, in parallel with our own: the caller proposes the
   * CoordPrepare with the returned txid.
   */
  beginAttempt(
    ballot: { round: number; ordinal: number },
    toShard: number,
    prepare: Omit<BodyOf<'prepare'>['prepare'], 'txid' | 'watermark'>,
    bank: BankState,
  ): TxId {
    this.txSeq += 1;
    const txid: TxId = { shard: this.shard, round: ballot.round, ordinal: ballot.ordinal, seq: this.txSeq };
    const tx = this.record(txKey(txid));
    tx.proposedTo = toShard;
    if (this.phases) tx.prepareSentAt = this.phases.now();
    this.send(toShard, { $case: 'prepare', prepare: { ...prepare, txid, watermark: bank.ownWatermark() } });
    return txid;
  }

  // ---- Applied state (called by ShardNode for each ApplyEvent of a 2PC command) ----

  onCoordPrepared(record: TxRecord): void {
    const key = txKey(record.txid);
    const tx = this.record(key);
    tx.proposedTo = undefined;
    this.touchTimer(tx, false);
    const vote = tx.earlyVote;
    if (vote === undefined) return;
    tx.earlyVote = undefined;
    // A NO on a prepared record is ignored, as in onVote.
    if (vote) this.commit(record);
    else this.staleNoVotes += 1;
  }

  onCoordDecided(record: TxRecord, bank: BankState): void {
    const tx = this.record(txKey(record.txid));
    if (tx.answeredCommitted && record.state !== 'committed')
      invariantViolated(`${txName(record.txid)} was answered COMMITTED, then decided ${record.state}`);
    tx.answeredCommitted = false;
    tx.proposedTo = undefined;
    tx.earlyVote = undefined;
    tx.decisionProposed = false;
    tx.decisionCommit = false;
    this.sendDecision(record, bank);
    this.touchTimer(tx, true);
    if (this.phases && record.peerShard >= 0) tx.decisionSentAt = this.phases.now();
  }

  onCoordFinished(txid: TxId): void {
    this.txs.delete(txKey(txid));
  }

  onPartVoted(txid: TxId, coordinatorShard: number, yes: boolean): void {
    const key = txKey(txid);
    const tx = this.record(key);
    tx.prepareProposed = false;
    this.send(coordinatorShard, { $case: 'vote', vote: { txid, yes } });
    if (yes) this.touchTimer(tx, false);
    this.tidy(key, tx);
  }

  onPartDecided(txid: TxId, coordinatorShard: number): void {
    this.txs.delete(txKey(txid));
    this.send(coordinatorShard, { $case: 'ack', ack: { txid } });
  }

  // ---- Messages from other shards ----

  onPrepare(fromShard: number, body: BodyOf<'prepare'>, bank: BankState): void {
    const p = body.prepare;
    const txid = txIdOf(p.txid);
    if (txid.shard !== fromShard || !bank.ownsItem(p.to)) return;
    const existing = bank.transaction(txid);
    if (existing) {
      this.send(fromShard, { $case: 'vote', vote: { txid, yes: existing.state !== 'aborted' } });
      return;
    }
    const tx = this.record(txKey(txid));
    if (tx.prepareProposed) return;
    tx.prepareProposed = true;
    this.queue.push({
      body: {
        $case: 'partPrepare',
        partPrepare: { txid, from: p.from, to: p.to, amount: p.amount, coordWatermark: p.watermark },
      },
    });
  }

  /** A participant's vote, or its inquiry (a prepared participant's YES). */
  onVote(fromShard: number, txid: TxId, yes: boolean, bank: BankState): void {
    if (txid.shard !== this.shard) return;
    const key = txKey(txid);
    if (this.phases) this.voteArrived(key);
    const record = bank.transaction(txid);
    if (record && record.role === 'coordinator') {
      // Only the transaction's own participant shard votes.
      if (record.peerShard !== fromShard) return;
      if (record.state !== 'prepared') this.sendDecision(record, bank);
      else if (yes) this.commit(record);
      // else: ignored, never an ABORT. A participant refuses only a transaction it holds aborted
      // (we decided ABORT, so an up-to-date record is not prepared) or one below our watermark
      // (which stays at or below every prepared record of ours). So a NO can reach only a leader
      // whose applied state is behind: a later leader finished the transaction, possibly after
      // answering COMMITTED, and the participant forgot it (swarm seed 702050).
      else this.staleNoVotes += 1;
      return;
    }
    const tx = this.txs.get(key);
    if (tx?.proposedTo !== undefined) {
      // The participant answered before our own PREPARE applied: remember the vote.
      if (tx.proposedTo === fromShard) tx.earlyVote = yes;
      return;
    }
    if (compareTxIds(txid, bank.ownWatermark()) < 0) {
      // Finished or never logged: it cannot commit any more.
      this.send(fromShard, { $case: 'decision', decision: { txid, commit: false, watermark: bank.ownWatermark() } });
      return;
    }
    // Presumed abort: record ABORT first, so that a late PREPARE can never commit (and, should
    // the PREPARE come first in the log after all, the ABORT is a no-op: BankState).
    this.proposeDecision(txid, false, ABORT_REASONS.presumed, fromShard);
  }

  onDecision(fromShard: number, body: BodyOf<'decision'>, bank: BankState): void {
    const d = body.decision;
    const txid = txIdOf(d.txid);
    if (txid.shard !== fromShard) return;
    const record = bank.transaction(txid);
    const finished =
      (record && record.state !== 'prepared') || (!record && compareTxIds(txid, bank.watermarkOf(fromShard)) < 0);
    if (finished) {
      this.send(fromShard, { $case: 'ack', ack: { txid } });
      return;
    }
    const tx = this.record(txKey(txid));
    if (tx.decisionApplyProposed) return;
    tx.decisionApplyProposed = true;
    this.queue.push({
      body: { $case: 'partDecision', partDecision: { txid, commit: d.commit, coordWatermark: d.watermark } },
    });
  }

  onAck(txid: TxId, bank: BankState): void {
    if (txid.shard !== this.shard) return;
    const record = bank.transaction(txid);
    if (!record || record.state === 'prepared') return;
    const tx = this.record(txKey(txid));
    if (this.phases && tx.decisionSentAt > 0) {
      this.phases.decisionAcked(tx.decisionSentAt);
      tx.decisionSentAt = 0;
    }
    if (tx.ackQueued) return;
    tx.ackQueued = true;
    this.queue.pushAck(txid);
  }

  // ---- Time: resends, coordinator timeouts, participant inquiries ----

  /** Every tick; scans only while this replica is the ready leader. */
  tick(readyLeader: boolean, bank: BankState): void {
    this.ticks += 1;
    if (readyLeader && this.ticks % this.timing.txScanTicks === 0) this.scan(bank);
  }

  private scan(bank: BankState): void {
    const t = this.timing;
    // Runs every txScanTicks over every record (tens of thousands under batch load): no
    // allocation per record, timers of finished transactions found by their scan number.
    this.scans += 1;
    for (const [key, record] of bank.transactionEntries()) {
      // Decided participant records only wait for garbage collection: nothing to drive.
      if (record.role === 'participant' && record.state !== 'prepared') continue;
      const tx = this.record(key);
      if (!tx.timed) this.startTimer(tx, Number.NEGATIVE_INFINITY);
      const timer = tx;
      timer.seenInScan = this.scans;
      const resendDue = this.ticks - timer.lastSentTick >= t.txResendTicks;
      if (record.role === 'coordinator') {
        if (record.state === 'prepared') {
          // No vote yet: ask again, however long it takes (never ABORT on a timeout: an earlier
          // leader may have answered COMMITTED on a YES that this leader never saw).
          if (resendDue) {
            timer.lastSentTick = this.ticks;
            this.send(record.peerShard, {
              $case: 'prepare',
              prepare: {
                txid: record.txid,
                from: record.from,
                to: record.to,
                amount: record.amount,
                watermark: bank.ownWatermark(),
              },
            });
          }
        } else if (resendDue) {
          timer.lastSentTick = this.ticks;
          this.sendDecision(record, bank);
        }
      } else if (this.ticks - timer.sinceTick >= t.txInquiryTicks && resendDue) {
        // A prepared participant never aborts on its own: it asks the coordinator shard.
        timer.lastSentTick = this.ticks;
        this.send(record.peerShard, { $case: 'inquiry', inquiry: { txid: record.txid } });
      }
    }
    // Timers of transactions that finished or were collected go with them (bounded memory).
    for (const [key, tx] of this.txs) {
      if (tx.timed && tx.seenInScan !== this.scans) tx.timed = false;
      this.tidy(key, tx);
    }
  }

  // ---- Leadership ----

  /** A new leader: everything in flight is in the replicated state; re-ask votes, re-send decisions now. */
  onLeadershipReady(bank: BankState): void {
    this.txSeq = 0;
    this.txs.clear();
    for (const [key] of bank.transactionEntries()) {
      this.startTimer(this.record(key), Number.NEGATIVE_INFINITY);
    }
  }

  onLeadershipLost(): void {
    this.txs.clear();
    this.outbox = [];
  }

  get recordCount(): number {
    return this.txs.size;
  }

  // ---- Helpers ----

  private voteArrived(key: TxKey): void {
    const tx = this.txs.get(key);
    if (tx === undefined || !(tx.prepareSentAt > 0)) return;
    this.phases!.prepareVoted(tx.prepareSentAt);
    tx.prepareSentAt = 0;
  }

  /**
   * Our PREPARE is applied and the participant voted YES: propose COMMIT and answer the client
   * now, unless this leader already proposed ABORT (then the decision answers when it applies).
   */
  private commit(record: TxRecord): void {
    const tx = this.record(txKey(record.txid));
    this.proposeDecision(record.txid, true, 0, record.peerShard);
    if (!tx.decisionCommit || tx.answeredCommitted) return;
    tx.answeredCommitted = true;
    if (!record.tombstone) this.committed.push(record);
  }

  private proposeDecision(txid: TxId, commit: boolean, reason: number, participantShard: number): void {
    const tx = this.record(txKey(txid));
    if (tx.decisionProposed) return;
    tx.decisionProposed = true;
    tx.decisionCommit = commit;
    this.queue.push({ body: { $case: 'coordDecision', coordDecision: { txid, commit, reason, participantShard } } });
  }

  private sendDecision(record: TxRecord, bank: BankState): void {
    if (record.peerShard < 0) return;
    this.send(record.peerShard, {
      $case: 'decision',
      decision: { txid: record.txid, commit: record.state === 'committed', watermark: bank.ownWatermark() },
    });
  }

  private touchTimer(tx: LeaderTx, reset: boolean): void {
    if (tx.timed && !reset) return;
    this.startTimer(tx, this.ticks);
  }

  private startTimer(tx: LeaderTx, lastSentTick: number): void {
    tx.timed = true;
    tx.sinceTick = this.ticks;
    tx.lastSentTick = lastSentTick;
    tx.seenInScan = this.scans;
  }

  private record(key: TxKey): LeaderTx {
    let tx = this.txs.get(key);
    if (tx === undefined) {
      tx = {
        proposedTo: undefined,
        earlyVote: undefined,
        decisionProposed: false,
        decisionCommit: false,
        answeredCommitted: false,
        ackQueued: false,
        prepareProposed: false,
        decisionApplyProposed: false,
        timed: false,
        seenInScan: 0,
        sinceTick: 0,
        lastSentTick: 0,
        prepareSentAt: 0,
        decisionSentAt: 0,
      };
      this.txs.set(key, tx);
      if (!(this.txs.size <= LEADER_TXS_MAX))
        invariantViolated(`more than ${LEADER_TXS_MAX} transactions tracked by the leader`);
    }
    return tx;
  }

  /** A record with nothing left to remember goes. */
  private tidy(key: TxKey, tx: LeaderTx): void {
    const idle =
      tx.proposedTo === undefined &&
      tx.earlyVote === undefined &&
      !tx.decisionProposed &&
      !tx.ackQueued &&
      !tx.prepareProposed &&
      !tx.decisionApplyProposed &&
      !tx.timed;
    if (idle) this.txs.delete(key);
  }

  private send(toShard: number, body: TxBody): void {
    this.messagesSent += 1;
    this.outbox.push({ fromShard: this.shard, toShard, fromOrdinal: this.ordinal, body });
  }
}
