// A Multi-Paxos replica as a pure, deterministic state machine (the etcd-io/raft "Ready"
// model). It owns no timers, sockets or files: inputs are step(message), tick(),
// propose(value), readIndex(id) and persisted(id); ready() hands out what the driver must do.
//
// The driver's contract for one Ready, in this order:
//   1. send `messages` at once (requests: Prepare, Accept, heartbeats; they promise nothing);
//   2. append `persist` to durable storage and fsync; only then send `messagesAfterPersist`
//      (Promised / Accepted replies, which claim durable state) and call persisted(persist.id);
//   3. if `snapshotToApply` is set, restore the state machine from it, then apply `committed`
//      in order (they are chosen: a majority has them durably);
//   4. serve the reads in `readsReady` once the state machine has applied their index.
// Readies may be pipelined: persisted(id) must be called in increasing id order.
// `messagesAfterPersist` is empty in a Ready without `persist`: a reply whose claim lies in an
// earlier persist that is not durable yet is held by the core and comes out in `messages` of
// the first Ready after persisted() says so.
import { assert, invariantViolated } from '../util/assert.js';
import type { Accepted, AcceptedEntry, Ballot, PaxosMessage, Promised, SlotValue } from '../gen/shardbank/v1/peer.js';
import { ballotEquals, ballotLess, ballotOf, maxBallot, ZERO_BALLOT } from './ballot.js';
import {
  applyChange,
  CONFIGURATION_WINDOW_SLOTS,
  ConfigurationHistory,
  decodeConfigurationEntry,
  encodeConfigurationEntry,
  hasMajority,
  hasMajorityOfEach,
  isConfigurationEntry,
  isVoter,
  MEMBER_ID_LIMIT,
  unwrapSnapshot,
  wrapSnapshot,
  type ChangeResult,
  type Configuration,
  type ConfigurationChange,
} from './membership.js';

export const ROLES = ['follower', 'candidate', 'leader'] as const;
export type Role = (typeof ROLES)[number];

export interface PaxosConfig {
  shard: number;
  /** This replica's member id (docs/ARCHITECTURE.md, "Membership"): 0..replicaCount-1 for the first members. */
  ordinal: number;
  /** The first configuration: voters 0..replicaCount-1 (the log and snapshots say what it is now). */
  replicaCount: number;
  /** Election timeouts are drawn uniformly from [min, max) ticks. */
  electionTimeoutTicksMin: number;
  electionTimeoutTicksMax: number;
  heartbeatTicks: number;
  /** Un-chosen slots are re-sent to silent acceptors after this many ticks. */
  retransmitTicks: number;
  /** Limits on everything: slots in flight, entries per message, catch-up batch. */
  inflightSlotsMax: number;
  entriesPerMessageMax: number;
  /**
   * Thrifty Accepts: a leader sends each new slot at once only to the followers it needs for
   * a majority (one, of three replicas); the others get the slots gathered since the last tick
   * in one Accept per tick. Each slot then costs one follower wake-up, write and reply instead
   * of two, and the other follower one per tick. A slow or silent quick follower is replaced
   * by whichever follower's vote chooses a slot first, so the fallback costs at most a tick.
   */
  thriftyAccepts?: boolean;
  /** Bytes of slot values per Promised page or Accept (default MESSAGE_VALUE_BYTES_MAX; the simulator makes it small). */
  messageValueBytesMax?: number;
  /** 'probing' for a replica whose data dir was empty (see VotingState); default 'voter'. */
  votingState?: VotingState;
  /**
   * The durable first-start memory of the data dir (node/storage/not-voting-marker.ts):
   * `identity`, drawn when its NOT_VOTING marker was created and kept in it (absent: none
   * durable, this life's probe nonce stands in); `countedEmpty`, the peers (ordinal to
   * identity) it counted empty when it decided on a first start, durable before it voted.
   */
  firstStart?: { identity?: number; countedEmpty?: ReadonlyMap<number, number> };
  /** Deterministic randomness (seeded in simulation). Returns [0, 1). */
  random: () => number;
}

export interface HardState {
  promised: Ballot;
}

export interface LogEntry {
  slot: number;
  ballot: Ballot;
  value: Buffer;
}

export interface Snapshot {
  index: number;
  data: Buffer;
}

export interface PersistWork {
  id: number;
  hardState: HardState | undefined;
  entries: LogEntry[];
  snapshot: Snapshot | undefined;
}

export interface CommittedEntry {
  slot: number;
  value: Buffer;
}

export interface ReadReady {
  id: number;
  index: number;
}

export type CoreEvent =
  | { type: 'became-leader'; ballot: Ballot }
  | { type: 'stepped-down'; ballot: Ballot }
  | { type: 'leader-changed'; leaderOrdinal: number; ballot: Ballot }
  | { type: 'read-failed'; id: number }
  /**
   * A non-voting replica may vote now: its peers showed the shard never ran (first start) or
   * it re-learned what it may have promised or accepted (rebuilt). The driver makes that
   * durable (writes its VOTER record with `firstStart.countedEmpty`, then removes its
   * not-voting marker), then calls startVoting(). `firstStart`: its identity and the peers
   * (ordinal to identity) it counted empty at a first start, in this life or an earlier one
   * (see VotingState).
   */
  | {
      type: 'voting-ready';
      reason: 'first-start' | 'rebuilt';
      firstStart: { identity: number; countedEmpty: ReadonlyMap<number, number> };
    };

/**
 * Protocol-aware recovery. A voter votes. A replica that started with an empty data dir is
 * `probing`: it asks its peers whether the shard ever ran; if not (the cluster's first start)
 * it becomes a voter; if so it is `rebuilding`: it learns the chosen log as a learner (never
 * sends a promise, an accepting vote or a read confirmation, never stands for election)
 * until a leader elected by every other replica (so no promise it may have given before its
 * disk was lost can still be used) has a recovered prefix that it has applied.
 *
 * First start, staggered: replica F decides on a first start (`majority` empty replies, all
 * from peers) and, being a voter, answers later probes with has_state; a peer P still probing
 * then would rebuild, waiting for a leader elected by every other replica, which cannot come
 * while F is the only voter. So F remembers, per peer, the first-start identity
 * (`replier_identity`) of each empty reply it counted, and answers a probe carrying that same
 * identity with `counted_empty`; P, probing or rebuilding, then becomes a voter too
 * ('first-start'). Rebuilding replicas keep probing, so they hear it.
 *
 * Restarts during the first start (the driver's files, node/storage/not-voting-marker.ts):
 * - P's identity is drawn when its NOT_VOTING marker is created and kept in it (durable before
 *   it is first sent), so P presents the same one across restarts while the marker stands; the
 *   marker is removed durably before P ever votes, so P presents it only while it never voted
 *   since the marker was created.
 * - F answers counted_empty only from a list made durable before it votes (startVoting()), and
 *   reloads it in every later life: a peer it told never depends on a memory a crash can take.
 * - A replica that may vote writes the VOTER record before its marker goes, and votes in every
 *   later life whatever its log holds: a vote is sent only once durable in its log, so an
 *   empty log in that same data dir means it never voted (as a brand-new acceptor).
 * Safe: F's decision means that, when F counted them, a majority of peers were empty, so the
 * shard had never run (the single-failure model the first-start rule already relies on) and
 * P had never voted before its marker was created; since then P has been probing or rebuilding
 * (the marker stands), which never promises, accepts or confirms a read. So P is an acceptor
 * that never voted, and may vote. The identity ties the claim to P's data dir: a P whose disk
 * was lost lost the marker (and any VOTER record) with it, draws a new identity (52 random
 * bits) which F never counted, and rebuilds. An unreadable marker or list is replaced or
 * forgotten: forgetting an identity only costs a rebuild, never safety. Remembering one is
 * what needs the argument above, so nothing but the marker ever supplies a prober's identity.
 */
export const VOTING_STATES = ['voter', 'probing', 'rebuilding'] as const;
export type VotingState = (typeof VOTING_STATES)[number];

export interface Ready {
  messages: PaxosMessage[];
  persist: PersistWork | undefined;
  messagesAfterPersist: PaxosMessage[];
  snapshotToApply: Snapshot | undefined;
  committed: CommittedEntry[];
  readsReady: ReadReady[];
  events: CoreEvent[];
}

export interface RecoveredAcceptorState {
  hardState: HardState | undefined;
  snapshot: Snapshot | undefined;
  entries: LogEntry[];
}

/**
 * Bytes of slot values in one Promised page or one Accept, well below the transport's 64 MiB
 * frame limit (a full slot of 4,096 commands is about 245 KB, so a Promised for a few hundred
 * slots would not fit in one frame; the receiver would drop the connection on every retry).
 * At least one entry always goes, and no single value exceeds the log's 16 MiB value limit.
 */
export const MESSAGE_VALUE_BYTES_MAX = 4 * 1024 * 1024;
/** Per-entry overhead assumed in those budgets (slot, ballot, field tags). */
const ENTRY_OVERHEAD_BYTES = 32;

function entryBytes(value: Buffer): number {
  return value.length + ENTRY_OVERHEAD_BYTES;
}

/** The value of a no-op slot: an empty buffer (the state machine skips it). */
export const NOOP_VALUE: Buffer = Buffer.alloc(0);

interface InflightSlot {
  value: Buffer;
  votes: Set<number>;
  /** Persist id of the leader's own copy at this ballot; its vote counts once that id is durable. */
  selfPersistId: number;
  sentTick: number;
}

interface FollowerProgress {
  commitIndex: number;
  lastAckTick: number;
  readSeqAcked: number;
  catchupSentTick: number;
  /** The last slot the latest catch-up sent: once the follower's commit index reaches it, the next batch goes at once. */
  catchupSentUpTo: number;
  snapshotSentTick: number;
}

interface PendingRead {
  id: number;
  index: number;
  seq: number;
}

interface PromiseInProgress {
  commitIndex: number;
  snapshotIndex: number;
  accepted: AcceptedEntry[];
  /** The slot the next page must start from; 0 once the last page arrived. */
  nextSlot: number;
}

type BodyCase = NonNullable<PaxosMessage['body']>;

/** The voters of a configuration as a bit mask (member ids are below MEMBER_ID_LIMIT). */
function votersMask(configuration: Configuration): number {
  let mask = 0;
  for (const id of configuration.voters) mask |= 1 << id;
  return mask;
}

export class PaxosCore {
  readonly config: PaxosConfig;
  private readonly messageValueBytesMax: number;
  private votingStateValue: VotingState = 'voter';
  /** Probing: the peers that answered empty, each with the first-start identity it replied with. */
  private readonly probeReplies = new Map<number, number>();
  /**
   * Decided on a first start: the peers counted empty, each with its identity then. Answered
   * with counted_empty only once durable (loaded at start, or made durable before startVoting()):
   * a peer told must never depend on a memory that a crash can take.
   */
  private countedEmpty: ReadonlyMap<number, number>;
  /** Decided in this life, durable once the driver calls startVoting(). */
  private countedDecided: ReadonlyMap<number, number> | undefined;
  private votingReadyEmitted = false;
  /** Rebuilding: the last slot the leader (at that ballot) had proposed when it answered our probe. */
  private rebuildTarget: { ballot: Ballot; slot: number } | undefined;
  /** Names this life's probes (drawn at start), so a reply to an earlier life's probe is ignored. */
  private readonly probeNonce: number;
  /** The first-start identity this replica presents (see VotingState): its marker's, else the probe nonce. */
  private readonly identity: number;
  /** Leader: the ordinals whose promises elected it, itself included (a bit mask). */
  private promiseQuorumMask = 0;
  private becameLeaderTick = 0;
  private lastReelectionTick = Number.NEGATIVE_INFINITY;
  /** Leader: followers that said they do not vote (rebuilding), and when. */
  private readonly nonVotingSeenTick = new Map<number, number>();
  /**
   * The configurations of the chosen prefix by slot (docs/ARCHITECTURE.md, "Membership"),
   * recorded as the commit index passes their entries, carried in the snapshot.
   */
  private history: ConfigurationHistory;
  // Durable acceptor state (mirrored by storage through `persist`).
  private promised: Ballot = ZERO_BALLOT;
  private readonly log = new Map<number, { ballot: Ballot; value: Buffer }>();
  private snapshot: Snapshot = { index: 0, data: Buffer.alloc(0) };
  // Volatile state.
  private roleValue: Role = 'follower';
  private leaderOrdinalValue = -1;
  private leaderBallotValue: Ballot = ZERO_BALLOT;
  private commitIndexValue = 0;
  private appliedIndexValue = 0;
  private tickNow = 0;
  private electionElapsed = 0;
  private electionTimeout = 0;
  private heartbeatElapsed = 0;
  private lastLeaderContactTick = Number.NEGATIVE_INFINITY;
  private highestSeenRound = 0;
  // Candidate state.
  /** Promises of this election, page by page; a promise counts once its last page arrived. */
  private promises = new Map<number, PromiseInProgress>();
  private promiseFromSlot = 0;
  private selfPromisePersistId = 0;
  // Leader state.
  private nextSlot = 1;
  private readonly inflight = new Map<number, InflightSlot>();
  private readonly followers = new Map<number, FollowerProgress>();
  /** Followers that get each new slot at once (thrifty Accepts); the others get it at the tick. */
  private quickFollowers: number[] = [];
  /** Slots proposed since the last tick, per follower not in quickFollowers. */
  private readonly deferredAccepts = new Map<number, { entries: SlotValue[]; bytes: number }>();
  private quickFollowerChangesValue = 0;
  private readyIndex = Number.POSITIVE_INFINITY;
  private readSeq = 0;
  private readonly pendingReads: PendingRead[] = [];
  private unsentReads: { id: number; index: number }[] = [];
  // Persistence bookkeeping.
  private persistIdNext = 1;
  private durableId = 0;
  // Output buffers, drained by ready().
  private out: PaxosMessage[] = [];
  private outAfterPersist: PaxosMessage[] = [];
  /** Replies from Readies without a persist, waiting for an earlier persist to be durable. */
  private readonly heldReplies: { persistId: number; messages: PaxosMessage[] }[] = [];
  private hardStateDirty = false;
  private entriesToPersist: LogEntry[] = [];
  private snapshotToPersist: Snapshot | undefined;
  private snapshotToApply: Snapshot | undefined;
  private readsReady: ReadReady[] = [];
  private events: CoreEvent[] = [];
  /** Elections this replica stood in (for /metrics). */
  electionsStarted = 0;

  constructor(config: PaxosConfig, recovered?: RecoveredAcceptorState) {
    assert(config.replicaCount >= 1 && config.replicaCount % 2 === 1, 'replicaCount must be odd');
    assert(config.ordinal >= 0 && config.ordinal < MEMBER_ID_LIMIT, 'ordinal out of range');
    assert(config.electionTimeoutTicksMin < config.electionTimeoutTicksMax, 'election timeout range is empty');
    assert(config.heartbeatTicks < config.electionTimeoutTicksMin, 'heartbeats must be faster than elections');
    this.config = config;
    this.messageValueBytesMax = config.messageValueBytesMax ?? MESSAGE_VALUE_BYTES_MAX;
    // A single replica has nobody to ask: an empty data dir is its first start.
    this.votingStateValue = config.replicaCount > 1 ? (config.votingState ?? 'voter') : 'voter';
    // Wide (52 bits), as the identity that stands in for a marker's: a replica after a lost
    // disk must not draw one a first-start voter remembers (see VotingState).
    this.probeNonce = 1 + Math.floor(config.random() * 2 ** 52);
    this.identity = config.firstStart?.identity ?? this.probeNonce;
    this.countedEmpty = config.firstStart?.countedEmpty ?? new Map();
    this.history = ConfigurationHistory.initial(config.replicaCount);
    assert(this.messageValueBytesMax > 0, 'messageValueBytesMax must be positive');
    if (recovered) this.restore(recovered);
    this.resetElectionTimer();
  }

  private restore(recovered: RecoveredAcceptorState): void {
    this.promised = recovered.hardState?.promised ?? ZERO_BALLOT;
    this.highestSeenRound = this.promised.round;
    if (recovered.snapshot) {
      this.snapshot = recovered.snapshot;
      this.commitIndexValue = recovered.snapshot.index;
      this.appliedIndexValue = recovered.snapshot.index;
      this.snapshotToApply = this.adoptSnapshotConfiguration(recovered.snapshot);
    }
    for (const entry of recovered.entries) {
      if (entry.slot <= this.snapshot.index) continue;
      this.log.set(entry.slot, { ballot: entry.ballot, value: entry.value });
    }
  }

  // ---- Read-only views ----

  get role(): Role {
    return this.roleValue;
  }
  get votingState(): VotingState {
    return this.votingStateValue;
  }
  get ordinal(): number {
    return this.config.ordinal;
  }
  get leaderOrdinal(): number {
    return this.leaderOrdinalValue;
  }
  get leaderBallot(): Ballot {
    return this.leaderBallotValue;
  }
  get promisedBallot(): Ballot {
    return this.promised;
  }
  get commitIndex(): number {
    return this.commitIndexValue;
  }
  get appliedIndex(): number {
    return this.appliedIndexValue;
  }
  get snapshotIndex(): number {
    return this.snapshot.index;
  }
  get lastSlot(): number {
    let last = this.snapshot.index;
    for (const slot of this.log.keys()) if (slot > last) last = slot;
    return last;
  }
  get ticks(): number {
    return this.tickNow;
  }
  /** Ticks since this replica last heard from a leader (or led): for stale-read reporting. */
  get ticksSinceLeader(): number {
    if (this.roleValue === 'leader') return 0;
    return this.tickNow - this.lastLeaderContactTick;
  }
  /** A leader serves requests only once it has applied the prefix it recovered in phase 1. */
  get isReadyLeader(): boolean {
    return this.roleValue === 'leader' && this.appliedIndexValue >= this.readyIndex;
  }
  /** How often a deferred follower replaced a silent quick one (thrifty Accepts' fallback). */
  get quickFollowerChanges(): number {
    return this.quickFollowerChangesValue;
  }
  get inflightSlotCount(): number {
    return this.inflight.size;
  }
  /** Room to propose more slots now (the caller batches commands while this is false). */
  get canPropose(): boolean {
    return (
      this.isReadyLeader &&
      this.inflight.size < this.config.inflightSlotsMax &&
      this.nextSlot <= this.commitIndexValue + CONFIGURATION_WINDOW_SLOTS
    );
  }
  /** Voting followers' known chosen prefixes (leader only): used to pick a hand-over target. */
  followerCommitIndexes(): Map<number, number> {
    const result = new Map<number, number>();
    for (const [ordinal, progress] of this.followers) {
      // A learner cannot take over: only voters of the configuration in force and of the newest.
      if (isVoter(this.configuration, ordinal) && isVoter(this.history.latest, ordinal))
        result.set(ordinal, progress.commitIndex);
    }
    return result;
  }
  private get majority(): number {
    return Math.floor(this.configuration.voters.length / 2) + 1;
  }

  // ---- Membership (docs/ARCHITECTURE.md, "Membership") ----

  /** The configuration in force for the next slot to be chosen. */
  get configuration(): Configuration {
    return this.history.inForceAt(this.commitIndexValue + 1);
  }
  /** The newest chosen configuration (it may still be coming into force). */
  get latestConfiguration(): Configuration {
    return this.history.latest;
  }
  /**
   * The newest configuration is in force at the applied index but the durable snapshot is older:
   * the state machine should snapshot now. A replica restarts with its commit index at its
   * snapshot, and the configuration it then works with is the one in force there; one whose
   * voters are gone (removed, their pods deleted) could never elect a leader again.
   */
  get configurationSnapshotDue(): boolean {
    const fromSlot = this.history.latestFromSlot;
    return fromSlot > 1 && this.snapshot.index < fromSlot - 1 && this.appliedIndexValue >= fromSlot - 1;
  }
  /** The slot of the entry that chose the newest configuration (0: the initial one); survives snapshots. */
  get latestConfigurationSlot(): number {
    return this.history.latestEntrySlot;
  }
  /**
   * Every configuration this replica knows, newest first: configuration entries in its log
   * above the commit index (maybe never chosen), the leader's unchosen proposals, then the
   * chosen history. Read-only; the peer transport resolves member addresses from it.
   */
  knownConfigurations(): Configuration[] {
    const unchosen: { slot: number; configuration: Configuration }[] = [];
    for (const [slot, configuration] of this.unchosenConfigurations) unchosen.push({ slot, configuration });
    for (const [slot, entry] of this.log) {
      if (slot > this.commitIndexValue && isConfigurationEntry(entry.value))
        unchosen.push({ slot, configuration: decodeConfigurationEntry(entry.value) });
    }
    unchosen.sort((a, b) => b.slot - a.slot);
    const chosen = this.history.epochList.map((epoch) => epoch.configuration).reverse();
    return [...unchosen.map((item) => item.configuration), ...chosen];
  }
  /**
   * Leader only: what it knows of a member's progress (undefined for itself, a non-member, or
   * on a follower). `caughtUp`: heard within an election timeout with the commit index this
   * leader announced a heartbeat ago, the rule a promotion is held to.
   */
  memberProgress(member: number): { commitIndex: number; caughtUp: boolean } | undefined {
    if (this.roleValue !== 'leader') return undefined;
    const progress = this.followers.get(member);
    if (progress === undefined) return undefined;
    return { commitIndex: progress.commitIndex, caughtUp: this.isCaughtUp(member) };
  }
  /** A chosen change not in force yet, or a proposed one not chosen yet (leader). */
  get configurationChangeInFlight(): boolean {
    return this.history.changePendingAfter(this.commitIndexValue) || this.unchosenConfigurations.size > 0;
  }

  /**
   * Leader: proposes one step of the membership. Refused (as a value) unless this is the ready
   * leader, no change is in flight, the step is valid against the newest configuration, the
   * leader stays a voter (hand leadership over first), and a promoted learner is caught up.
   */
  proposeConfigurationChange(change: ConfigurationChange): ChangeResult & { slot?: number } {
    if (!this.isReadyLeader) return { ok: false, error: 'not the ready leader' };
    if (this.configurationChangeInFlight) return { ok: false, error: 'a configuration change is in flight' };
    const result = applyChange(this.history.latest, change);
    if (!result.ok) return result;
    if (!isVoter(result.configuration, this.config.ordinal))
      return { ok: false, error: 'the leader cannot remove itself: hand leadership over first' };
    if (change.type === 'promote' && !this.isCaughtUp(change.member))
      return { ok: false, error: `member ${change.member} is not caught up` };
    const slot = this.propose(encodeConfigurationEntry(result.configuration));
    if (slot === undefined) return { ok: false, error: 'the pipeline is full; retry' };
    return { ok: true, configuration: result.configuration, slot };
  }

  /** Heard within an election timeout, and has what this leader announced a heartbeat ago. */
  private isCaughtUp(member: number): boolean {
    const progress = this.followers.get(member);
    if (progress === undefined) return false;
    const recent = this.tickNow - progress.lastAckTick < this.config.electionTimeoutTicksMin;
    return recent && progress.commitIndex >= this.commitAnnouncedBefore;
  }

  /** Leader: configuration entries it proposed or recovered that are not chosen yet, by slot. */
  private readonly unchosenConfigurations = new Map<number, Configuration>();

  /** Takes the configurations a snapshot carries; returns it with the state machine's data unwrapped. */
  private adoptSnapshotConfiguration(snapshot: Snapshot): Snapshot {
    const { epochs, data } = unwrapSnapshot(snapshot.data);
    this.history = epochs ? new ConfigurationHistory(epochs) : ConfigurationHistory.initial(this.config.replicaCount);
    return { index: snapshot.index, data };
  }

  /** The commit index passed from `from` to `to`: record the configuration entries chosen. */
  private noteCommitted(from: number, to: number): void {
    let changed = false;
    for (let slot = from + 1; slot <= to; slot += 1) {
      const entry = this.log.get(slot);
      if (entry === undefined || !isConfigurationEntry(entry.value)) continue;
      this.unchosenConfigurations.delete(slot);
      changed = this.history.recordChosen(slot, decodeConfigurationEntry(entry.value)) || changed;
    }
    if (this.roleValue !== 'leader') return;
    if (changed) this.syncFollowers();
    if (changed || this.quickConfiguration !== this.configuration) this.chooseQuickFollowers();
  }

  /** Everyone who must hear this replica as leader or candidate: members of every configuration it knows. */
  private knownMembers(): Set<number> {
    const members = new Set<number>();
    const add = (configuration: Configuration) => {
      for (const id of configuration.voters) members.add(id);
      for (const id of configuration.learners) members.add(id);
    };
    for (const configuration of this.history.inForceBetween(this.commitIndexValue + 1, Number.POSITIVE_INFINITY))
      add(configuration);
    for (const configuration of this.unchosenConfigurations.values()) add(configuration);
    for (const [slot, entry] of this.log) {
      if (slot > this.commitIndexValue && isConfigurationEntry(entry.value)) add(decodeConfigurationEntry(entry.value));
    }
    members.delete(this.config.ordinal);
    return members;
  }

  /** Leader: a follower progress for every member it knows, none for anyone else. */
  private syncFollowers(): void {
    const members = this.knownMembers();
    for (const peer of [...this.followers.keys()]) {
      if (members.has(peer)) continue;
      this.flushDeferredAccepts(peer);
      this.followers.delete(peer);
    }
    for (const peer of members) {
      if (this.followers.has(peer)) continue;
      this.followers.set(peer, {
        commitIndex: 0,
        lastAckTick: this.tickNow,
        readSeqAcked: 0,
        catchupSentTick: Number.NEGATIVE_INFINITY,
        catchupSentUpTo: 0,
        snapshotSentTick: Number.NEGATIVE_INFINITY,
      });
    }
  }

  /** The configurations whose majorities a candidate preparing from `k + 1` needs (see "Phase 1"). */
  private phaseOneConfigurations(): Configuration[] {
    const k = this.promiseFromSlot - 1;
    const configurations = this.history.inForceBetween(k + 1, k + CONFIGURATION_WINDOW_SLOTS);
    const consider = (slot: number, value: Buffer) => {
      if (slot > k && isConfigurationEntry(value)) configurations.push(decodeConfigurationEntry(value));
    };
    for (const [slot, entry] of this.log) consider(slot, entry.value);
    for (const promise of this.promises.values()) {
      if (promise.nextSlot !== 0) continue;
      for (const entry of promise.accepted) consider(entry.slot, entry.value);
    }
    return configurations;
  }

  /** The configurations a read confirmation and check-quorum need majorities of (see "Read-index"). */
  private leaderConfigurations(): Configuration[] {
    return this.history.inForceBetween(this.commitIndexValue + 1, this.nextSlot - 1 + CONFIGURATION_WINDOW_SLOTS);
  }

  private isChosenBy(slot: number, votes: ReadonlySet<number>): boolean {
    return hasMajority(this.history.inForceAt(slot), (member) => votes.has(member));
  }

  /** A learner, or a replica removed, never stands for election. */
  private get mayStandForElection(): boolean {
    return isVoter(this.history.latest, this.config.ordinal) || isVoter(this.configuration, this.config.ordinal);
  }

  /**
   * Leader: a chosen configuration comes into force 256 slots after its entry; with nothing
   * else to propose the leader fills the gap with no-ops, so a change completes promptly.
   */
  private padTowardsConfiguration(): void {
    if (!this.isReadyLeader) return;
    const target = this.history.latestFromSlot;
    while (this.nextSlot < target && this.nextSlot <= this.commitIndexValue + CONFIGURATION_WINDOW_SLOTS) {
      this.proposeAt(this.nextSlot, NOOP_VALUE);
      this.nextSlot += 1;
    }
  }

  /** Leader: recovered slots wait until the window reaches them (a slot s needs s - α chosen). */
  private backlog: { slot: number; value: Buffer }[] = [];

  private drainBacklog(): void {
    let taken = 0;
    while (
      taken < this.backlog.length &&
      this.backlog[taken]!.slot <= this.commitIndexValue + CONFIGURATION_WINDOW_SLOTS
    ) {
      const { slot, value } = this.backlog[taken]!;
      this.proposeAt(slot, value);
      taken += 1;
    }
    if (taken > 0) this.backlog.splice(0, taken);
  }

  // ---- Inputs ----

  tick(): void {
    this.tickNow += 1;
    if (this.roleValue === 'leader') {
      this.tickLeader();
      return;
    }
    if (this.votingStateValue !== 'voter') {
      // Never a candidate: its own log may lack what it promised or accepted before.
      // Probing asks whether the shard ran; rebuilding asks the leader how far it proposed, and
      // keeps asking (a peer that counted it empty at the first start may answer counted_empty:
      // the only way out when the leader it waits for cannot be elected without it).
      const probeDue = this.tickNow % this.config.heartbeatTicks === 1 % this.config.heartbeatTicks;
      if (probeDue) this.sendProbes();
      return;
    }
    if (!this.mayStandForElection) return;
    this.electionElapsed += 1;
    if (this.electionElapsed >= this.electionTimeout) this.startElection(false);
  }

  /** Proposes a value in the next free slot; returns the slot, or undefined if not a ready leader. */
  propose(value: Buffer): number | undefined {
    if (!this.canPropose) return undefined;
    const slot = this.nextSlot;
    this.nextSlot += 1;
    this.proposeAt(slot, value);
    return slot;
  }

  /**
   * Asks for a linearizable read point. Once a majority confirms this replica still leads,
   * `readsReady` carries {id, index}: serve the read after applying `index`.
   */
  readIndex(id: number): boolean {
    if (!this.isReadyLeader) return false;
    this.unsentReads.push({ id, index: this.commitIndexValue });
    return true;
  }

  /** The driver made persist work `id` (and every earlier one) durable. */
  persisted(id: number): void {
    if (!(id > this.durableId)) invariantViolated(`persisted ids must increase: ${id} after ${this.durableId}`);
    if (!(id < this.persistIdNext)) invariantViolated(`persisted id ${id} was never handed out`);
    this.durableId = id;
    this.releaseHeldReplies();
    if (this.roleValue === 'candidate' && this.selfPromisePersistId !== 0 && id >= this.selfPromisePersistId) {
      this.tryWinElection();
    }
    if (this.roleValue === 'leader') {
      for (const [slot, entry] of this.inflight) {
        if (entry.selfPersistId <= id) entry.votes.add(this.config.ordinal);
        if (this.isChosenBy(slot, entry.votes)) this.markChosen(slot);
      }
      this.advanceLeaderCommit();
      this.resolveReads();
    }
  }

  /** The driver made the 'voting-ready' decision durable: from now on this replica votes. */
  startVoting(): void {
    assert(this.votingReadyEmitted && this.votingStateValue !== 'voter', 'startVoting() without a voting-ready event');
    this.votingStateValue = 'voter';
    if (this.countedDecided) this.countedEmpty = this.countedDecided;
    this.resetElectionTimer();
  }

  private sendProbes(): void {
    for (const peer of this.knownMembers()) {
      this.sendNow(peer, ZERO_BALLOT, { $case: 'probe', probe: { nonce: this.probeNonce, identity: this.identity } });
    }
  }

  /** Anything an empty replica must not ignore: a promise, an accepted slot, a snapshot, or a rebuild of its own. */
  private get hasAcceptorState(): boolean {
    return (
      this.votingStateValue === 'rebuilding' || this.promised.round > 0 || this.snapshot.index > 0 || this.log.size > 0
    );
  }

  /**
   * A peer's answer to our probe. Any peer with state: the shard has run, rebuild. A majority
   * of the shard's replicas, all without state, from peers only: first start (had the shard
   * run, the other members of the quorum that elected its first leader hold state, and any
   * `majority` of our peers includes one of them).
   */
  private onProbeReply(from: number, hasState: boolean, replierIdentity: number, countedEmpty: boolean): void {
    // A first-start voter counted us empty under the identity our marker still holds: we
    // never voted, so we may vote, probing or rebuilding (see VotingState).
    if (countedEmpty && this.votingStateValue !== 'voter') {
      this.emitVotingReady('first-start');
      return;
    }
    if (this.votingStateValue !== 'probing') return;
    if (hasState) {
      this.votingStateValue = 'rebuilding';
      return;
    }
    this.probeReplies.set(from, replierIdentity);
    if (this.probeReplies.size >= this.majority && !this.votingReadyEmitted) {
      this.countedDecided = new Map([...this.countedEmpty, ...this.probeReplies]);
      this.emitVotingReady('first-start');
    }
  }

  private emitVotingReady(reason: 'first-start' | 'rebuilt'): void {
    if (this.votingReadyEmitted) return;
    this.votingReadyEmitted = true;
    this.events.push({
      type: 'voting-ready',
      reason,
      firstStart: { identity: this.identity, countedEmpty: this.countedDecided ?? this.countedEmpty },
    });
  }

  /**
   * Rebuilding: a leader elected by every other replica, whose recovered prefix and whatever it
   * had proposed when it answered our probe we have applied.
   */
  private checkRebuilt(leaderMask: number, leaderReadyIndex: number): void {
    if (this.votingStateValue !== 'rebuilding') return;
    const everyoneElse = votersMask(this.configuration) & ~(1 << this.config.ordinal);
    if (leaderMask !== everyoneElse || leaderReadyIndex === 0) return;
    // What this leader had proposed when it answered a probe sent after this restart: its
    // recovered prefix (a leader proposes the no-op at readyIndex as it takes office, so any
    // answer it gives at this ballot covers it), and every slot it proposed after the prefix,
    // which the lost disk may have accepted (and helped choose). Only an answer of this leader
    // at this ballot counts: an earlier leader's lastSlot may lie below this one's prefix.
    const target = this.rebuildTarget;
    if (target === undefined || !ballotEquals(target.ballot, this.leaderBallotValue)) return;
    if (this.commitIndexValue < target.slot) return;
    this.emitVotingReady('rebuilt');
  }

  /** The state machine captured its state after applying `index`; older log slots can go. */
  compact(index: number, data: Buffer): void {
    if (!(index <= this.appliedIndexValue))
      invariantViolated(`cannot snapshot past the applied index ${this.appliedIndexValue}`);
    if (index <= this.snapshot.index) return;
    // The snapshot carries what governs the slots after it (docs/ARCHITECTURE.md, "Membership").
    this.snapshot = { index, data: wrapSnapshot(this.history.epochsAfter(index), data) };
    this.history.trim(index);
    for (const slot of [...this.log.keys()]) if (slot <= index) this.log.delete(slot);
    this.snapshotToPersist = this.snapshot;
  }

  /** Leadership hand-over (graceful shutdown): ask a caught-up follower to run an election now. */
  transferLeadership(target: number): void {
    if (this.roleValue !== 'leader' || target === this.config.ordinal) return;
    this.send(target, { $case: 'timeoutNow', timeoutNow: {} });
  }

  step(message: PaxosMessage): void {
    if (message.shard !== this.config.shard || message.to !== this.config.ordinal) return;
    if (message.from === this.config.ordinal || message.from < 0 || message.from >= MEMBER_ID_LIMIT) return;
    const body = message.body;
    if (!body) return;
    const ballot = ballotOf(message.ballot);
    this.highestSeenRound = Math.max(this.highestSeenRound, ballot.round);
    switch (body.$case) {
      case 'prepare':
        return this.onPrepare(message.from, ballot, body.prepare.fromSlot, body.prepare.force);
      case 'promised':
        return this.onPromised(message.from, ballot, body.promised);
      case 'accept':
        this.onAccept(message.from, ballot, body.accept.entries, body.accept.commitIndex, body.accept.readSeq);
        if (ballotEquals(ballot, this.leaderBallotValue))
          this.checkRebuilt(body.accept.promiseQuorumMask, body.accept.readyIndex);
        return;
      case 'accepted':
        return this.onAccepted(message.from, ballot, body.accepted);
      case 'installSnapshot':
        return this.onInstallSnapshot(message.from, ballot, body.installSnapshot.index, body.installSnapshot.data);
      case 'timeoutNow':
        if (this.votingStateValue !== 'voter' || !this.mayStandForElection) return;
        if (ballotEquals(ballot, this.leaderBallotValue) && this.roleValue !== 'leader') this.startElection(true);
        return;
      case 'probe': {
        const leading = this.roleValue === 'leader';
        this.sendNow(message.from, leading ? this.leaderBallotValue : ZERO_BALLOT, {
          $case: 'probeReply',
          probeReply: {
            hasState: this.hasAcceptorState,
            leader: leading,
            lastSlot: leading ? this.nextSlot - 1 : 0,
            nonce: body.probe.nonce,
            replierIdentity: this.identity,
            countedEmpty: body.probe.identity > 0 && this.countedEmpty.get(message.from) === body.probe.identity,
          },
        });
        return;
      }
      case 'probeReply':
        if (body.probeReply.nonce !== this.probeNonce) return;
        // The first answer of a leader's ballot stays (rebuilding keeps probing; a later answer
        // would move the target ahead under load), and an earlier ballot's never replaces it.
        if (
          body.probeReply.leader &&
          (this.rebuildTarget === undefined || ballotLess(this.rebuildTarget.ballot, ballot))
        )
          this.rebuildTarget = { ballot, slot: body.probeReply.lastSlot };
        return this.onProbeReply(
          message.from,
          body.probeReply.hasState,
          body.probeReply.replierIdentity,
          body.probeReply.countedEmpty,
        );
      case 'reject':
        return this.onReject(message.from, ballot, body.reject);
      default: {
        const unknown: never = body;
        void unknown;
      }
    }
  }

  ready(): Ready {
    this.flushReads();
    let persist: PersistWork | undefined;
    if (this.hardStateDirty || this.entriesToPersist.length > 0 || this.snapshotToPersist) {
      persist = {
        id: this.persistIdNext,
        hardState: this.hardStateDirty ? { promised: this.promised } : undefined,
        entries: this.entriesToPersist,
        snapshot: this.snapshotToPersist,
      };
      this.persistIdNext += 1;
    }
    let messagesAfterPersist = this.outAfterPersist;
    if (persist === undefined && messagesAfterPersist.length > 0) {
      // Replies that claim durable state, in a Ready with no persist of its own (a duplicated
      // Prepare at the promised ballot, say): what they claim may still be in an earlier
      // persist that is not durable yet. They wait for it here, so no driver can send them early.
      this.holdReplies(messagesAfterPersist);
      messagesAfterPersist = [];
    }
    const committed = this.collectCommitted();
    const ready: Ready = {
      messages: this.out,
      persist,
      messagesAfterPersist,
      snapshotToApply: this.snapshotToApply,
      committed,
      readsReady: this.readsReady,
      events: this.events,
    };
    this.out = [];
    this.outAfterPersist = [];
    this.hardStateDirty = false;
    this.entriesToPersist = [];
    this.snapshotToPersist = undefined;
    this.snapshotToApply = undefined;
    this.readsReady = [];
    this.events = [];
    return ready;
  }

  /**
   * Replies that claim durable state wait until every persist handed out before them is
   * durable (persisted() is called in id order, so the last one handed out is enough).
   */
  private holdReplies(messages: PaxosMessage[]): void {
    const waitFor = this.persistIdNext - 1;
    if (waitFor <= this.durableId) {
      this.out.push(...messages);
      return;
    }
    const last = this.heldReplies.at(-1);
    if (last !== undefined && last.persistId === waitFor) last.messages.push(...messages);
    else this.heldReplies.push({ persistId: waitFor, messages });
  }

  private releaseHeldReplies(): void {
    while (this.heldReplies.length > 0 && this.heldReplies[0]!.persistId <= this.durableId) {
      this.out.push(...this.heldReplies.shift()!.messages);
    }
  }

  /** The persist id the next Ready will carry; lets a leader tag its own accepts. */
  private get pendingPersistId(): number {
    return this.persistIdNext;
  }

  // ---- Acceptor role ----

  private onPrepare(from: number, ballot: Ballot, fromSlot: number, force: boolean): void {
    // A non-voting replica's promise would vouch for a log it may have lost.
    if (this.votingStateValue !== 'voter') return;
    if (ballotLess(ballot, this.promised)) {
      this.sendReject(from, ballot, false);
      return;
    }
    // Leader stickiness: while a live leader is heard from, refuse to help depose it, so a
    // replica that was partitioned away cannot disrupt a healthy shard when it returns.
    const leaderAlive =
      this.leaderOrdinalValue !== from &&
      (this.roleValue === 'leader' || this.tickNow - this.lastLeaderContactTick < this.config.electionTimeoutTicksMin);
    if (!force && leaderAlive && !ballotEquals(ballot, this.promised)) {
      this.sendReject(from, ballot, false);
      return;
    }
    if (fromSlot - 1 < this.snapshot.index) {
      // The candidate lacks chosen slots this replica already compacted: it must catch up first.
      // Said only by a replica that may lead (and so bring it the snapshot): a learner's or a
      // removed member's "behind" would end every candidacy while it never campaigns itself
      // (reconfig seed 238). It hands the candidate its snapshot instead, under the candidate's
      // own ballot: a chosen prefix is a fact anyone may pass on, and it can be the only copy
      // left. In reconfig seeds 1688, 1758 and 1903 a voter of the old configuration that was
      // removed held the only snapshot past slots the two survivors of the new one had not
      // learned (its last member's disk was lost): its silence left the shard without a leader.
      if (this.mayStandForElection) this.sendReject(from, ballot, true);
      else this.sendNow(from, ballot, { $case: 'installSnapshot', installSnapshot: { ...this.snapshot } });
      return;
    }
    this.raisePromise(ballot);
    if (this.roleValue !== 'follower') this.becomeFollower(-1, ballot);
    this.electionElapsed = 0;
    const slots: number[] = [];
    for (const slot of this.log.keys()) if (slot >= fromSlot) slots.push(slot);
    slots.sort((a, b) => a - b);
    const accepted: AcceptedEntry[] = [];
    let bytes = 0;
    let nextSlot = 0;
    for (const slot of slots) {
      const entry = this.log.get(slot)!;
      if (accepted.length > 0 && bytes + entryBytes(entry.value) > this.messageValueBytesMax) {
        nextSlot = slot;
        break;
      }
      bytes += entryBytes(entry.value);
      accepted.push({ slot, ballot: entry.ballot, value: entry.value });
    }
    this.sendAfterPersist(from, ballot, {
      $case: 'promised',
      promised: {
        accepted,
        commitIndex: this.commitIndexValue,
        snapshotIndex: this.snapshot.index,
        fromSlot,
        nextSlot,
      },
    });
  }

  private onAccept(from: number, ballot: Ballot, entries: SlotValue[], leaderCommit: number, readSeq: number): void {
    if (ballotLess(ballot, this.promised)) {
      this.sendReject(from, ballot, false);
      return;
    }
    this.raisePromise(ballot);
    if (
      this.roleValue !== 'follower' ||
      this.leaderOrdinalValue !== from ||
      !ballotEquals(this.leaderBallotValue, ballot)
    ) {
      this.becomeFollower(from, ballot);
    }
    this.electionElapsed = 0;
    this.lastLeaderContactTick = this.tickNow;
    const slots: number[] = [];
    for (const entry of entries) {
      if (entry.slot <= this.snapshot.index) continue;
      const existing = this.log.get(entry.slot);
      if (existing && this.isChosenLocally(entry.slot)) {
        // A chosen slot never changes: the leader can only be re-sending the same value.
        if (!existing.value.equals(entry.value)) invariantViolated(`chosen slot ${entry.slot} would change`);
      }
      this.log.set(entry.slot, { ballot, value: entry.value });
      this.entriesToPersist.push({ slot: entry.slot, ballot, value: entry.value });
      slots.push(entry.slot);
    }
    this.learnCommit(ballot, leaderCommit);
    if (this.votingStateValue !== 'voter') {
      // A learner: its commit index lets the leader catch it up; it votes for nothing.
      this.sendNow(from, ballot, {
        $case: 'accepted',
        accepted: { slots: [], commitIndex: this.commitIndexValue, readSeq: 0, nonVoting: true },
      });
      return;
    }
    const body: BodyCase = {
      $case: 'accepted',
      accepted: { slots, commitIndex: this.commitIndexValue, readSeq, nonVoting: false },
    };
    if (slots.length > 0) this.sendAfterPersist(from, ballot, body);
    else this.sendNow(from, ballot, body);
  }

  private isChosenLocally(slot: number): boolean {
    return slot <= this.commitIndexValue;
  }

  /** Slots up to the leader's commit index are chosen; ours match if accepted at its ballot. */
  private learnCommit(ballot: Ballot, leaderCommit: number): void {
    let commit = this.commitIndexValue;
    while (commit < leaderCommit) {
      const entry = this.log.get(commit + 1);
      if (!entry || !ballotEquals(entry.ballot, ballot)) break;
      commit += 1;
    }
    const before = this.commitIndexValue;
    this.commitIndexValue = commit;
    this.noteCommitted(before, commit);
  }

  private onInstallSnapshot(from: number, ballot: Ballot, index: number, data: Buffer): void {
    if (ballotLess(ballot, this.promised)) {
      this.sendReject(from, ballot, false);
      return;
    }
    if (
      this.roleValue === 'candidate' &&
      ballotEquals(ballot, this.promised) &&
      ballot.ordinal === this.config.ordinal
    ) {
      // An answer to our own Prepare from a member that may not lead (see onPrepare): take the
      // chosen prefix and campaign again from its end, under the configuration in force there.
      if (index > this.commitIndexValue) {
        this.adoptSnapshot({ index, data });
        if (this.mayStandForElection) this.startElection(this.electionForce);
        else this.becomeFollower(-1, ballot);
      }
      return;
    }
    this.raisePromise(ballot);
    if (this.roleValue !== 'follower' || this.leaderOrdinalValue !== from) this.becomeFollower(from, ballot);
    this.electionElapsed = 0;
    this.lastLeaderContactTick = this.tickNow;
    if (index <= this.commitIndexValue) return;
    this.adoptSnapshot({ index, data });
    this.sendNow(from, ballot, {
      $case: 'accepted',
      accepted: { slots: [], commitIndex: index, readSeq: 0, nonVoting: this.votingStateValue !== 'voter' },
    });
  }

  /** Replaces the log up to `snapshot.index` with the chosen prefix it stands for. */
  private adoptSnapshot(snapshot: Snapshot): void {
    this.snapshot = snapshot;
    for (const slot of [...this.log.keys()]) if (slot <= snapshot.index) this.log.delete(slot);
    this.entriesToPersist = this.entriesToPersist.filter((e) => e.slot > snapshot.index);
    this.commitIndexValue = snapshot.index;
    this.appliedIndexValue = snapshot.index;
    this.snapshotToPersist = this.snapshot;
    this.snapshotToApply = this.adoptSnapshotConfiguration(this.snapshot);
  }

  private raisePromise(ballot: Ballot): void {
    if (ballotLess(this.promised, ballot)) {
      this.promised = ballot;
      this.hardStateDirty = true;
    }
  }

  // ---- Candidate role ----

  private startElection(force: boolean): void {
    assert(this.votingStateValue === 'voter', 'a non-voting replica stood for election');
    this.electionsStarted += 1;
    const round = Math.max(this.highestSeenRound, this.promised.round) + 1;
    const ballot: Ballot = { round, ordinal: this.config.ordinal };
    this.highestSeenRound = round;
    this.roleValue = 'candidate';
    this.clearLeaderState();
    this.leaderOrdinalValue = -1;
    this.promised = ballot;
    this.hardStateDirty = true;
    this.promises = new Map();
    this.promiseFromSlot = this.commitIndexValue + 1;
    this.selfPromisePersistId = this.pendingPersistId;
    this.resetElectionTimer();
    this.electionForce = force;
    this.prepared = new Set();
    this.sendPrepares(this.knownMembers());
  }

  /** Candidate: whether its Prepares asked for a forced election (a hand-over). */
  private electionForce = false;
  /** Candidate: the members its first Prepare went to. */
  private prepared = new Set<number>();

  private sendPrepares(members: Iterable<number>): void {
    for (const peer of members) {
      if (peer === this.config.ordinal || this.prepared.has(peer)) continue;
      this.prepared.add(peer);
      this.sendNow(peer, this.promised, {
        $case: 'prepare',
        prepare: { fromSlot: this.promiseFromSlot, force: this.electionForce },
      });
    }
  }

  /** Candidate: a promise revealed configuration entries; their members must be asked too. */
  private prepareRevealedMembers(accepted: readonly AcceptedEntry[]): void {
    for (const entry of accepted) {
      if (entry.slot < this.promiseFromSlot || !isConfigurationEntry(entry.value)) continue;
      const configuration = decodeConfigurationEntry(entry.value);
      this.sendPrepares([...configuration.voters, ...configuration.learners]);
    }
  }

  private onPromised(from: number, ballot: Ballot, promised: Promised): void {
    if (this.roleValue === 'leader' && ballotEquals(ballot, this.leaderBallotValue)) {
      // A promise that came after the election was won still binds its sender to this ballot:
      // it counts for the mask a rebuilding replica waits for (see checkRebuilt).
      this.promiseQuorumMask |= 1 << from;
      return;
    }
    if (this.roleValue !== 'candidate' || !ballotEquals(ballot, this.promised)) return;
    let promise = this.promises.get(from);
    if (promise === undefined) {
      if (promised.fromSlot !== this.promiseFromSlot) return; // a later page of a lost first one
      promise = {
        commitIndex: promised.commitIndex,
        snapshotIndex: promised.snapshotIndex,
        accepted: [],
        nextSlot: this.promiseFromSlot,
      };
      this.promises.set(from, promise);
    }
    // Pages apply in order, once each: a duplicated or reordered page is ignored.
    if (promise.nextSlot === 0 || promised.fromSlot !== promise.nextSlot) return;
    assert(promised.nextSlot === 0 || promised.nextSlot > promised.fromSlot, 'a Promised page must make progress');
    promise.accepted.push(...promised.accepted);
    promise.nextSlot = promised.nextSlot;
    this.prepareRevealedMembers(promised.accepted);
    if (promise.nextSlot !== 0) {
      this.sendNow(from, ballot, { $case: 'prepare', prepare: { fromSlot: promise.nextSlot, force: false } });
      return;
    }
    this.tryWinElection();
  }

  private get completePromises(): number {
    let complete = 0;
    for (const promise of this.promises.values()) if (promise.nextSlot === 0) complete += 1;
    return complete;
  }

  private tryWinElection(): void {
    if (this.roleValue !== 'candidate') return;
    const selfDurable = this.selfPromisePersistId !== 0 && this.durableId >= this.selfPromisePersistId;
    if (!selfDurable) return;
    const promisers = new Set<number>([this.config.ordinal]);
    for (const [peer, promise] of this.promises) if (promise.nextSlot === 0) promisers.add(peer);
    // A majority of every configuration that could have chosen at or after our first slot.
    if (!hasMajorityOfEach(this.phaseOneConfigurations(), (member) => promisers.has(member))) return;
    this.becomeLeader();
  }

  /**
   * Phase-1 recovery: for every slot above our chosen prefix, re-propose the value accepted
   * with the highest ballot by the promise quorum (ours included), and fill gaps with no-ops.
   */
  private becomeLeader(): void {
    const ballot = this.promised;
    const fromSlot = this.promiseFromSlot;
    const best = new Map<number, { ballot: Ballot; value: Buffer }>();
    let maxSlot = fromSlot - 1;
    const consider = (slot: number, entryBallot: Ballot, value: Buffer) => {
      if (slot < fromSlot) return;
      const current = best.get(slot);
      if (!current || ballotLess(current.ballot, entryBallot)) best.set(slot, { ballot: entryBallot, value });
      if (slot > maxSlot) maxSlot = slot;
    };
    for (const [slot, entry] of this.log) consider(slot, entry.ballot, entry.value);
    for (const promise of this.promises.values()) {
      if (promise.nextSlot !== 0) continue; // incomplete: it did not count
      assert(promise.snapshotIndex < fromSlot, 'a promiser compacted slots the candidate lacks');
      for (const entry of promise.accepted) consider(entry.slot, ballotOf(entry.ballot), entry.value);
    }
    this.roleValue = 'leader';
    this.leaderOrdinalValue = this.config.ordinal;
    this.leaderBallotValue = ballot;
    this.becameLeaderTick = this.tickNow;
    this.nonVotingSeenTick.clear();
    this.promiseQuorumMask = 1 << this.config.ordinal;
    for (const [peer, promise] of this.promises) if (promise.nextSlot === 0) this.promiseQuorumMask |= 1 << peer;
    this.lastLeaderContactTick = this.tickNow;
    this.heartbeatElapsed = 0;
    this.followers.clear();
    for (let slot = fromSlot; slot <= maxSlot; slot += 1) {
      const value = best.get(slot)?.value;
      if (value !== undefined && isConfigurationEntry(value))
        this.unchosenConfigurations.set(slot, decodeConfigurationEntry(value));
    }
    this.syncFollowers();
    for (const [peer, promise] of this.promises) {
      const progress = this.followers.get(peer);
      if (progress && promise.nextSlot === 0) progress.commitIndex = promise.commitIndex;
    }
    this.commitAnnouncedLast = this.commitIndexValue;
    this.commitAnnouncedBefore = this.commitIndexValue;
    this.chooseQuickFollowers();
    // Recovered slots are re-proposed in order, each once the window reaches it (s - α chosen).
    this.backlog = [];
    for (let slot = fromSlot; slot <= maxSlot; slot += 1) {
      this.backlog.push({ slot, value: best.get(slot)?.value ?? NOOP_VALUE });
    }
    // A no-op in a fresh slot marks the end of the recovered prefix: once it is applied, every
    // value chosen under an earlier ballot has been applied here, so the leader may serve.
    this.readyIndex = maxSlot + 1;
    this.backlog.push({ slot: maxSlot + 1, value: NOOP_VALUE });
    this.nextSlot = maxSlot + 2;
    this.drainBacklog();
    this.events.push({ type: 'became-leader', ballot });
  }

  // ---- Leader role ----

  private proposeAt(slot: number, value: Buffer): void {
    assert(this.roleValue === 'leader', 'only a leader proposes');
    if (!(slot > this.snapshot.index)) invariantViolated(`slot ${slot} is already compacted`);
    if (!(slot <= this.commitIndexValue + CONFIGURATION_WINDOW_SLOTS))
      invariantViolated(`slot ${slot} proposed beyond the window of commit index ${this.commitIndexValue}`);
    const ballot = this.leaderBallotValue;
    this.log.set(slot, { ballot, value });
    this.entriesToPersist.push({ slot, ballot, value });
    if (isConfigurationEntry(value) && !this.unchosenConfigurations.has(slot)) {
      this.unchosenConfigurations.set(slot, decodeConfigurationEntry(value));
      this.syncFollowers();
    }
    this.inflight.set(slot, { value, votes: new Set(), selfPersistId: this.pendingPersistId, sentTick: this.tickNow });
    if (this.pendingAccepts.length > 0 && this.pendingAcceptsBytes + entryBytes(value) > this.messageValueBytesMax)
      this.flushAccepts();
    this.pendingAccepts.push({ slot, value });
    this.pendingAcceptsBytes += entryBytes(value);
    if (this.pendingAccepts.length >= this.config.entriesPerMessageMax) this.flushAccepts();
  }

  private pendingAccepts: SlotValue[] = [];
  private pendingAcceptsBytes = 0;

  private flushAccepts(): void {
    if (this.pendingAccepts.length === 0) return;
    const entries = this.pendingAccepts;
    const entriesBytes = this.pendingAcceptsBytes;
    this.pendingAccepts = [];
    this.pendingAcceptsBytes = 0;
    for (const peer of this.followers.keys()) {
      if (!this.config.thriftyAccepts || this.quickFollowers.includes(peer)) {
        this.sendAccept(peer, entries, 0);
        continue;
      }
      let deferred = this.deferredAccepts.get(peer);
      if (deferred !== undefined && deferred.bytes + entriesBytes > this.messageValueBytesMax) {
        this.flushDeferredAccepts(peer);
        deferred = undefined;
      }
      if (deferred === undefined) {
        deferred = { entries: [], bytes: 0 };
        this.deferredAccepts.set(peer, deferred);
      }
      deferred.entries.push(...entries);
      deferred.bytes += entriesBytes;
      if (deferred.entries.length >= this.config.entriesPerMessageMax) this.flushDeferredAccepts(peer);
    }
  }

  private flushDeferredAccepts(peer: number): void {
    const deferred = this.deferredAccepts.get(peer);
    if (deferred === undefined || deferred.entries.length === 0) return;
    this.deferredAccepts.delete(peer);
    this.sendAccept(peer, deferred.entries, 0);
  }

  /** The configuration the quick followers were chosen for. */
  private quickConfiguration: Configuration | undefined;

  /**
   * Thrifty Accepts: the first voters after us, in id order, enough with us for a majority of
   * the configuration in force, start as quick. Learners are never quick. While a chosen change
   * is coming into force, every voter of both configurations is quick.
   */
  private chooseQuickFollowers(): void {
    for (const peer of [...this.deferredAccepts.keys()]) this.flushDeferredAccepts(peer);
    this.quickFollowers = [];
    this.deferredAccepts.clear();
    const configuration = this.configuration;
    this.quickConfiguration = configuration;
    if (this.history.changePendingAfter(this.commitIndexValue)) {
      const voters = new Set([...configuration.voters, ...this.history.latest.voters]);
      voters.delete(this.config.ordinal);
      this.quickFollowers = [...voters];
      return;
    }
    const self = this.config.ordinal;
    const others = configuration.voters.filter((id) => id !== self);
    const needed = this.majority - (isVoter(configuration, self) ? 1 : 0);
    const after = [...others.filter((id) => id > self), ...others.filter((id) => id < self)];
    this.quickFollowers = after.slice(0, needed);
  }

  /** A deferred follower's vote chose a slot before the quick ones answered: it becomes quick. */
  private promoteQuickFollower(from: number, entry: InflightSlot): void {
    if (!this.config.thriftyAccepts || this.quickFollowers.includes(from)) return;
    if (!isVoter(this.configuration, from)) return;
    const silent = this.quickFollowers.findIndex((peer) => !entry.votes.has(peer));
    if (silent === -1) return;
    this.quickFollowers[silent] = from;
    this.quickFollowerChangesValue += 1;
  }

  private sendAccept(peer: number, entries: SlotValue[], readSeq: number): void {
    const heartbeat = entries.length === 0;
    this.sendNow(peer, this.leaderBallotValue, {
      $case: 'accept',
      accept: {
        entries,
        commitIndex: this.commitIndexValue,
        readSeq,
        promiseQuorumMask: heartbeat ? this.promiseQuorumMask : 0,
        readyIndex: heartbeat ? this.readyIndex : 0,
      },
    });
  }

  private onAccepted(from: number, ballot: Ballot, accepted: Accepted): void {
    if (this.roleValue !== 'leader' || !ballotEquals(ballot, this.leaderBallotValue)) return;
    const progress = this.followers.get(from);
    if (!progress) return;
    const { slots, commitIndex: followerCommit, readSeq } = accepted;
    // Not a max: a follower that restarted forgets its commit index and must be caught up again.
    progress.commitIndex = followerCommit;
    if (accepted.nonVoting) {
      // A rebuilding learner: catch it up, but it counts for no quorum, read or liveness check.
      assert(slots.length === 0 && readSeq === 0, 'a non-voting replica voted');
      this.nonVotingSeenTick.set(from, this.tickNow);
      this.catchUp(from, progress);
      return;
    }
    this.nonVotingSeenTick.delete(from);
    progress.lastAckTick = this.tickNow;
    progress.readSeqAcked = Math.max(progress.readSeqAcked, readSeq);
    for (const slot of slots) {
      const entry = this.inflight.get(slot);
      if (!entry) continue;
      entry.votes.add(from);
      if (this.isChosenBy(slot, entry.votes)) {
        this.promoteQuickFollower(from, entry);
        this.markChosen(slot);
      }
    }
    // A follower that knows a slot is chosen tells us so through its commit index; the value
    // it knows is necessarily ours (Paxos), so the slot is chosen for us too.
    for (const [slot] of this.inflight) if (slot <= followerCommit) this.markChosen(slot);
    this.advanceLeaderCommit();
    this.resolveReads();
    this.catchUp(from, progress);
  }

  private readonly chosenSlots = new Set<number>();
  private commitAnnouncedLast = 0;
  private commitAnnouncedBefore = 0;

  private markChosen(slot: number): void {
    if (!this.inflight.delete(slot)) return;
    this.chosenSlots.add(slot);
  }

  private advanceLeaderCommit(): void {
    const before = this.commitIndexValue;
    while (this.chosenSlots.has(this.commitIndexValue + 1)) {
      this.chosenSlots.delete(this.commitIndexValue + 1);
      this.commitIndexValue += 1;
    }
    if (this.commitIndexValue === before) return;
    this.noteCommitted(before, this.commitIndexValue);
    this.drainBacklog();
    this.padTowardsConfiguration();
  }

  /** Sends a lagging follower the chosen slots it misses, or the snapshot if they are compacted. */
  private catchUp(peer: number, progress: FollowerProgress): void {
    // A follower that is merely one heartbeat behind learns the commit index by itself; only
    // one that still lacks what we announced a full heartbeat ago needs slots re-sent.
    if (progress.commitIndex >= this.commitAnnouncedBefore) return;
    // One batch per round trip while the follower keeps up with what we sent; a resend (the
    // batch or its answer was lost) only after retransmitTicks.
    const previousArrived = progress.catchupSentUpTo > 0 && progress.commitIndex >= progress.catchupSentUpTo;
    if (!previousArrived && this.tickNow - progress.catchupSentTick < this.config.retransmitTicks) return;
    progress.catchupSentTick = this.tickNow;
    if (progress.commitIndex < this.snapshot.index) {
      if (this.tickNow - progress.snapshotSentTick < this.config.retransmitTicks * 4) return;
      progress.snapshotSentTick = this.tickNow;
      progress.catchupSentUpTo = this.snapshot.index;
      this.sendNow(peer, this.leaderBallotValue, {
        $case: 'installSnapshot',
        installSnapshot: { index: this.snapshot.index, data: this.snapshot.data },
      });
      return;
    }
    const entries: SlotValue[] = [];
    const last = Math.min(this.commitIndexValue, progress.commitIndex + this.config.entriesPerMessageMax);
    let bytes = 0;
    for (let slot = progress.commitIndex + 1; slot <= last; slot += 1) {
      const entry = this.log.get(slot);
      if (!(entry !== undefined)) invariantViolated(`leader lacks chosen slot ${slot}`);
      if (entries.length > 0 && bytes + entryBytes(entry.value) > this.messageValueBytesMax) break;
      bytes += entryBytes(entry.value);
      entries.push({ slot, value: entry.value });
    }
    progress.catchupSentUpTo = entries.at(-1)?.slot ?? progress.commitIndex;
    this.sendAccept(peer, entries, 0);
  }

  private tickLeader(): void {
    this.flushAccepts();
    for (const peer of [...this.deferredAccepts.keys()]) this.flushDeferredAccepts(peer);
    this.heartbeatElapsed += 1;
    if (this.heartbeatElapsed >= this.config.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.commitAnnouncedBefore = this.commitAnnouncedLast;
      this.commitAnnouncedLast = this.commitIndexValue;
      for (const peer of this.followers.keys()) this.sendAccept(peer, [], this.readSeq);
    }
    this.padTowardsConfiguration();
    this.retransmit();
    this.checkQuorum();
    this.reelectForRebuild();
  }

  /**
   * A rebuilding follower may vote again only under a leader elected by every other replica
   * (see VotingState). If this leader's election does not qualify (it counted that replica's
   * old promise, or lacked another replica), and every other replica is live, it runs a new
   * election: a short pause, once per rebuild, instead of a learner that never votes again.
   */
  private reelectForRebuild(): void {
    if (this.nonVotingSeenTick.size === 0 || this.roleValue !== 'leader') return;
    const { electionTimeoutTicksMin: min, electionTimeoutTicksMax: max } = this.config;
    if (this.tickNow - this.becameLeaderTick < min || this.tickNow - this.lastReelectionTick < 2 * max) return;
    const all = votersMask(this.configuration);
    for (const [peer, seenTick] of this.nonVotingSeenTick) {
      if (this.tickNow - seenTick >= min) continue;
      if (this.promiseQuorumMask === (all & ~(1 << peer))) continue; // qualifies already
      let othersLive = true;
      for (const [other, progress] of this.followers) {
        if (other === peer || !isVoter(this.configuration, other)) continue;
        if (this.tickNow - progress.lastAckTick >= min) othersLive = false;
      }
      if (!othersLive) return;
      this.lastReelectionTick = this.tickNow;
      this.startElection(true);
      return;
    }
  }

  private retransmit(): void {
    const resend = new Map<number, { entries: SlotValue[]; bytes: number }>();
    for (const [slot, entry] of this.inflight) {
      if (this.tickNow - entry.sentTick < this.config.retransmitTicks) continue;
      entry.sentTick = this.tickNow;
      for (const peer of this.followers.keys()) {
        if (entry.votes.has(peer)) continue;
        const list = resend.get(peer) ?? { entries: [], bytes: 0 };
        const fits = list.entries.length === 0 || list.bytes + entryBytes(entry.value) <= this.messageValueBytesMax;
        // What does not fit goes at the next retransmission: sentTick is per slot.
        if (list.entries.length < this.config.entriesPerMessageMax && fits) {
          list.entries.push({ slot, value: entry.value });
          list.bytes += entryBytes(entry.value);
        } else entry.sentTick = this.tickNow - this.config.retransmitTicks;
        resend.set(peer, list);
      }
    }
    for (const [peer, list] of resend) this.sendAccept(peer, list.entries, 0);
  }

  /**
   * A leader that has not heard from a majority (of every configuration it may still be deciding
   * under) for an election timeout steps down; so does one that is no voter of the configuration
   * in force (removed: the driver should have handed leadership over first).
   */
  private checkQuorum(): void {
    if (this.tickNow % this.config.electionTimeoutTicksMin !== 0) return;
    const self = this.config.ordinal;
    const live = (member: number) => {
      if (member === self) return true;
      const progress = this.followers.get(member);
      return progress !== undefined && this.tickNow - progress.lastAckTick < this.config.electionTimeoutTicksMin;
    };
    const removed = !isVoter(this.configuration, self) && !isVoter(this.history.latest, self);
    if (removed || !hasMajorityOfEach(this.leaderConfigurations(), live))
      this.becomeFollower(-1, this.leaderBallotValue);
  }

  private onReject(from: number, ballot: Ballot, reject: { promised: Ballot | undefined; behind: boolean }): void {
    const promised = ballotOf(reject.promised);
    this.highestSeenRound = Math.max(this.highestSeenRound, promised.round);
    if (this.roleValue === 'leader' && ballotEquals(ballot, this.leaderBallotValue) && ballotLess(ballot, promised)) {
      this.becomeFollower(-1, promised);
      return;
    }
    if (this.roleValue === 'candidate' && ballotEquals(ballot, this.promised) && reject.behind) {
      // Someone compacted past our chosen prefix: let an up-to-date replica lead; its
      // catch-up will bring us the snapshot.
      this.becomeFollower(-1, this.promised);
    }
    void from;
  }

  // ---- Reads ----

  private flushReads(): void {
    this.flushAccepts();
    if (this.unsentReads.length === 0) return;
    if (this.roleValue !== 'leader') {
      for (const read of this.unsentReads) this.events.push({ type: 'read-failed', id: read.id });
      this.unsentReads = [];
      return;
    }
    this.readSeq += 1;
    for (const read of this.unsentReads) this.pendingReads.push({ id: read.id, index: read.index, seq: this.readSeq });
    this.unsentReads = [];
    for (const peer of this.followers.keys()) this.sendAccept(peer, [], this.readSeq);
    this.resolveReads();
  }

  private resolveReads(): void {
    if (this.pendingReads.length === 0) return;
    // Confirmed once the voters that acknowledged its round (we are one if we vote) hold a
    // majority of every configuration a later leader could be elected under.
    const configurations = this.leaderConfigurations();
    const self = this.config.ordinal;
    const confirmed = (seq: number) =>
      hasMajorityOfEach(
        configurations,
        (member) => member === self || (this.followers.get(member)?.readSeqAcked ?? 0) >= seq,
      );
    while (this.pendingReads.length > 0 && confirmed(this.pendingReads[0]!.seq)) {
      const read = this.pendingReads.shift()!;
      this.readsReady.push({ id: read.id, index: read.index });
    }
  }

  // ---- Role changes ----

  private becomeFollower(leader: number, ballot: Ballot): void {
    const wasLeader = this.roleValue === 'leader';
    this.roleValue = 'follower';
    this.clearLeaderState();
    if (wasLeader) this.events.push({ type: 'stepped-down', ballot: this.leaderBallotValue });
    const changed = leader !== this.leaderOrdinalValue || !ballotEquals(ballot, this.leaderBallotValue);
    this.leaderOrdinalValue = leader;
    this.leaderBallotValue = maxBallot(ballot, ZERO_BALLOT);
    if (leader >= 0) this.lastLeaderContactTick = this.tickNow;
    if (changed && leader >= 0) this.events.push({ type: 'leader-changed', leaderOrdinal: leader, ballot });
    this.resetElectionTimer();
  }

  private clearLeaderState(): void {
    this.inflight.clear();
    this.chosenSlots.clear();
    this.followers.clear();
    this.pendingAccepts = [];
    this.pendingAcceptsBytes = 0;
    this.quickFollowers = [];
    this.deferredAccepts.clear();
    this.quickConfiguration = undefined;
    this.backlog = [];
    this.unchosenConfigurations.clear();
    this.readyIndex = Number.POSITIVE_INFINITY;
    for (const read of this.pendingReads) this.events.push({ type: 'read-failed', id: read.id });
    this.pendingReads.length = 0;
    for (const read of this.unsentReads) this.events.push({ type: 'read-failed', id: read.id });
    this.unsentReads = [];
  }

  private resetElectionTimer(): void {
    const { electionTimeoutTicksMin: min, electionTimeoutTicksMax: max } = this.config;
    this.electionElapsed = 0;
    this.electionTimeout = min + Math.floor(this.config.random() * (max - min));
  }

  // ---- Output ----

  private collectCommitted(): CommittedEntry[] {
    const committed: CommittedEntry[] = [];
    while (this.appliedIndexValue < this.commitIndexValue) {
      const slot = this.appliedIndexValue + 1;
      const entry = this.log.get(slot);
      if (!(entry !== undefined)) invariantViolated(`chosen slot ${slot} has no value`);
      committed.push({ slot, value: entry.value });
      this.appliedIndexValue = slot;
    }
    return committed;
  }

  private send(to: number, body: BodyCase): void {
    this.sendNow(to, this.leaderBallotValue, body);
  }

  private sendNow(to: number, ballot: Ballot, body: BodyCase): void {
    this.out.push({ shard: this.config.shard, from: this.config.ordinal, to, ballot, body });
  }

  private sendAfterPersist(to: number, ballot: Ballot, body: BodyCase): void {
    this.outAfterPersist.push({ shard: this.config.shard, from: this.config.ordinal, to, ballot, body });
  }

  private sendReject(to: number, ballot: Ballot, behind: boolean): void {
    const hint = this.roleValue === 'leader' ? this.config.ordinal : this.leaderOrdinalValue;
    this.sendNow(to, ballot, {
      $case: 'reject',
      reject: {
        promised: this.promised,
        behind,
        snapshotIndex: this.snapshot.index,
        leaderHint: Math.max(hint, 0),
        hasLeaderHint: hint >= 0,
      },
    });
  }
}
