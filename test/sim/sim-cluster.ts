// Deterministic simulation of whole shardbank clusters in one process (after TigerBeetle's
// VOPR and FoundationDB's simulator). One seed drives every choice. The real ShardNode (Paxos
// core, bank state machine, 2PC) runs unchanged; the network, the disk, the clocks and the
// clients are simulated:
//
// - network: loss, duplication, reordering, delays with a long tail of several election
//   timeouts; partitions that drop or hold messages (released, reordered, when they heal),
//   symmetric or one-way, of one replica, of a replica from its own shard only (it still
//   reaches other shards), of a shard split in two, and of one shard from another. 2PC
//   messages go through the same links as Paxos messages.
// - disk: writes become durable only when their fsync completes (its own latency, with
//   spikes); a crash at any instant loses every write still pending, even one whose reply
//   already went out; whole-shard power loss; restarts recover from what is durable.
// - processes: pauses (the replica keeps its volatile state, gets no ticks, messages or
//   fsync completions, and wakes with stale beliefs to a backlog); ticks that drift per
//   replica, bunch and skip.
// - clients: retries with the same id, bursts of concurrent requests from one client id (as a
//   BatchTransfer), late duplicates of old attempts, retries with the same id and other
//   arguments (must be refused), linearizable reads.
//
// Checked during the run (protocol oracles): a Promised or Accepted never claims more than is
// durable at the sender when it leaves; a slot applied anywhere for the first time is durable
// on a majority; a new leader's ballot is durably promised by a majority; a replica's applied
// index never goes back while it runs, nor its durable snapshot ever; no two replicas apply
// different values at one index; a request's outcome never changes; a mismatched retry is
// never answered with an outcome; a live request is never refused as stale or mismatched.
// Checked at the end: total money conserved, every COMMITTED transfer applied exactly once,
// the replicas of each shard agree, and the whole history (reads and INSUFFICIENT_FUNDS
// answers) is consistent with a linearizable bank.
import { createHash } from 'node:crypto';
import type { Topology } from '../../node/cluster/topology.js';
import { initialClusterTotal, itemCount, shardOfItem } from '../../node/cluster/topology.js';
import { Outcome } from '../../node/gen/shardbank/v1/bank.js';
import type { PaxosMessage, TxMessage } from '../../node/gen/shardbank/v1/peer.js';
import { PaxosMessage as PaxosCodec, TxMessage as TxCodec } from '../../node/gen/shardbank/v1/peer.js';
import { decodeCommandBatch } from '../../node/shard/command-codec.js';
import type { Ballot } from '../../node/paxos/ballot.js';
import { ballotEquals, ballotLess, ballotOf, ballotString } from '../../node/paxos/ballot.js';
import type {
  CoreEvent,
  HardState,
  LogEntry,
  PersistWork,
  RecoveredAcceptorState,
  Snapshot,
  VotingState,
} from '../../node/paxos/paxos-core.js';
import {
  ShardNode,
  DEFAULT_TIMING,
  type ClientReply,
  type PacingConfig,
  type ShardReady,
} from '../../node/shard/shard-node.js';
import { ReadyDriver, type PersistStart } from '../../node/shard/ready-driver.js';
import {
  decodeConfigurationEntry,
  initialConfiguration,
  isConfigurationEntry,
  isMember,
  isVoter,
  successionProblem,
  type Configuration,
  type ConfigurationChange,
} from '../../node/paxos/membership.js';
import { txIdOf, txName } from '../../node/bank/txid.js';
import { openDurableLog, CorruptLogError } from '../../node/storage/durable-log.js';
import type { DurableLog, RecoveredState } from '../../node/storage/durable-log-interface.js';
import {
  decideVotingState,
  removeNotVotingMarker,
  type FirstStartMemory,
} from '../../node/storage/not-voting-marker.js';
import type { FileSystem } from '../../node/storage/file-system.js';
import { Prng } from './prng.js';
import { isInjectedIoError, SimFileSystem, type SimDiskFaults } from './sim-file-system.js';

/** Fault rates of one run. Probabilities "per step" are drawn every CONTROL_MS of simulated time. */
export interface SimFaults {
  dropProbability: number;
  duplicateProbability: number;
  /** A message takes the slow path with this probability: an extra delay up to slowDelayMsMax. */
  slowProbability: number;
  slowDelayMsMax: number;
  /** Per replica and step: crash (pending writes lost), restart 50-1500 ms later. */
  crashProbabilityPerStep: number;
  /** Right after a replica sent replies or messages while writes of it are still pending. */
  crashAfterSendProbability: number;
  /** Per step: every replica of one shard crashes at once. */
  powerLossProbabilityPerStep: number;
  /**
   * Per replica and step: its disk is lost (a wiped data dir, a lost PVC) and it restarts
   * empty, not voting until it has rebuilt (protocol-aware recovery). Only while every other
   * replica of its shard votes and is up: losing a majority of a shard's disks voids every
   * guarantee. Default 0.
   */
  diskLossProbabilityPerStep?: number;
  partitionProbabilityPerStep: number;
  /** Only these kinds of partition (default: all of them). */
  partitionKinds?: PartitionKind[];
  /** How long a partition lasts: 100 ms up to this. */
  partitionMsMax?: number;
  /** A partition holds messages (released when it heals) instead of dropping them. */
  holdProbability: number;
  /** Per replica and step: the process stops for up to pauseMsMax, keeping its memory. */
  pauseProbabilityPerStep: number;
  pauseMsMax: number;
  /** Each replica's tick period is TICK_MS times a factor in [1 - drift, 1 + drift]. */
  tickDrift: number;
  /** A tick comes almost at once after the previous one (a stall's catch-up). */
  tickBunchProbability: number;
  /** A tick comes 2-6 periods late (the process did not run). */
  tickSkipProbability: number;
  /** fsync latency 0.1 ms up to this; with syncSpikeProbability up to 100 ms more. */
  syncMsMax: number;
  syncSpikeProbability: number;
  /** Per attempt: a copy of it is delivered again much later (a client's late duplicate). */
  replayProbability: number;
  /** Per finished request: the client retries its id with another amount (must be refused). */
  mismatchProbability: number;
}

/** Replica settings of one run (production: see node/replica/replica.ts). */
export interface SimSettings {
  inflightSlotsMax: number;
  snapshotEverySlots: number;
  commandsPerSlotMax: number;
  entriesPerMessageMax: number;
  /** Every new slot to every follower at once (production sends thrifty Accepts: see PaxosConfig). */
  eagerAccepts: boolean;
  /** Leader pacing; a held batch is released by the next tick (the simulator has no sub-tick timer). */
  pacing?: PacingConfig;
  /** Requests one client keeps in flight at once (a BatchTransfer's entries share a client id). */
  burstMax: number;
}

export interface SimOptions {
  seed: number;
  /** The scenario name, for messages. */
  scenario?: string;
  topology: Topology;
  clients: number;
  requestsPerClient: number;
  safetyMs: number;
  livenessMsMax: number;
  crossShardRatio: number;
  hotItems: number;
  faults: SimFaults;
  settings: SimSettings;
  /**
   * Send a Ready's messagesAfterPersist at once when the Ready has no persist of its own, even
   * while an earlier persist is still pending (what node/replica/replica.ts did at 73bae90).
   * Off: they wait for every persist issued before them, as the core's contract requires.
   */
  earlyAfterPersist?: boolean;
  /**
   * Known bug 6 of issue 15, not fixed yet on this code: the funds check of a debit ignores a
   * cross-shard credit that its coordinator already decided and answered but the debited
   * shard has not applied. While set, the INSUFFICIENT_FUNDS history check leaves such
   * credits out of its lower bound (it still checks every other credit and debit).
   */
  knownBugDecidedCreditsIgnored?: boolean;
  /**
   * The cluster's very first start: every replica starts with an empty data dir and the
   * not-voting marker (probing), each at a time drawn in [0, startMsMax] (pods start seconds
   * apart). Crashes and disk losses of a shard wait until all its replicas vote: a first-start
   * voter's memory of whom it counted empty is not durable (see VotingState in paxos-core.ts).
   */
  firstStart?: { startMsMax: number };
  /** A scripted scenario: no workload and no faults of its own; the script drives (see scripted.test.ts). */
  scripted?: boolean;
  /**
   * The production DurableLog (with its recovery, snapshot files and the not-voting marker)
   * over a simulated file system with disk faults (sim-file-system.ts), instead of the
   * in-memory disk model. Runs only through runAsync().
   */
  storage?: SimStorage;
  /** One line per event (crash, restart, pause, partition, role change, commit, 2PC step, reply). */
  trace?: (line: string) => void;
  /** Online membership changes (scenario reconfig): see SimReconfig. */
  reconfig?: SimReconfig;
}

/**
 * Membership changes driven as the operator would (docs/ARCHITECTURE.md, "Membership"): each
 * shard moves between 3 and 5 voters one step at a time (add a learner, promote it once caught
 * up, remove a voter, the oldest first, handing leadership over first when it leads), under
 * every fault. A *retired* replica is gone for good: a lost disk (its pod comes back as a new
 * member: one of the spares, under the next member id) or a removed member (its pod deleted).
 */
export interface SimReconfig {
  /** Replicas per shard beyond replicasPerShard, ids replicasPerShard.., each used once as a new member. */
  sparesPerShard: number;
  /** Per shard and step: the driver looks at the leader and proposes the next step. */
  stepProbability: number;
  /** Per shard and step: a voter loses its disk for good and must be replaced. */
  retireProbabilityPerStep: number;
}

/** The production storage under the simulator: settings and fault rates. */
export interface SimStorage {
  faults: SimDiskFaults;
  /** Per replica and step: one bit of its stored log or snapshot data flips. */
  bitFlipProbabilityPerStep: number;
  segmentBytesMax: number;
  preallocateSegments: boolean;
}

/** Where a simulated replica keeps its files (its data dir, as in node/replica/replica.ts). */
const DATA_DIR = '/data';
const LOG_DIR = `${DATA_DIR}/log`;

export const TICK_MS = 25;
/** The simulator's own step: faults, restarts and clients are driven every CONTROL_MS. */
export const CONTROL_MS = 25;

export class SimFailure extends Error {
  constructor(
    readonly kind: 'safety' | 'liveness' | 'invariant',
    message: string,
    readonly seed: number,
  ) {
    super(`[seed ${seed}] ${kind}: ${message}`);
  }
}

interface SimDisk {
  hardState: HardState | undefined;
  entries: Map<number, LogEntry>;
  snapshot: Snapshot | undefined;
}

interface PendingSync {
  persist: PersistWork;
  /** Tells the replica's driver (node/shard/ready-driver.ts) that this persist is durable. */
  durable: () => void;
  doneAtMs: number;
}

interface Envelope {
  atMs: number;
  seq: number;
  kind: 'paxos' | 'tx' | 'call';
  fromShard: number;
  fromOrdinal: number;
  toShard: number;
  toOrdinal: number;
  bytes: Uint8Array | undefined;
  call?: () => void;
}

export class SimReplica {
  node: ShardNode;
  /** The production Ready loop (node/shard/ready-driver.ts) around this process's node. */
  driver: ReadyDriver<ShardReady>;
  up = true;
  disk: SimDisk = { hardState: undefined, entries: new Map(), snapshot: undefined };
  unsynced: PendingSync[] = [];
  restartAtMs = 0;
  pausedUntilMs = 0;
  backlog: Envelope[] = [];
  nextTickMs: number;
  /** Applied index seen last in this process's life: it never goes back. */
  lastApplied = 0;
  /** quickFollowerChanges of the nodes this replica ran before its last restart. */
  quickFollowerChangesBefore = 0;
  // ---- Production storage (SimOptions.storage): DurableLog over this replica's simulated disk ----
  fs: SimFileSystem | undefined;
  /** The file system as this process life sees it. */
  processFs: FileSystem | undefined;
  durableLog: DurableLog | undefined;
  /** Bumped at every crash: callbacks of an older process life do nothing. */
  incarnation = 0;
  /** Opening its log (recovery) after a restart; not up yet. */
  starting = false;
  /** The cluster's very first start (its files are empty): it probes as in production. */
  firstBoot = false;
  /**
   * The in-memory disk model's not-voting marker identity and VOTER record list (the storage
   * runs keep them in files, node/storage/not-voting-marker.ts): durable at once.
   */
  markerIdentity: number | undefined;
  countedDurable: ReadonlyMap<number, number> = new Map();
  /** Draws first-start identities (its own stream: the run's other draws do not shift). */
  readonly identityRng: Prng;
  persistChain: Promise<void> = Promise.resolve();

  constructor(
    readonly shard: number,
    readonly ordinal: number,
    readonly tickPeriodMs: number,
    firstTickMs: number,
    private readonly makeNode: (
      recovered: RecoveredAcceptorState | undefined,
      votingState: VotingState,
      firstStart?: FirstStartMemory,
    ) => ShardNode,
    private readonly makeDriver: (replica: SimReplica) => ReadyDriver<ShardReady>,
    identitySeed: number,
  ) {
    this.identityRng = new Prng(identitySeed);
    this.node = makeNode(undefined, 'voter');
    this.driver = makeDriver(this);
    this.nextTickMs = firstTickMs;
  }

  get name(): string {
    return `s${this.shard}r${this.ordinal}`;
  }

  get paused(): boolean {
    return this.pausedUntilMs > 0;
  }

  /** The data dir is gone: the next restart starts empty and not voting (see VotingState). */
  loseDisk(): void {
    this.disk = { hardState: undefined, entries: new Map(), snapshot: undefined };
    this.diskLost = true;
    this.lostAfterChosen = 0;
    this.markerIdentity = undefined;
    this.countedDurable = new Map();
    this.fs?.wipe();
  }

  /** Persists not yet durable: lost if the process dies now. */
  get pendingWrites(): number {
    return this.fs ? this.driver.persistsPending : this.unsynced.length;
  }

  /** Restarted after a disk loss and not voting yet. */
  diskLost = false;
  /** The shard's highest slot applied anywhere when this disk was lost (0: before it ran). */
  lostAfterChosen = 0;

  crash(): number {
    this.quickFollowerChangesBefore += this.node.core.quickFollowerChanges;
    const lost = this.pendingWrites;
    this.driver.halt();
    if (this.fs) {
      this.fs.crash();
      this.durableLog = undefined;
      this.incarnation += 1;
      this.starting = false;
      this.persistChain = Promise.resolve();
    }
    this.up = false;
    this.unsynced = [];
    this.pausedUntilMs = 0;
    this.backlog = [];
    return lost;
  }

  restart(nowMs: number): void {
    const entries = [...this.disk.entries.values()].sort((a, b) => a.slot - b.slot);
    // The not-voting marker (with its identity) is durable (in the sim, at once) and survives
    // crashes until removed.
    if (this.diskLost) this.markerIdentity ??= 1 + Math.floor(this.identityRng.next() * 2 ** 52);
    this.node = this.makeNode(
      { hardState: this.disk.hardState, snapshot: this.disk.snapshot, entries },
      this.diskLost ? 'probing' : 'voter',
      {
        ...(this.diskLost ? { identity: this.markerIdentity } : {}),
        countedEmpty: this.countedDurable,
      },
    );
    this.driver = this.makeDriver(this);
    this.up = true;
    this.lastApplied = this.disk.snapshot?.index ?? 0;
    this.nextTickMs = nowMs + 1;
  }

  /** Starts a new process on what recovery read back from its files. */
  startFromLog(
    log: DurableLog,
    recovered: RecoveredState,
    votingState: VotingState,
    firstStart: FirstStartMemory,
    nowMs: number,
  ): void {
    this.durableLog = log;
    this.disk = {
      hardState: recovered.hardState,
      snapshot: recovered.snapshot,
      entries: new Map(recovered.entries.map((entry) => [entry.slot, entry])),
    };
    this.node = this.makeNode(
      { hardState: recovered.hardState, snapshot: recovered.snapshot, entries: recovered.entries },
      votingState,
      firstStart,
    );
    this.driver = this.makeDriver(this);
    this.up = true;
    this.lastApplied = recovered.snapshot?.index ?? 0;
    this.nextTickMs = nowMs + 1;
  }
}

export const PARTITION_KINDS = [
  'isolate',
  'isolate-in-shard',
  'one-way-out',
  'one-way-in',
  'split',
  'shards',
  'flip-flop',
] as const;
export type PartitionKind = (typeof PARTITION_KINDS)[number];

interface Partition {
  describe: string;
  blocks: (fromShard: number, fromOrdinal: number, toShard: number, toOrdinal: number) => boolean;
  hold: boolean;
  held: Envelope[];
  healAtMs: number;
  /**
   * flip-flop: the leader is cut from its own shard; when another replica is elected, the cut
   * moves to the new leader and the old one is back (its unchosen tail can resurface), twice.
   */
  flip?: { shard: number; isolated: number; flips: number; next: number; atMs: number };
}

export interface ClientRequest {
  clientId: string;
  client: number;
  requestId: number;
  from: number;
  to: number;
  amount: number;
  outcome: number | undefined;
  attempts: number;
  inflightToken: number | undefined;
  nextTryMs: number;
  firstSentMs: number;
  /** When the client first learned the outcome (COMMITTED or INSUFFICIENT_FUNDS). */
  outcomeMs: number;
  /** A retry with another amount was sent after the outcome (it must be refused). */
  mismatchSent: boolean;
  /** The session epoch of the first send; every later send of this request names it too. */
  sessionEpoch: number | undefined;
  /** The amount of a twin: the same id with another amount, sent while the first attempt was in flight. */
  twinAmount: number | undefined;
  /** Which of the two argument sets the cluster ran (at most one may ever be answered with an outcome). */
  winner: 'original' | 'twin' | undefined;
  readonly originalAmount: number;
}

type TokenUse = {
  kind: 'attempt' | 'replay' | 'mismatch' | 'twin';
  request: ClientRequest;
  sentMs: number;
  amount: number;
};

interface ReadRecord {
  item: number;
  sentMs: number;
  replyMs: number;
  value: number;
}

export interface SimResult {
  seed: number;
  committed: number;
  insufficient: number;
  aborted: number;
  crashes: number;
  crashesAfterSend: number;
  powerLosses: number;
  diskLosses: number;
  /** Configuration entries chosen (scenario reconfig). */
  configurationsChosen: number;
  rebuilds: number;
  pauses: number;
  partitions: number;
  heldReleased: number;
  elections: number;
  simulatedMs: number;
  slotsApplied: number;
  readsChecked: number;
  insufficientChecked: number;
  replays: number;
  mismatchesRefused: number;
  /** Client requests chosen in a second slot (a later attempt, an old leader's tail): applied as duplicates. */
  repeatedRequests: number;
  /** Ready passes that ended with pacing holding a leader's queue. */
  holds: number;
  /** Times a leader replaced a silent quick follower (thrifty Accepts' fallback). */
  quickFollowerChanges: number;
  /** Under SimOptions.storage: replicas that fail-stopped on a disk error, refused to start on corruption, bits flipped, end-of-run audits. */
  failStops: number;
  corruptRefusals: number;
  bitFlips: number;
  diskAudits: number;
  /** Disk faults the simulated file systems injected (under SimOptions.storage). */
  ioErrors: number;
  lostWrites: number;
  misdirectedWrites: number;
  tornSectorsLost: number;
}

export class SimCluster {
  private readonly rng: Prng;
  private readonly netRng: Prng;
  private readonly faultRng: Prng;
  private readonly replicas: SimReplica[][] = [];
  private nowMs = 0;
  private seq = 0;
  private queue: Envelope[] = [];
  private partitions: Partition[] = [];
  private readonly chosen: Map<number, string>[] = [];
  private readonly maxChosen: number[] = [];
  private readonly requestSlots: Map<string, number>[] = [];
  /** "client#request" of every request chosen in more than one slot. */
  readonly repeated = new Set<string>();
  private readonly requests: ClientRequest[] = [];
  private readonly tokens = new Map<number, TokenUse>();
  private timeouts: { atMs: number; token: number }[] = [];
  private readonly reads = new Map<number, { item: number; sentMs: number; client: number }>();
  private readonly readHistory: ReadRecord[] = [];
  private readonly ackSent: number[] = [];
  /** Per shard: the replica that last answered a transfer (clients go there first). */
  /** Per client and shard ("c/s"): the replica that answered it last (clients go there first). */
  private readonly knownLeader = new Map<string, number>();
  private readonly recentItems: number[] = [];
  private nextToken = 1;
  /** Clients' session epochs by `shard/client`, and the OpenSession requests in flight. */
  private readonly sessionEpochs = new Map<string, number>();
  private readonly opening = new Map<string, { token: number; sinceMs: number }>();
  private readonly openTokens = new Map<number, string>();
  private faultsOn = true;
  private readonly stats = {
    failStops: 0,
    corruptRefusals: 0,
    bitFlips: 0,
    diskAudits: 0,
    diskLosses: 0,
    configurationsChosen: 0,
    rebuilds: 0,
    crashes: 0,
    crashesAfterSend: 0,
    powerLosses: 0,
    pauses: 0,
    partitions: 0,
    heldReleased: 0,
    elections: 0,
    holds: 0,
    replays: 0,
    mismatchesRefused: 0,
    insufficientChecked: 0,
    repeatedRequests: 0,
  };
  private readonly trace: ((line: string) => void) | undefined;

  constructor(readonly options: SimOptions) {
    this.rng = new Prng(options.seed);
    this.netRng = this.rng.fork();
    this.faultRng = this.rng.fork();
    this.trace = options.trace;
    const { topology, settings, faults } = options;
    for (let shard = 0; shard < topology.shards; shard += 1) {
      this.chosen.push(new Map());
      this.maxChosen.push(0);
      this.requestSlots.push(new Map());
      const group: SimReplica[] = [];
      this.histories.push(new ChosenConfigurations(initialConfiguration(topology.replicasPerShard)));
      this.reconfigTarget.push(topology.replicasPerShard);
      const replicas = topology.replicasPerShard + (options.reconfig?.sparesPerShard ?? 0);
      for (let ordinal = 0; ordinal < replicas; ordinal += 1) {
        const nodeRng = this.rng.fork();
        const makeNode = (
          recovered: RecoveredAcceptorState | undefined,
          votingState: VotingState,
          firstStart?: FirstStartMemory,
        ) =>
          new ShardNode(
            {
              topology,
              shard,
              ordinal,
              paxos: {
                electionTimeoutTicksMin: 10,
                electionTimeoutTicksMax: 20,
                heartbeatTicks: 3,
                retransmitTicks: 4,
                inflightSlotsMax: settings.inflightSlotsMax,
                entriesPerMessageMax: settings.entriesPerMessageMax,
                thriftyAccepts: !settings.eagerAccepts,
                votingState,
                ...(firstStart ? { firstStart } : {}),
              },
              timing: { ...DEFAULT_TIMING, txInquiryTicks: 12 },
              commandsPerSlotMax: settings.commandsPerSlotMax,
              snapshotEverySlots: settings.snapshotEverySlots,
              ...(settings.pacing ? { pacing: settings.pacing } : {}),
              random: () => nodeRng.next(),
              onApply: (slot, value) => this.checkChosen(shard, ordinal, slot, value),
            },
            recovered,
          );
        const period = TICK_MS * (1 + faults.tickDrift * (2 * this.rng.next() - 1));
        const replica = new SimReplica(
          shard,
          ordinal,
          period,
          this.rng.next() * period,
          makeNode,
          (r) => this.makeDriver(r),
          (options.seed * 104729 + shard * 977 + ordinal * 31 + 11) >>> 0,
        );
        if (options.storage) this.attachDisk(replica, options.storage);
        group.push(replica);
      }
      this.replicas.push(group);
    }
    if (options.firstStart) {
      for (const group of this.replicas) {
        this.firstStartOpen.push(true);
        for (const replica of group) {
          replica.loseDisk();
          replica.crash();
          replica.restartAtMs = this.faultRng.int(0, options.firstStart.startMsMax + 1);
        }
      }
    }
    if (options.scripted) this.clientsDriven = false;
    else this.makeWorkload();
  }

  /** Per shard: at its first start (options.firstStart) and not every replica votes yet. */
  private readonly firstStartOpen: boolean[] = [];
  /** Per shard: the configurations of the chosen log, as the simulator saw its slots first applied. */
  private readonly histories: ChosenConfigurations[] = [];
  /** Replicas gone for good (a lost disk replaced by a new member, or a member removed). */
  private readonly retired = new Set<SimReplica>();
  /** Per shard: the voters the membership driver moves towards (3 or 5). */
  private readonly reconfigTarget: number[] = [];

  /** A member of its shard's newest chosen configuration that is not gone for good. */
  private active(replica: SimReplica): boolean {
    return !this.retired.has(replica) && isMember(this.histories[replica.shard]!.latest, replica.ordinal);
  }

  // ---- Scripted scenarios (replica_test.zig style): quiet network, the script acts ----

  private clientsDriven = true;
  private holdTx: ((message: TxMessage) => boolean) | undefined;
  private heldTx: TxMessage[] = [];

  get now(): number {
    return this.nowMs;
  }

  group(shard: number): readonly SimReplica[] {
    return this.replicas[shard]!;
  }

  replica(shard: number, ordinal: number): SimReplica {
    return this.replicas[shard]![ordinal]!;
  }

  /** The one ready leader of a shard, if there is exactly one. */
  leader(shard: number): SimReplica | undefined {
    const leaders = this.replicas[shard]!.filter((r) => r.up && !r.paused && r.node.isReadyLeader);
    return leaders.length === 1 ? leaders[0] : undefined;
  }

  runFor(ms: number): void {
    const end = this.nowMs + ms;
    while (this.nowMs < end) this.step();
  }

  runUntil(what: string, condition: () => boolean, maxMs = 10_000): void {
    const end = this.nowMs + maxMs;
    while (!condition()) {
      if (this.nowMs > end)
        this.fail(
          'liveness',
          `script: not reached within ${maxMs} ms: ${what}; ${this.replicas.map((_, s) => this.shardStatus(s)).join(' ')}`,
        );
      this.step();
    }
  }

  /** Cuts replicas of a shard from the rest of it (they still reach other shards and clients) until uncut. */
  cut(shard: number, ...ordinals: number[]): void {
    const side = new Set(ordinals);
    this.partitions.push({
      describe: `script: s${shard} {${ordinals.join(',')}} cut from the rest of the shard`,
      blocks: (fs, fo, ts, to) => fs === shard && ts === shard && side.has(fo) !== side.has(to),
      hold: false,
      held: [],
      healAtMs: Number.POSITIVE_INFINITY,
    });
    this.log('net', `script: s${shard} {${ordinals.join(',')}} cut from the rest of the shard`);
  }

  /** Paxos messages matching `predicate` are lost (until called again with undefined). */
  dropPaxosWhere(predicate: ((message: PaxosMessage) => boolean) | undefined): void {
    this.dropPaxos = predicate;
    this.log('net', predicate ? 'script: some Paxos messages are dropped' : 'script: no Paxos message is dropped');
  }

  private dropPaxos: ((message: PaxosMessage) => boolean) | undefined;

  /** A linearizable read of one item sent to one replica; checked with the history at finish(). */
  sendRead(item: number, replica: SimReplica): void {
    const token = this.nextToken++;
    this.reads.set(token, { item, sentMs: this.nowMs, client: 0 });
    this.call(replica, () => replica.node.submitRead([item], token));
  }

  /** Reads answered so far (by any replica). */
  get readsAnswered(): number {
    return this.readHistory.length;
  }

  uncutAll(): void {
    this.partitions = [];
    this.log('net', 'script: every cut healed');
  }

  /** 2PC messages matching `predicate` are held (not sent) until releaseTx(). */
  holdTxWhere(predicate: ((message: TxMessage) => boolean) | undefined): void {
    this.holdTx = predicate;
  }

  releaseTx(): number {
    const held = this.heldTx;
    this.heldTx = [];
    this.holdTx = undefined;
    for (const message of held) this.sendTx(message);
    return held.length;
  }

  /**
   * Opens the sessions of these clients on every shard through its current leader and runs until
   * each is open (scripts do this first: a script sends a request to the replica it chooses,
   * which may be cut off by then, and a transfer needs its session's epoch).
   */
  openSessions(clientIds: readonly string[]): void {
    for (let shard = 0; shard < this.options.topology.shards; shard += 1) {
      for (const clientId of clientIds) {
        const key = `${shard}/${clientId}`;
        if (this.sessionEpochs.has(key)) continue;
        this.runUntil(`a leader of shard ${shard}`, () => this.leader(shard) !== undefined);
        const leader = this.leader(shard)!;
        const openToken = this.nextToken++;
        this.opening.set(key, { token: openToken, sinceMs: this.nowMs });
        this.openTokens.set(openToken, key);
        this.call(leader, () => leader.node.submitOpenSession(clientId, openToken));
        this.runUntil(`the session of ${clientId} on shard ${shard}`, () => this.sessionEpochs.has(key));
      }
    }
  }

  /** A client request the script sends itself (the client retries it only after finish()). */
  addRequest(clientId: string, from: number, to: number, amount: number, requestId = 1): ClientRequest {
    const request: ClientRequest = {
      clientId,
      client: this.ackSent.length,
      requestId,
      from,
      to,
      amount,
      originalAmount: amount,
      twinAmount: undefined,
      winner: undefined,
      outcome: undefined,
      attempts: 0,
      inflightToken: undefined,
      nextTryMs: Number.POSITIVE_INFINITY,
      firstSentMs: Number.POSITIVE_INFINITY,
      outcomeMs: Number.POSITIVE_INFINITY,
      mismatchSent: false,
      sessionEpoch: undefined,
    };
    this.ackSent.push(0);
    this.requests.push(request);
    return request;
  }

  /** The slot where a client request was first chosen in a shard, if it was. */
  slotOf(shard: number, clientId: string, requestId: number): number | undefined {
    return this.requestSlots[shard]!.get(`${clientId}#${requestId}`);
  }

  send(request: ClientRequest, replica: SimReplica): void {
    this.submit(request, 'attempt', request.amount, 0, replica);
  }

  /**
   * Crashes a replica now: every write not yet durable is lost. It stays down until
   * restartReplicaNow() or finish() (the script's QUIET faults never restart it on their own).
   */
  crashNow(shard: number, ordinal: number): void {
    const replica = this.replicas[shard]![ordinal]!;
    this.crashReplica(replica, 'script: crash');
    replica.restartAtMs = Number.POSITIVE_INFINITY;
  }

  restartReplicaNow(shard: number, ordinal: number): void {
    const replica = this.replicas[shard]![ordinal]!;
    if (!replica.up) this.restartReplica(replica);
  }

  /** A process pause: the replica keeps its volatile state, and wakes (wakeNow) to a backlog with stale beliefs. */
  pauseNow(shard: number, ordinal: number): void {
    const replica = this.replicas[shard]![ordinal]!;
    replica.pausedUntilMs = Number.POSITIVE_INFINITY;
    this.log(replica.name, `script: pause (${replica.node.core.role})`);
  }

  wakeNow(shard: number, ordinal: number): void {
    const replica = this.replicas[shard]![ordinal]!;
    if (replica.paused) this.wake(replica);
  }

  /** The data dir of a replica is lost: it crashes and restarts at once, empty and not voting. */
  loseDiskNow(shard: number, ordinal: number): void {
    const replica = this.replicas[shard]![ordinal]!;
    replica.loseDisk();
    this.crashReplica(replica, 'script: disk lost (data dir wiped)');
    replica.restartAtMs = Number.POSITIVE_INFINITY;
    this.restartReplica(replica);
  }

  /** Held 2PC messages are discarded (their sender died before it sent them), and no more are held. */
  dropHeldTx(): number {
    const dropped = this.heldTx.length;
    this.heldTx = [];
    this.holdTx = undefined;
    this.log('net', `script: ${dropped} held 2PC messages dropped`);
    return dropped;
  }

  /**
   * From now on the simulated clients drive the script's requests as in a random run: every
   * request without an outcome is sent (its client's burst limit allowed) and retried after a
   * refusal or a timeout, while the script's cuts and holds stay in force.
   */
  startClients(): void {
    this.clientsDriven = true;
    for (const request of this.requests)
      if (request.outcome === undefined && request.inflightToken === undefined) request.nextTryMs = this.nowMs;
  }

  /** Requests added by the script that have no outcome yet. */
  get requestsOpen(): number {
    return this.requests.filter((r) => r.outcome === undefined).length;
  }

  /** Heals everything, lets clients retry until every request has its outcome, converges, and checks. */
  finish(): SimResult {
    this.releaseTx();
    this.clientsDriven = true;
    for (const request of this.requests) if (request.outcome === undefined) request.nextTryMs = this.nowMs;
    this.heal();
    const end = this.nowMs + this.options.livenessMsMax;
    while (!this.done()) {
      if (this.nowMs > end) this.fail('liveness', `script: not converged: ${this.describeStuck()}`);
      this.step();
    }
    return this.finalChecks();
  }

  private log(who: string, text: string): void {
    this.trace?.(`${this.nowMs.toFixed(1).padStart(9)} ms  ${who.padEnd(6)} ${text}`);
  }

  private fail(kind: 'safety' | 'liveness' | 'invariant', message: string): never {
    this.log('FAIL', `${kind}: ${message}`);
    throw new SimFailure(kind, message, this.options.seed);
  }

  private makeWorkload(): void {
    const { topology, clients, requestsPerClient, crossShardRatio, hotItems } = this.options;
    const items = itemCount(topology);
    for (let c = 0; c < clients; c += 1) {
      this.ackSent.push(0);
      // Bursty clients start many requests at once, as a BatchTransfer does.
      const start = this.rng.int(0, 200);
      const bursty = this.options.settings.burstMax > 2 && this.rng.chance(0.5);
      for (let r = 1; r <= requestsPerClient; r += 1) {
        const pickItem = () =>
          hotItems > 0 ? this.rng.int(1, Math.min(items, hotItems) + 1) : this.rng.int(1, items + 1);
        let from = pickItem();
        let to = pickItem();
        const wantCross = topology.shards > 1 && this.rng.chance(crossShardRatio);
        for (
          let guard = 0;
          guard < 50 && (to === from || wantCross !== (shardOfItem(topology, from) !== shardOfItem(topology, to)));
          guard += 1
        ) {
          from = this.rng.int(1, items + 1);
          to = this.rng.int(1, items + 1);
        }
        if (to === from) to = (from % items) + 1;
        const amount = this.rng.int(1, Math.max(2, topology.initialBalance));
        this.requests.push({
          clientId: `c${c}`,
          client: c,
          requestId: r,
          from,
          to,
          amount,
          originalAmount: amount,
          twinAmount: undefined,
          winner: undefined,
          outcome: undefined,
          attempts: 0,
          inflightToken: undefined,
          nextTryMs: bursty ? start : this.rng.int(0, 200),
          firstSentMs: Number.POSITIVE_INFINITY,
          outcomeMs: Number.POSITIVE_INFINITY,
          mismatchSent: false,
          sessionEpoch: undefined,
        });
      }
    }
  }

  run(): SimResult {
    if (this.options.storage) throw new Error('SimOptions.storage: run this simulation with runAsync()');
    try {
      return this.runChecked();
    } catch (error) {
      throw this.asFailure(error);
    }
  }

  private asFailure(error: unknown): unknown {
    if (error instanceof SimFailure || !(error instanceof Error)) return error;
    // An assertion of the product code (node/util/assert.ts) failed inside a replica.
    const where =
      error.stack
        ?.split('\n')
        .find((line) => line.includes('/node/'))
        ?.trim() ?? '';
    const cause = error.cause instanceof Error ? `; cause: ${error.cause.message}` : '';
    this.log('FAIL', `assertion: ${error.message}${cause} ${where}`);
    return new SimFailure(
      'invariant',
      `assertion in the product code: ${error.message}${cause} (${where})`,
      this.options.seed,
    );
  }

  private runChecked(): SimResult {
    const { safetyMs, livenessMsMax } = this.options;
    while (true) {
      if (this.nowMs >= safetyMs && this.faultsOn) this.heal();
      if (!this.faultsOn && this.done()) break;
      if (this.nowMs > safetyMs + livenessMsMax) {
        this.fail('liveness', `not converged after ${livenessMsMax} ms of healed operation: ${this.describeStuck()}`);
      }
      this.step();
    }
    return this.finalChecks();
  }

  private nextControlMs = 0;

  /** Carries out the next event: a control step, a message, a replica's tick, fsync completion or wake-up. */
  private step(): void {
    {
      let at = this.nextControlMs;
      let pick: (() => void) | undefined;
      const head = this.queue[0];
      if (head && head.atMs < at) {
        at = head.atMs;
        pick = () => this.deliver(this.queue.shift()!);
      }
      for (const group of this.replicas) {
        for (const replica of group) {
          // A disk completes operations of a running or starting process (not of a paused one).
          if (replica.fs && (replica.starting || (replica.up && !replica.paused)) && replica.fs.nextDueMs < at) {
            at = replica.fs.nextDueMs;
            const fs = replica.fs;
            pick = () => fs.runNextDue();
          }
          if (!replica.up) continue;
          if (replica.paused) {
            if (replica.pausedUntilMs < at) {
              at = replica.pausedUntilMs;
              pick = () => this.wake(replica);
            }
            continue;
          }
          const sync = replica.unsynced[0];
          if (sync && sync.doneAtMs < at) {
            at = sync.doneAtMs;
            pick = () => this.completeSync(replica);
          }
          if (replica.nextTickMs < at) {
            at = replica.nextTickMs;
            pick = () => this.tickReplica(replica);
          }
        }
      }
      this.nowMs = Math.max(this.nowMs, at);
      if (pick) pick();
      else {
        this.nextControlMs += CONTROL_MS;
        this.control();
      }
    }
  }

  private finalChecks(): SimResult {
    this.checkFinal();
    this.checkHistory();
    let committed = 0;
    let insufficient = 0;
    let aborted = 0;
    for (const request of this.requests) {
      if (request.outcome === Outcome.COMMITTED) committed += 1;
      else if (request.outcome === Outcome.INSUFFICIENT_FUNDS) insufficient += 1;
      else aborted += 1;
    }
    let slotsApplied = 0;
    for (const map of this.chosen) slotsApplied += map.size;
    let quickFollowerChanges = 0;
    for (const group of this.replicas)
      for (const replica of group)
        quickFollowerChanges += replica.quickFollowerChangesBefore + replica.node.core.quickFollowerChanges;
    const s = this.stats;
    const disks = (key: keyof SimFileSystem['counters']) =>
      this.replicas.flat().reduce((sum, r) => sum + (r.fs?.counters[key] ?? 0), 0);
    return {
      seed: this.options.seed,
      committed,
      insufficient,
      aborted,
      crashes: s.crashes,
      crashesAfterSend: s.crashesAfterSend,
      powerLosses: s.powerLosses,
      diskLosses: s.diskLosses,
      configurationsChosen: s.configurationsChosen,
      rebuilds: s.rebuilds,
      pauses: s.pauses,
      partitions: s.partitions,
      heldReleased: s.heldReleased,
      elections: s.elections,
      simulatedMs: this.nowMs,
      slotsApplied,
      readsChecked: this.readHistory.length,
      insufficientChecked: s.insufficientChecked,
      replays: s.replays,
      mismatchesRefused: s.mismatchesRefused,
      repeatedRequests: s.repeatedRequests,
      holds: s.holds,
      quickFollowerChanges,
      failStops: s.failStops,
      corruptRefusals: s.corruptRefusals,
      bitFlips: s.bitFlips,
      diskAudits: s.diskAudits,
      ioErrors: disks('ioErrors') + disks('noSpace'),
      lostWrites: disks('lostWrites'),
      misdirectedWrites: disks('misdirectedWrites'),
      tornSectorsLost: disks('tornSectorsLost'),
    };
  }

  private heal(): void {
    this.faultsOn = false;
    this.log('sim', 'faults off: healing every partition, waking and restarting every replica');
    for (const group of this.replicas) for (const replica of group) if (replica.fs) replica.fs.faultsOn = false;
    for (const partition of this.partitions) this.releaseHeld(partition);
    this.partitions = [];
    for (const group of this.replicas) {
      for (const replica of group) {
        if (this.retired.has(replica)) continue;
        if (!replica.up && !replica.starting) this.restartReplica(replica);
        else if (replica.paused) this.wake(replica);
      }
    }
  }

  private done(): boolean {
    if (this.requests.some((r) => r.outcome === undefined)) return false;
    for (const all of this.replicas) {
      const group = all.filter((replica) => this.active(replica));
      if (this.options.reconfig && !this.membershipSettled(all[0]!.shard)) return false;
      for (const replica of group) {
        if (!replica.up || replica.paused) return false;
        if (replica.node.bank.inflightCount() > 0) return false;
      }
      // Converged means: a ready leader, every replica applied what it committed, and nothing
      // that any replica ever applied is missing (a whole shard restarting forgets its commit index).
      const leader = group.find((r) => r.node.isReadyLeader);
      if (!leader) return false;
      const applied = group.map((r) => r.node.bank.appliedIndex);
      if (new Set(applied).size !== 1) return false;
      if (applied[0]! < this.maxChosen[all[0]!.shard]!) return false;
    }
    return true;
  }

  private describeStuck(): string {
    const pending = this.requests.filter((r) => r.outcome === undefined).length;
    return `${pending} requests without outcome; ${this.replicas.map((_, s) => this.shardStatus(s)).join(' ')}`;
  }

  /** VOPR-style status of one shard: role (L/F/C, x down, p paused) @ applied index, open 2PC records. */
  private shardStatus(shard: number): string {
    const group = this.replicas[shard]!;
    return `s${shard}[${group
      .map(
        (r) =>
          `${r.ordinal}:${this.retired.has(r) ? 'gone' : !this.active(r) ? '-' : !r.up ? 'x' : r.paused ? 'p' : r.node.core.role[0]!.toUpperCase()}@${r.node.bank.appliedIndex}${r.up && r.node.bank.inflightCount() > 0 ? `/tx${r.node.bank.inflightCount()}` : ''}`,
      )
      .join(' ')}]`;
  }

  // ---- Faults, restarts, clients: every CONTROL_MS ----

  private control(): void {
    const f = this.options.faults;
    const rng = this.faultRng;
    for (const group of this.replicas) {
      for (const replica of group) {
        if (!replica.up) {
          // (Only a replica that refused to start or fail-stopped while faults are off is down then.)
          if (!replica.starting && !this.retired.has(replica) && this.nowMs >= replica.restartAtMs)
            this.restartReplica(replica);
          continue;
        }
        if (!this.faultsOn || this.firstStartOpen[replica.shard]) continue;
        if (
          this.options.storage &&
          rng.chance(this.options.storage.bitFlipProbabilityPerStep) &&
          this.mayCorrupt(replica) &&
          replica.fs!.flipBit()
        ) {
          this.stats.bitFlips += 1;
          this.log(
            replica.name,
            `disk: a bit flipped in ${replica.fs!.corruptions.at(-1)!.path} at byte ${replica.fs!.corruptions.at(-1)!.offset}`,
          );
        }
        if (rng.chance(f.crashProbabilityPerStep)) this.crashReplica(replica, 'crash');
        else if (
          (f.diskLossProbabilityPerStep ?? 0) > 0 &&
          rng.chance(f.diskLossProbabilityPerStep!) &&
          this.mayLoseDisk(replica)
        ) {
          this.stats.diskLosses += 1;
          replica.loseDisk();
          replica.lostAfterChosen = this.maxChosen[replica.shard]!;
          this.crashReplica(replica, 'disk lost (data dir wiped)');
        } else if (
          !replica.paused &&
          rng.chance(f.pauseProbabilityPerStep * (replica.node.core.role === 'leader' ? 3 : 1))
        ) {
          this.stats.pauses += 1;
          replica.pausedUntilMs = this.nowMs + rng.int(50, Math.max(60, f.pauseMsMax));
          this.log(replica.name, `pause until ${replica.pausedUntilMs.toFixed(0)} ms (${replica.node.core.role})`);
        }
      }
    }
    if (this.faultsOn) {
      if (rng.chance(f.powerLossProbabilityPerStep)) {
        const shard = rng.int(0, this.replicas.length);
        if (!this.firstStartOpen[shard]) {
          this.stats.powerLosses += 1;
          this.log(`s${shard}`, 'power loss: every replica of the shard crashes');
          for (const replica of this.replicas[shard]!) if (replica.up) this.crashReplica(replica, 'power loss');
        }
      }
      this.runFlips();
      for (const partition of [...this.partitions]) {
        if (partition.healAtMs <= this.nowMs) {
          this.partitions.splice(this.partitions.indexOf(partition), 1);
          this.log(
            'net',
            `heal ${partition.describe}${partition.held.length > 0 ? `: ${partition.held.length} held messages released` : ''}`,
          );
          this.releaseHeld(partition);
        }
      }
      if (this.partitions.length < 2 && rng.chance(f.partitionProbabilityPerStep)) this.newPartition();
    }
    if (this.options.reconfig) this.driveMembership(this.options.reconfig);
    this.driveClients();
  }

  // ---- Membership changes (SimOptions.reconfig), driven as the operator would ----

  private driveMembership(reconfig: SimReconfig): void {
    const rng = this.faultRng;
    for (let shard = 0; shard < this.replicas.length; shard += 1) {
      if (this.faultsOn && rng.chance(reconfig.retireProbabilityPerStep)) this.loseDiskForGood(shard);
      if (!rng.chance(reconfig.stepProbability)) continue;
      const leader = this.leader(shard);
      if (leader) this.call(leader, () => this.membershipStep(shard, leader));
    }
  }

  /** A voter's disk is lost for good: it must be replaced by a new member (one per shard at a time). */
  private loseDiskForGood(shard: number): void {
    const group = this.replicas[shard]!;
    const history = this.histories[shard]!;
    const latest = history.latest;
    if ([...latest.voters, ...latest.learners].some((id) => this.retired.has(group[id]!))) return;
    const leader = this.leader(shard);
    if (!leader || leader.node.core.configurationChangeInFlight) return;
    // Only a loss every configuration still to govern a slot survives: a majority of its voters
    // stays able to vote (losing one of two voters, as losing two of three, voids every guarantee).
    // A voter still rebuilding a lost disk does not vote, and it votes again only under a leader
    // elected by every other voter: one gone for good as well would leave it waiting forever
    // (swarm seed 721741: voters 0,1,2,3 with 2 rebuilding when 3 was lost, no leader again).
    // From the oldest durable snapshot of a member on: a restart starts from the configuration there.
    const oldestSnapshot = Math.min(
      ...group.filter((r) => this.active(r)).map((r) => r.disk.snapshot?.index ?? 0),
      this.maxChosen[shard]!,
    );
    const configurations = history.from(oldestSnapshot + 1);
    const votes = (id: number) => !this.retired.has(group[id]!) && !group[id]!.diskLost;
    const survives = (lost: number) =>
      configurations.every(
        (c) => c.voters.filter((id) => id !== lost && votes(id)).length >= majorityOfConfiguration(c),
      );
    const candidates = latest.voters.filter((id) => group[id]!.up && survives(id));
    if (candidates.length === 0) return;
    this.stats.diskLosses += 1;
    this.retire(group[this.faultRng.pick(candidates)]!, 'disk lost for good: it comes back as a new member');
  }

  private retire(replica: SimReplica, why: string): void {
    this.retired.add(replica);
    if (replica.up) replica.crash();
    this.log(replica.name, `${why}  ${this.shardStatus(replica.shard)}`);
  }

  /** One step towards the target size, at the ready leader, as the operator would make it. */
  private membershipStep(shard: number, leader: SimReplica): void {
    const core = leader.node.core;
    if (!leader.up || !core.isReadyLeader) return;
    const group = this.replicas[shard]!;
    const inForce = core.configuration;
    const latest = core.latestConfiguration;
    // A member removed, once its removal is in force and every member's durable snapshot is past
    // it (a restart starts from the configuration in force at its snapshot): its pod is deleted.
    const history = this.histories[shard]!;
    const restartConfigurations = group
      .filter((r) => this.active(r))
      .map((r) => history.inForceAt((r.disk.snapshot?.index ?? 0) + 1));
    for (const replica of group) {
      if (this.retired.has(replica) || replica.ordinal >= latest.nextMemberId) continue;
      if (isMember(inForce, replica.ordinal) || isMember(latest, replica.ordinal)) continue;
      if (restartConfigurations.some((c) => isMember(c, replica.ordinal))) continue;
      this.retire(replica, 'removed from the configuration: its pod is deleted');
    }
    if (core.configurationChangeInFlight) return;
    const gone = (id: number) => this.retired.has(group[id]!);
    const target = this.reconfigTarget[shard]!;
    const lost = [...latest.voters, ...latest.learners].find(gone);
    let change: ConfigurationChange;
    if (lost !== undefined) change = { type: 'remove', member: lost };
    else if (latest.voters.length < target && latest.learners.length > 0)
      change = { type: 'promote', member: latest.learners[0]! };
    else if (latest.voters.length + latest.learners.length < target) {
      const spare = group[latest.nextMemberId];
      if (spare === undefined || !spare.up) return;
      change = { type: 'add-learner' };
    } else if (latest.voters.length > target) {
      const victim = latest.voters[0]!;
      if (victim === leader.ordinal) {
        // The leader is the one to go: it hands leadership over first.
        let to = -1;
        let best = -1;
        for (const [ordinal, commit] of core.followerCommitIndexes()) {
          if (commit > best) [to, best] = [ordinal, commit];
        }
        if (to >= 0) core.transferLeadership(to);
        this.log(leader.name, `membership: hands leadership over to ${to} before its removal`);
        return;
      }
      change = { type: 'remove', member: victim };
    } else if (latest.learners.length > 0) change = { type: 'remove', member: latest.learners[0]! };
    else {
      // At the target: go to the other size while the faults run and spares remain.
      if (!this.faultsOn || group[latest.nextMemberId + 1] === undefined) return;
      this.reconfigTarget[shard] = target === 3 ? 5 : 3;
      return;
    }
    const result = core.proposeConfigurationChange(change);
    this.log(
      leader.name,
      `membership: ${describeChange(change)} ${result.ok ? `proposed at slot ${result.slot}` : `refused: ${result.error}`}`,
    );
  }

  /** The healed phase converges once no lost member is left in the configuration and no change runs. */
  private membershipSettled(shard: number): boolean {
    const group = this.replicas[shard]!;
    const latest = this.histories[shard]!.latest;
    if ([...latest.voters, ...latest.learners].some((id) => this.retired.has(group[id]!))) return false;
    const leader = group.find((r) => r.up && r.node.isReadyLeader);
    return leader !== undefined && !leader.node.core.configurationChangeInFlight;
  }

  /** One disk of a shard at a time: every other replica is up with its disk and votes. */
  private mayLoseDisk(replica: SimReplica): boolean {
    const group = this.replicas[replica.shard]!;
    return (
      group.length > 1 &&
      group.every(
        (other) =>
          other === replica ||
          (other.up &&
            !other.diskLost &&
            other.node.core.votingState === 'voter' &&
            (other.fs?.corruptions.length ?? 0) === 0),
      )
    );
  }

  /** A corrupting disk fault may hit this replica: it has none yet and it may lose its disk (a refusal to start ends in a wipe). */
  private mayCorrupt(replica: SimReplica): boolean {
    return (
      this.faultsOn &&
      replica.up &&
      !replica.diskLost &&
      replica.fs !== undefined &&
      replica.fs.corruptions.length === 0 &&
      this.mayLoseDisk(replica)
    );
  }

  private crashReplica(replica: SimReplica, why: string): void {
    this.stats.crashes += 1;
    const lost = replica.crash();
    replica.restartAtMs = this.nowMs + this.faultRng.int(50, 1500);
    this.log(
      replica.name,
      `${why}${lost > 0 ? `: ${lost} pending writes lost` : ''}; restart at ${replica.restartAtMs.toFixed(0)} ms`,
    );
  }

  private restartReplica(replica: SimReplica): void {
    if (replica.fs) {
      this.restartFromDisk(replica);
      return;
    }
    replica.restart(this.nowMs);
    this.log(
      replica.name,
      `restart (promised ${ballotString(ballotOf(replica.disk.hardState?.promised))}, snapshot ${replica.disk.snapshot?.index ?? 0}, ${replica.disk.entries.size} entries)`,
    );
    this.process(replica);
  }

  private wake(replica: SimReplica): void {
    replica.pausedUntilMs = 0;
    const backlog = replica.backlog;
    replica.backlog = [];
    this.log(replica.name, `wake (${replica.node.core.role}, ${backlog.length} messages waiting)`);
    if (replica.nextTickMs < this.nowMs) replica.nextTickMs = this.nowMs + this.netRng.next() * 2;
    // The backlog arrives in a burst, reordered; client calls among it may come first.
    for (const envelope of backlog) this.schedule({ ...envelope, atMs: this.nowMs + this.netRng.next() * 3 });
  }

  private newPartition(): void {
    const rng = this.faultRng;
    const { shards, replicasPerShard } = this.options.topology;
    const hold = rng.chance(this.options.faults.holdProbability);
    const healAtMs = this.nowMs + rng.int(100, this.options.faults.partitionMsMax ?? 2500);
    // Half the time the target is a current leader, where partitions hurt.
    const pickReplica = (): [number, number] => {
      const shard = rng.int(0, shards);
      const leader = this.replicas[shard]!.find((r) => r.up && r.node.core.role === 'leader');
      if (leader && rng.chance(this.options.faults.partitionKinds ? 0.9 : 0.5)) return [shard, leader.ordinal];
      return [shard, rng.int(0, replicasPerShard)];
    };
    const allowed = this.options.faults.partitionKinds ?? PARTITION_KINDS;
    const kinds = allowed.filter(
      (k) =>
        (shards > 1 || (k !== 'shards' && k !== 'isolate-in-shard')) &&
        (replicasPerShard >= 3 || (k !== 'split' && k !== 'flip-flop')),
    );
    const kind = rng.pick(kinds.length > 0 ? kinds : ['isolate']);
    let describe: string;
    let blocks: Partition['blocks'];
    let flip: Partition['flip'];
    if (kind === 'flip-flop') {
      const [shard, ordinal] = pickReplica();
      if (this.partitions.some((p) => p.flip?.shard === shard)) return; // one flip-flop per shard at a time
      const state = { shard, isolated: ordinal, flips: 0, next: -1, atMs: 0 };
      flip = state;
      describe = `flip-flop in s${shard}, first s${shard}r${ordinal} cut from its own shard`;
      blocks = (fs, fo, ts, to) => fs === shard && ts === shard && (fo === state.isolated) !== (to === state.isolated);
    } else if (kind === 'split') {
      const shard = rng.int(0, shards);
      const side = new Set<number>();
      const size = rng.int(1, Math.ceil(replicasPerShard / 2) + 1);
      // Often the leader is on the smaller side, with a follower or two that still believe in it.
      const leader = this.replicas[shard]!.find((r) => r.up && r.node.core.role === 'leader');
      if (leader && rng.chance(0.5)) side.add(leader.ordinal);
      while (side.size < size) side.add(rng.int(0, replicasPerShard));
      describe = `split s${shard} {${[...side].join(',')}} | rest`;
      blocks = (fs, fo, ts, to) => fs === shard && ts === shard && side.has(fo) !== side.has(to);
    } else if (kind === 'shards') {
      const a = rng.int(0, shards);
      let b = rng.int(0, shards - 1);
      if (b >= a) b += 1;
      const oneWay = rng.chance(0.5);
      describe = `shards s${a} ${oneWay ? '->' : '<->'} s${b} cut`;
      blocks = (fs, _fo, ts) => (fs === a && ts === b) || (!oneWay && fs === b && ts === a);
    } else {
      const [shard, ordinal] = pickReplica();
      const me = (s: number, o: number) => s === shard && o === ordinal;
      if (kind === 'isolate-in-shard') {
        describe = `s${shard}r${ordinal} cut from its own shard (reaches other shards)`;
        blocks = (fs, fo, ts, to) => fs === shard && ts === shard && me(fs, fo) !== me(ts, to);
      } else if (kind === 'one-way-out') {
        describe = `s${shard}r${ordinal} cannot send`;
        blocks = (fs, fo, ts, to) => me(fs, fo) && !me(ts, to);
      } else if (kind === 'one-way-in') {
        describe = `s${shard}r${ordinal} cannot receive`;
        blocks = (fs, fo, ts, to) => me(ts, to) && !me(fs, fo);
      } else {
        describe = `s${shard}r${ordinal} isolated`;
        blocks = (fs, fo, ts, to) => me(fs, fo) !== me(ts, to);
      }
    }
    this.stats.partitions += 1;
    const partition: Partition = {
      describe: `${describe} (${hold ? 'hold' : 'drop'})`,
      blocks,
      hold,
      held: [],
      healAtMs,
      ...(flip ? { flip } : {}),
    };
    this.partitions.push(partition);
    this.log('net', `partition ${partition.describe} until ${healAtMs} ms`);
  }

  private flipPartitions(leader: SimReplica): void {
    if (!this.faultsOn) return;
    for (const partition of this.partitions) {
      const flip = partition.flip;
      if (!flip || flip.shard !== leader.shard || flip.isolated === leader.ordinal || flip.flips >= 2 || flip.next >= 0)
        continue;
      // The new leader gets a moment to commit (client retries, presumed aborts) before the cut moves to it.
      flip.next = leader.ordinal;
      flip.atMs = this.nowMs + this.faultRng.int(20, 400);
      partition.healAtMs = Math.max(partition.healAtMs, flip.atMs + 100);
    }
  }

  private runFlips(): void {
    for (const partition of this.partitions) {
      const flip = partition.flip;
      if (!flip || flip.next < 0 || flip.atMs > this.nowMs) continue;
      flip.flips += 1;
      this.log(
        'net',
        `flip-flop: s${flip.shard}r${flip.next} now cut from its shard, s${flip.shard}r${flip.isolated} back`,
      );
      flip.isolated = flip.next;
      flip.next = -1;
      this.releaseHeld(partition);
      partition.healAtMs = Math.max(partition.healAtMs, this.nowMs + this.faultRng.int(300, 1500));
    }
  }

  private releaseHeld(partition: Partition): void {
    this.stats.heldReleased += partition.held.length;
    for (const envelope of partition.held) this.schedule({ ...envelope, atMs: this.nowMs + this.netRng.next() * 30 });
    partition.held = [];
  }

  // ---- One replica's process: ticks, fsync completions, the driver ----

  private tickReplica(replica: SimReplica): void {
    const f = this.options.faults;
    let period = replica.tickPeriodMs * (0.9 + 0.2 * this.netRng.next());
    if (this.faultsOn) {
      if (this.netRng.chance(f.tickBunchProbability)) period = this.netRng.next() * 2;
      else if (this.netRng.chance(f.tickSkipProbability)) period *= this.netRng.int(2, 7);
    }
    replica.nextTickMs = this.nowMs + period;
    replica.node.tick();
    this.process(replica);
  }

  // ---- One replica's driver: the shared Ready loop with simulated ports ----

  private makeDriver(replica: SimReplica): ReadyDriver<ShardReady> {
    return new ReadyDriver<ShardReady>(
      { ready: () => replica.node.ready(), persisted: (id) => replica.node.persisted(id) },
      {
        storage: {
          persist: (work, durable, quiet) =>
            replica.fs ? this.persistToLog(replica, work, durable, quiet) : this.startPersist(replica, work, durable),
        },
        send: (message) => this.sendPaxos(message),
        sendTx: (message) => this.sendTx(message),
        reply: (reply) => this.onReply(reply, replica),
        event: (event) => this.onEvent(replica, event),
        progress: () => this.process(replica),
      },
      { earlyAfterPersist: this.options.earlyAfterPersist ?? false },
    );
  }

  /** Simulated disk: durable when its fsync completes (own latency, with spikes), in issue order. */
  private startPersist(replica: SimReplica, persist: PersistWork, durable: () => void): PersistStart {
    const f = this.options.faults;
    const last = replica.unsynced[replica.unsynced.length - 1];
    let latency = 0.1 + this.netRng.next() * f.syncMsMax;
    if (this.faultsOn && this.netRng.chance(f.syncSpikeProbability)) latency += this.netRng.next() * 100;
    const doneAtMs = Math.max(last?.doneAtMs ?? 0, this.nowMs + latency);
    replica.unsynced.push({ persist, durable, doneAtMs });
    return 'pending';
  }

  private completeSync(replica: SimReplica): void {
    const sync = replica.unsynced.shift()!;
    this.recordDurable(replica, sync.persist);
    // The driver sends the replies that claim it, tells the node, and runs another pass.
    sync.durable();
  }

  /** The oracles' view of a replica's disk: what it has acknowledged as durable. */
  private recordDurable(replica: SimReplica, persist: PersistWork): void {
    const disk = replica.disk;
    if (persist.hardState) disk.hardState = persist.hardState;
    if (persist.snapshot) {
      if (disk.snapshot && persist.snapshot.index < disk.snapshot.index) {
        this.fail(
          'safety',
          `${replica.name}: durable snapshot went back from ${disk.snapshot.index} to ${persist.snapshot.index}`,
        );
      }
      disk.snapshot = persist.snapshot;
      for (const slot of [...disk.entries.keys()]) if (slot <= persist.snapshot.index) disk.entries.delete(slot);
    }
    for (const entry of persist.entries) {
      if (disk.snapshot && entry.slot <= disk.snapshot.index) continue;
      disk.entries.set(entry.slot, entry);
    }
  }

  // ---- One replica's disk under SimOptions.storage: the production DurableLog over SimFileSystem ----

  private asyncError: unknown;

  private attachDisk(replica: SimReplica, storage: SimStorage): void {
    const rng = new Prng((this.options.seed * 7919 + replica.shard * 131 + replica.ordinal * 17 + 5) >>> 0);
    const fs = new SimFileSystem(
      rng,
      () => this.nowMs,
      storage.faults,
      () => (this.diskTouched = true),
    );
    fs.corruptionAllowed = () => this.mayCorrupt(replica);
    replica.fs = fs;
    // The first start of the cluster goes through the same recovery path, from empty files.
    replica.up = false;
    replica.firstBoot = true;
    replica.restartAtMs = 0;
  }

  private diskTouched = false;

  /** Runs `work` from a promise callback: a failure there is carried to the event loop, never lost. */
  private guard(work: () => void): void {
    try {
      work();
    } catch (error) {
      this.asyncError ??= error;
    }
  }

  /** After an event: lets the storage's promise continuations run (deterministically: no real I/O). */
  private async settle(): Promise<void> {
    if (this.diskTouched) {
      this.diskTouched = false;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (this.asyncError !== undefined) {
      const error = this.asyncError;
      this.asyncError = undefined;
      throw error;
    }
  }

  /** The storage port of the production driver, as node/replica/replica.ts has it (fast path included). */
  private persistToLog(replica: SimReplica, work: PersistWork, durable: () => void, quiet: boolean): PersistStart {
    const log = replica.durableLog!;
    const incarnation = replica.incarnation;
    try {
      log.append(work.hardState, work.entries);
      if (quiet && !work.snapshot && replica.node.core.role !== 'leader' && log.syncNow()) {
        this.recordDurable(replica, work);
        return 'durable';
      }
    } catch (error) {
      this.storageFailed(replica, error);
      return 'failed';
    }
    const synced = log.sync();
    const snapshotSaved = work.snapshot ? log.saveSnapshot(work.snapshot) : Promise.resolve();
    // Seen by the chain below; until it gets there a failure must not count as unhandled.
    synced.catch(() => undefined);
    snapshotSaved.catch(() => undefined);
    replica.persistChain = replica.persistChain
      .then(() => Promise.all([synced, snapshotSaved]))
      .then(
        () =>
          this.guard(() => {
            if (incarnation !== replica.incarnation) return;
            this.recordDurable(replica, work);
            durable();
          }),
        (error: unknown) =>
          this.guard(() => incarnation === replica.incarnation && replica.up && this.storageFailed(replica, error)),
      );
    return 'pending';
  }

  /** The disk returned an error: the replica must fail-stop (it never answers after a failed persist). */
  private storageFailed(replica: SimReplica, error: unknown): void {
    if (!isInjectedIoError(error)) throw error;
    this.stats.failStops += 1;
    this.crashReplica(
      replica,
      `fail-stop: ${error instanceof Error ? error.message : String(error)}${error instanceof Error && error.cause instanceof Error ? ` (${error.cause.message})` : ''}`,
    );
  }

  /** A shard's first start is over once every replica votes (faults were held off until then). */
  private noteVoting(replica: SimReplica): void {
    if (this.replicas[replica.shard]!.every((r) => r.up && r.node.core.votingState === 'voter'))
      this.firstStartOpen[replica.shard] = false;
  }

  private removeMarkerThenVote(replica: SimReplica, firstStart: FirstStartMemory): void {
    const incarnation = replica.incarnation;
    replica.persistChain = replica.persistChain
      .then(() => removeNotVotingMarker(DATA_DIR, firstStart, replica.processFs!))
      .then(
        () =>
          this.guard(() => {
            if (incarnation !== replica.incarnation || !replica.up) return;
            replica.node.core.startVoting();
            this.noteVoting(replica);
            this.process(replica);
          }),
        (error: unknown) =>
          this.guard(() => incarnation === replica.incarnation && replica.up && this.storageFailed(replica, error)),
      );
  }

  private restartFromDisk(replica: SimReplica): void {
    replica.starting = true;
    replica.incarnation += 1;
    const incarnation = replica.incarnation;
    this.log(
      replica.name,
      `${replica.firstBoot ? 'first start' : 'restart'}: recovering from its files [${replica.fs!.describe()}]`,
    );
    this.openFromDisk(replica, incarnation).catch((error: unknown) => (this.asyncError ??= error));
  }

  private async openFromDisk(replica: SimReplica, incarnation: number): Promise<void> {
    const storage = this.options.storage!;
    const disk = replica.fs!;
    const fs = disk.forProcess();
    let opened: { log: DurableLog; recovered: RecoveredState };
    let votingState: VotingState;
    let firstStart: FirstStartMemory;
    try {
      opened = await openDurableLog(LOG_DIR, {
        fileSystem: fs,
        segmentBytesMax: storage.segmentBytesMax,
        preallocateSegments: storage.preallocateSegments,
      });
      // The production decision, at the first start too (every replica probes).
      const decision = await decideVotingState(
        DATA_DIR,
        opened.recovered,
        this.options.topology.replicasPerShard,
        fs,
        () => replica.identityRng.next(),
      );
      votingState = decision.votingState;
      firstStart = decision.firstStart;
    } catch (error) {
      if (incarnation !== replica.incarnation) return;
      replica.starting = false;
      if (error instanceof CorruptLogError) this.refusedToStart(replica, error);
      else if (isInjectedIoError(error)) {
        // Fail-stop, modelled as a power cycle: what a failed write left only in the page cache is gone.
        disk.crash();
        this.stats.failStops += 1;
        replica.restartAtMs = this.nowMs + this.faultRng.int(50, 500);
        this.log(
          replica.name,
          `fail-stop while recovering: ${error instanceof Error ? error.message : String(error)}; restart at ${replica.restartAtMs.toFixed(0)} ms`,
        );
      } else throw error;
      return;
    }
    if (incarnation !== replica.incarnation) return;
    replica.starting = false;
    this.checkRecovered(replica, opened.recovered);
    // A replica rebuilding after a lost disk keeps its not-voting marker across crashes until the core lets it vote.
    if (replica.diskLost && votingState === 'voter' && this.options.topology.replicasPerShard > 1) {
      this.fail(
        'safety',
        `${replica.name} restarted as a voter while still rebuilding its lost disk (its not-voting marker was not honoured)`,
      );
    }
    disk.corruptions.length = 0; // whatever was damaged, recovery read back everything acknowledged
    replica.processFs = fs;
    replica.firstBoot = false;
    replica.startFromLog(opened.log, opened.recovered, votingState, firstStart, this.nowMs);
    const r = opened.recovered;
    this.log(
      replica.name,
      `up (${votingState}; promised ${ballotString(ballotOf(r.hardState?.promised))}, snapshot ${r.snapshot?.index ?? 0}, ${r.entries.length} entries${r.truncated.length > 0 ? `, torn tail of ${r.tornTailBytes} bytes truncated` : ''})`,
    );
    this.process(replica);
  }

  /**
   * What recovery read back must hold everything the replica acknowledged (promise, snapshot,
   * every accepted entry at its ballot or a later one): a torn or unacknowledged tail may be
   * cut, acknowledged data never silently.
   */
  private checkRecovered(replica: SimReplica, recovered: RecoveredState): void {
    const acked = replica.disk;
    const faults = replica.fs!.corruptions.map((c) => `${c.kind} ${c.path}@${c.offset}`).join(', ') || 'no corruption';
    const lost = (what: string) =>
      this.fail(
        'safety',
        `${replica.name}: recovery lost acknowledged state silently: ${what} (disk faults since its last start: ${faults})`,
      );
    if (
      acked.hardState &&
      (!recovered.hardState || ballotLess(recovered.hardState.promised, acked.hardState.promised))
    ) {
      lost(
        `promised ${ballotString(acked.hardState.promised)}, recovered ${ballotString(ballotOf(recovered.hardState?.promised))}`,
      );
    }
    if (acked.snapshot && (recovered.snapshot?.index ?? 0) < acked.snapshot.index)
      lost(`snapshot ${acked.snapshot.index}, recovered ${recovered.snapshot?.index ?? 0}`);
    if (
      acked.snapshot &&
      recovered.snapshot?.index === acked.snapshot.index &&
      !recovered.snapshot.data.equals(acked.snapshot.data)
    )
      lost(`snapshot ${acked.snapshot.index} read back with other data`);
    const covered = recovered.snapshot?.index ?? 0;
    const bySlot = new Map(recovered.entries.map((entry) => [entry.slot, entry]));
    for (const [slot, entry] of acked.entries) {
      if (slot <= covered) continue;
      const got = bySlot.get(slot);
      if (
        !got ||
        ballotLess(got.ballot, entry.ballot) ||
        (ballotEquals(got.ballot, entry.ballot) && !got.value.equals(entry.value))
      ) {
        lost(
          `slot ${slot} accepted at ${ballotString(entry.ballot)}, recovered ${got ? `${ballotString(got.ballot)}${ballotEquals(got.ballot, entry.ballot) ? ' with another value' : ''}` : 'nothing'}`,
        );
      }
    }
  }

  /**
   * Recovery refused to start (CorruptLogError): right only when a corrupting fault hit this
   * disk. The operator then wipes the data dir: the replica rejoins empty and not voting, and
   * rebuilds from its peers (the same path as a lost disk).
   */
  private refusedToStart(replica: SimReplica, error: CorruptLogError): void {
    if (replica.fs!.corruptions.length === 0)
      this.fail(
        'safety',
        `${replica.name} refused to start though nothing on its disk was corrupted: ${error.message}`,
      );
    this.stats.corruptRefusals += 1;
    replica.loseDisk();
    replica.lostAfterChosen = this.maxChosen[replica.shard]!;
    replica.restartAtMs = this.nowMs + this.faultRng.int(50, 1500);
    this.log(
      replica.name,
      `refused to start: ${error.message}; data dir wiped, restart (empty, not voting) at ${replica.restartAtMs.toFixed(0)} ms`,
    );
  }

  /** The async event loop of a run under SimOptions.storage (the same events; storage continuations drained after each). */
  async runAsync(): Promise<SimResult> {
    if (!this.options.storage) return this.run();
    try {
      const { safetyMs, livenessMsMax } = this.options;
      while (true) {
        if (this.nowMs >= safetyMs && this.faultsOn) this.heal();
        if (!this.faultsOn && this.done()) break;
        if (this.nowMs > safetyMs + livenessMsMax)
          this.fail('liveness', `not converged after ${livenessMsMax} ms of healed operation: ${this.describeStuck()}`);
        this.step();
        await this.settle();
      }
      const result = this.finalChecks();
      await this.auditDisks();
      return { ...result, diskAudits: 1 };
    } catch (error) {
      throw this.asFailure(error);
    }
  }

  /** At the end: every replica loses power; each must recover everything it acknowledged. */
  private async auditDisks(): Promise<void> {
    for (const group of this.replicas)
      for (const replica of group) this.crashReplica(replica, 'final audit: power off');
    for (const group of this.replicas) for (const replica of group) this.restartReplica(replica);
    const end = this.nowMs + 60_000;
    while (this.replicas.some((group) => group.some((r) => r.starting || !r.up))) {
      if (this.nowMs > end) this.fail('liveness', 'final audit: replicas did not recover from their files');
      this.step();
      await this.settle();
    }
    this.stats.diskAudits += 1;
  }

  private onEvent(replica: SimReplica, event: CoreEvent): void {
    if (event.type === 'became-leader') {
      this.stats.elections += 1;
      this.checkLeaderPromises(replica, event.ballot);
      this.log(
        replica.name,
        `became leader at ballot ${ballotString(event.ballot)}  ${this.shardStatus(replica.shard)}`,
      );
      this.flipPartitions(replica);
    } else if (event.type === 'stepped-down') {
      this.log(replica.name, `stepped down from ballot ${ballotString(event.ballot)}`);
    } else if (event.type === 'voting-ready') {
      // The driver removes the marker durably (at once here), then lets the core vote.
      this.stats.rebuilds += 1;
      this.log(replica.name, `voting again (${event.reason})  ${this.shardStatus(replica.shard)}`);
      // A disk lost after its shard chose a slot may have held promises it no longer keeps: it
      // must rebuild. (A disk is lost only while every other replica votes, so the first-start
      // rule's single-failure model holds, and no first-start claim can be true of it.)
      if (replica.diskLost && event.reason === 'first-start' && replica.lostAfterChosen > 0)
        this.fail(
          'safety',
          `${replica.name} lost its disk after its shard chose slot ${replica.lostAfterChosen}, yet was admitted to vote as at a first start instead of rebuilding`,
        );
      replica.diskLost = false;
      if (replica.fs) this.removeMarkerThenVote(replica, event.firstStart);
      else {
        replica.countedDurable = event.firstStart.countedEmpty;
        replica.markerIdentity = undefined;
        replica.node.core.startVoting();
        this.noteVoting(replica);
      }
    }
  }

  /** Ready passes of one replica (node/replica/replica.ts runs the same driver with real I/O). */
  private process(replica: SimReplica): void {
    if (!replica.up || replica.paused) return;
    const f = this.options.faults;
    let spoke = false;
    for (let round = 0; round < 8; round += 1) {
      const did = replica.driver.pass();
      if (replica.node.proposalsHeld) this.stats.holds += 1;
      if (replica.driver.lastPassSpoke) spoke = true;
      if (!did || !replica.up) break;
    }
    if (!replica.up) return;
    const applied = replica.node.bank.appliedIndex;
    if (applied < replica.lastApplied)
      this.fail(
        'safety',
        `${replica.name}: applied index went back from ${replica.lastApplied} to ${applied} while running`,
      );
    replica.lastApplied = applied;
    // Crash at the worst instant: right after it spoke, with writes still pending.
    if (
      this.faultsOn &&
      !this.firstStartOpen[replica.shard] &&
      spoke &&
      replica.pendingWrites > 0 &&
      this.faultRng.chance(f.crashAfterSendProbability)
    ) {
      this.stats.crashesAfterSend += 1;
      this.crashReplica(replica, 'crash right after sending, before its fsync');
    }
  }

  // ---- Protocol oracles ----

  /** A slot applied for the first time must be durable on a majority (that is what chosen means). */
  private checkChosen(shard: number, ordinal: number, slot: number, value: Buffer): void {
    const digest = digestOf(value);
    const chosen = this.chosen[shard]!;
    const previous = chosen.get(slot);
    if (previous === undefined) {
      chosen.set(slot, digest);
      // Durable on a majority of the voters of the configuration in force at this slot.
      const configuration = this.histories[shard]!.inForceAt(slot);
      if (isConfigurationEntry(value)) {
        const effective = this.histories[shard]!.record(slot, decodeConfigurationEntry(value));
        if (effective) this.stats.configurationsChosen += 1;
        this.log(
          `s${shard}`,
          `membership: slot ${slot} chose ${describeConfiguration(decodeConfigurationEntry(value))}${effective ? '' : ' (void: another change is coming into force)'}`,
        );
      }
      let durable = 0;
      for (const replica of this.replicas[shard]!) {
        if (!isVoter(configuration, replica.ordinal)) continue;
        const entry = replica.disk.entries.get(slot);
        if (
          this.lostAndRebuilding(replica) ||
          (replica.disk.snapshot && replica.disk.snapshot.index >= slot) ||
          (entry && entry.value.equals(value))
        )
          durable += 1;
      }
      if (durable < majorityOfConfiguration(configuration)) {
        this.fail(
          'safety',
          `shard ${shard} slot ${slot}: applied by replica ${ordinal} while durable on only ${durable} of the ${configuration.voters.length} voters ${configuration.voters.join(',')}`,
        );
      }
      this.noteRepeats(shard, slot, value);
      if (slot > this.maxChosen[shard]!) {
        this.maxChosen[shard] = slot;
        if (this.trace) this.log(`s${shard}r${ordinal}`, `commit -> ${slot}${value.length === 0 ? ' (no-op)' : ''}`);
      }
    } else if (previous !== digest) {
      this.fail('safety', `shard ${shard} slot ${slot}: replica ${ordinal} applied a different value`);
    }
  }

  /**
   * Counts client requests chosen in more than one slot (an old leader's tail chosen after a
   * retry ran elsewhere): the state machine must treat the later ones as duplicates.
   */
  private noteRepeats(shard: number, slot: number, value: Buffer): void {
    if (value.length === 0 || isConfigurationEntry(value)) return;
    const seen = this.requestSlots[shard]!;
    for (const command of decodeCommandBatch(value)) {
      const body = command.body;
      const request =
        body?.$case === 'transfer' ? body.transfer : body?.$case === 'coordPrepare' ? body.coordPrepare : undefined;
      if (!request) continue;
      const key = `${request.clientId}#${request.requestId}`;
      const first = seen.get(key);
      if (first === undefined) seen.set(key, slot);
      else if (first !== slot) {
        this.stats.repeatedRequests += 1;
        this.repeated.add(key);
        this.log(`s${shard}`, `slot ${slot} carries ${key} again (first in slot ${first})`);
      }
    }
  }

  /**
   * A replica whose disk was lost, until it votes again: what it had durably is gone by the
   * fault itself, so these durability oracles count it as the copy it was; what the protocol
   * owes then is that it votes in no quorum until rebuilt, which the one-value-per-slot check
   * and the final invariants judge.
   */
  private lostAndRebuilding(replica: SimReplica): boolean {
    return replica.diskLost;
  }

  /** A new leader's ballot must be durably promised by a majority, itself included. */
  private checkLeaderPromises(replica: SimReplica, ballot: Ballot): void {
    // A majority of the voters in force at the first slot it recovered (its phase 1 needs at least that).
    const configuration = this.histories[replica.shard]!.inForceAt(replica.node.core.commitIndex + 1);
    let durable = 0;
    for (const peer of this.replicas[replica.shard]!) {
      if (!isVoter(configuration, peer.ordinal)) continue;
      const promised = peer.disk.hardState?.promised;
      if (this.lostAndRebuilding(peer) || (promised && !ballotLess(promised, ballot))) durable += 1;
    }
    if (durable < majorityOfConfiguration(configuration)) {
      this.fail(
        'safety',
        `${replica.name} leads at ballot ${ballotString(ballot)} durably promised by only ${durable} of the voters ${configuration.voters.join(',')}`,
      );
    }
  }

  /** A Promised or Accepted claims durable state: it must be on the sender's disk when it leaves. */
  private checkClaim(message: PaxosMessage): void {
    const sender = this.replicas[message.shard]?.[message.from];
    if (!sender) return;
    const ballot = ballotOf(message.ballot);
    const body = message.body;
    if (body?.$case === 'promised') {
      const promised = sender.disk.hardState?.promised;
      if (!promised || ballotLess(promised, ballot)) {
        this.fail(
          'safety',
          `${sender.name} sent Promised(${ballotString(ballot)}) while its durable promise is ${ballotString(ballotOf(promised))}`,
        );
      }
    } else if (body?.$case === 'accepted') {
      for (const slot of body.accepted.slots) {
        if (sender.disk.snapshot && sender.disk.snapshot.index >= slot) continue;
        const entry = sender.disk.entries.get(slot);
        if (!entry || !ballotEquals(entry.ballot, ballot)) {
          this.fail(
            'safety',
            `${sender.name} sent Accepted(slot ${slot}, ballot ${ballotString(ballot)}) before that entry was durable`,
          );
        }
      }
    }
  }

  // ---- Network ----

  private schedule(envelope: Envelope): void {
    let lo = 0;
    let hi = this.queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const other = this.queue[mid]!;
      if (other.atMs < envelope.atMs || (other.atMs === envelope.atMs && other.seq < envelope.seq)) lo = mid + 1;
      else hi = mid;
    }
    this.queue.splice(lo, 0, envelope);
  }

  private enqueue(
    kind: 'paxos' | 'tx',
    fromShard: number,
    fromOrdinal: number,
    toShard: number,
    toOrdinal: number,
    bytes: Uint8Array,
  ): void {
    const f = this.options.faults;
    const rng = this.netRng;
    if (this.faultsOn) {
      for (const partition of this.partitions) {
        if (!partition.blocks(fromShard, fromOrdinal, toShard, toOrdinal)) continue;
        if (partition.hold)
          partition.held.push({ atMs: 0, seq: this.seq++, kind, fromShard, fromOrdinal, toShard, toOrdinal, bytes });
        return;
      }
      if (rng.chance(f.dropProbability)) return;
    }
    const copies = this.faultsOn && rng.chance(f.duplicateProbability) ? 2 : 1;
    for (let i = 0; i < copies; i += 1) {
      let delay = this.faultsOn ? rng.next() * 3 : 0.2 + rng.next() * 0.5;
      if (this.faultsOn && rng.chance(f.slowProbability)) delay += rng.next() * f.slowDelayMsMax;
      this.schedule({
        atMs: this.nowMs + delay,
        seq: this.seq++,
        kind,
        fromShard,
        fromOrdinal,
        toShard,
        toOrdinal,
        bytes,
      });
    }
  }

  private sendPaxos(message: PaxosMessage): void {
    this.checkClaim(message);
    if (this.dropPaxos?.(message)) return;
    // Messages cross the network encoded, as in production: the codec is part of what is tested.
    this.enqueue('paxos', message.shard, message.from, message.shard, message.to, PaxosCodec.encode(message).finish());
  }

  private sendTx(message: TxMessage): void {
    if (this.holdTx?.(message)) {
      this.heldTx.push(message);
      return;
    }
    const group = this.replicas[message.toShard];
    if (!group) return;
    if (this.trace)
      this.log(`s${message.fromShard}r${message.fromOrdinal}`, `2pc ${describeTx(message)} -> s${message.toShard}`);
    const bytes = TxCodec.encode(message).finish();
    for (const replica of group)
      this.enqueue('tx', message.fromShard, message.fromOrdinal, message.toShard, replica.ordinal, bytes);
  }

  private deliver(envelope: Envelope): void {
    const replica = this.replicas[envelope.toShard]?.[envelope.toOrdinal];
    if (!replica || !replica.up) return;
    if (replica.paused) {
      replica.backlog.push(envelope);
      return;
    }
    if (envelope.kind === 'call') envelope.call!();
    else if (envelope.kind === 'paxos') replica.node.stepPaxos(PaxosCodec.decode(envelope.bytes!));
    else replica.node.stepTx(TxCodec.decode(envelope.bytes!));
    this.process(replica);
  }

  /** A client call reaches a replica at once, or waits in its backlog while it is paused. */
  private call(replica: SimReplica, run: () => void): void {
    const envelope: Envelope = {
      atMs: this.nowMs,
      seq: this.seq++,
      kind: 'call',
      fromShard: -1,
      fromOrdinal: -1,
      toShard: replica.shard,
      toOrdinal: replica.ordinal,
      bytes: undefined,
      call: run,
    };
    this.deliver(envelope);
  }

  // ---- Clients ----

  private pickReplica(client: number, shard: number): SimReplica | undefined {
    const candidates = this.replicas[shard]!.filter((r) => r.up);
    if (candidates.length === 0) return undefined;
    // Clients go to the replica that answered them last (stale after a leader change), else to any.
    const known = this.replicas[shard]![this.knownLeader.get(`${client}/${shard}`) ?? -1];
    if (known && known.up && this.rng.chance(0.7)) return known;
    return this.rng.pick(candidates);
  }

  /** Linearizable reads; mostly of items just changed, where a stale read would show. */
  private driveReads(): void {
    if (!this.rng.chance(0.4)) return;
    const { topology } = this.options;
    const item =
      this.recentItems.length > 0 && this.rng.chance(0.6)
        ? this.rng.pick(this.recentItems)
        : this.rng.int(1, itemCount(topology) + 1);
    const client = this.rng.int(0, this.options.clients);
    const replica = this.pickReplica(client, shardOfItem(topology, item));
    if (!replica) return;
    const token = this.nextToken++;
    this.reads.set(token, { item, sentMs: this.nowMs, client });
    this.call(replica, () => replica.node.submitRead([item], token));
  }

  private submit(
    request: ClientRequest,
    kind: TokenUse['kind'],
    amount: number,
    acknowledgedBelow: number,
    target?: SimReplica,
  ): void {
    const shard = shardOfItem(this.options.topology, request.from);
    const replica = target ?? this.pickReplica(request.client, shard);
    if (!replica) return;
    // A client opens its session on a shard before its first transfer there (OpenSession has
    // no other effect, so a lost reply is simply asked again); a request keeps its first epoch.
    const sessionKey = `${shard}/${request.clientId}`;
    const sessionEpoch = request.sessionEpoch ?? this.sessionEpochs.get(sessionKey);
    if (sessionEpoch === undefined) {
      const open = this.opening.get(sessionKey);
      if (open && this.nowMs - open.sinceMs < 3000) return;
      if (open) this.openTokens.delete(open.token);
      const openToken = this.nextToken++;
      this.opening.set(sessionKey, { token: openToken, sinceMs: this.nowMs });
      this.openTokens.set(openToken, sessionKey);
      this.call(replica, () => replica.node.submitOpenSession(request.clientId, openToken));
      return;
    }
    request.sessionEpoch = sessionEpoch;
    const token = this.nextToken++;
    this.tokens.set(token, { kind, request, sentMs: this.nowMs, amount });
    this.timeouts.push({ atMs: this.nowMs + 3000, token });
    if (kind === 'attempt') {
      request.inflightToken = token;
      request.attempts += 1;
      request.firstSentMs = Math.min(request.firstSentMs, this.nowMs);
    }
    const input = {
      clientId: request.clientId,
      requestId: request.requestId,
      from: request.from,
      to: request.to,
      amount,
      acknowledgedBelow,
      sessionEpoch,
    };
    this.ackSent[request.client] = Math.max(this.ackSent[request.client]!, acknowledgedBelow);
    this.call(replica, () => replica.node.submitTransfer(input, token));
    // A copy of this attempt that the network delivers again much later (a client's late duplicate).
    if (kind === 'attempt' && this.faultsOn && this.faultRng.chance(this.options.faults.replayProbability)) {
      const at = this.nowMs + this.faultRng.int(50, 3000);
      this.stats.replays += 1;
      const envelope: Envelope = {
        atMs: at,
        seq: this.seq++,
        kind: 'call',
        fromShard: -1,
        fromOrdinal: -1,
        toShard: replica.shard,
        toOrdinal: replica.ordinal,
        bytes: undefined,
        call: () => {
          const replayToken = this.nextToken++;
          this.tokens.set(replayToken, { kind: 'replay', request, sentMs: this.nowMs, amount });
          this.timeouts.push({ atMs: this.nowMs + 3000, token: replayToken });
          replica.node.submitTransfer(input, replayToken);
        },
      };
      this.schedule(envelope);
    }
  }

  private driveClients(): void {
    if (!this.clientsDriven) {
      this.expireTimeouts();
      return;
    }
    this.driveReads();
    const inflightPerClient = new Map<number, number>();
    for (const request of this.requests) {
      if (request.inflightToken !== undefined)
        inflightPerClient.set(request.client, (inflightPerClient.get(request.client) ?? 0) + 1);
    }
    const f = this.options.faults;
    for (const request of this.requests) {
      if (request.outcome !== undefined) {
        // A retry with the same id and another amount, after the outcome and before the
        // client acknowledged it: it must be refused (mismatch), never run.
        if (
          this.faultsOn &&
          !request.mismatchSent &&
          request.requestId > this.ackSent[request.client]! &&
          this.faultRng.chance(f.mismatchProbability)
        ) {
          request.mismatchSent = true;
          this.submit(request, 'mismatch', request.amount + 1, this.acknowledgedBelow(request));
        }
        continue;
      }
      if (request.inflightToken !== undefined) {
        // A twin: the same id with another amount while the first attempt is in flight. The
        // cluster may run either one, never both, and must refuse the other as mismatched.
        if (
          this.faultsOn &&
          request.twinAmount === undefined &&
          request.winner === undefined &&
          this.faultRng.chance(f.mismatchProbability / 4)
        ) {
          request.twinAmount = request.originalAmount + 1;
          this.submit(request, 'twin', request.twinAmount, this.acknowledgedBelow(request));
        }
        continue;
      }
      if (request.nextTryMs > this.nowMs) continue;
      if ((inflightPerClient.get(request.client) ?? 0) >= this.options.settings.burstMax) continue;
      inflightPerClient.set(request.client, (inflightPerClient.get(request.client) ?? 0) + 1);
      this.submit(request, 'attempt', request.amount, this.acknowledgedBelow(request));
    }
    this.expireTimeouts();
  }

  private expireTimeouts(): void {
    this.timeouts = this.timeouts.filter((t) => {
      if (t.atMs > this.nowMs) return true;
      const use = this.tokens.get(t.token);
      this.tokens.delete(t.token);
      // A reply lost with a crash: the client times out and retries with the same id.
      if (use && use.kind === 'attempt' && use.request.inflightToken === t.token) {
        use.request.inflightToken = undefined;
        use.request.nextTryMs = this.nowMs + this.rng.int(10, 100);
      }
      return false;
    });
  }

  /** Clients acknowledge the contiguous prefix of their request ids that have an outcome. */
  private acknowledgedBelow(request: ClientRequest): number {
    let acknowledged = 0;
    for (const other of this.requests) {
      if (other.client !== request.client || other.requestId !== acknowledged + 1) continue;
      if (other.outcome === undefined) break;
      acknowledged += 1;
    }
    return Math.min(acknowledged, request.requestId - 1);
  }

  private onReply(reply: ClientReply, replica: SimReplica): void {
    const sessionKey = this.openTokens.get(reply.token);
    if (sessionKey !== undefined) {
      this.openTokens.delete(reply.token);
      this.opening.delete(sessionKey);
      if (reply.kind === 'session') this.sessionEpochs.set(sessionKey, reply.epoch);
      return;
    }
    const read = this.reads.get(reply.token);
    if (read) {
      this.reads.delete(reply.token);
      if (reply.kind === 'read') {
        this.readHistory.push({ item: read.item, sentMs: read.sentMs, replyMs: this.nowMs, value: reply.balances[0]! });
        this.knownLeader.set(`${read.client}/${replica.shard}`, replica.ordinal);
      }
      return;
    }
    const use = this.tokens.get(reply.token);
    if (!use) return;
    this.tokens.delete(reply.token);
    const request = use.request;
    const name = `${request.clientId}#${request.requestId}`;
    // Refusals by followers are most of the replies and say nothing: not traced.
    if (this.trace && !(reply.kind === 'error' && reply.code === 'not-leader')) {
      const what =
        reply.kind === 'transfer'
          ? (Outcome[reply.outcome] ?? String(reply.outcome))
          : reply.kind === 'error'
            ? `error ${reply.code}`
            : reply.kind;
      this.log(replica.name, `reply ${use.kind} ${name} (${request.from}->${request.to} ${use.amount}): ${what}`);
    }
    if (use.kind === 'mismatch') {
      if (reply.kind === 'transfer')
        this.fail(
          'safety',
          `request ${name} retried with another amount was answered ${reply.outcome} instead of refused`,
        );
      if (reply.kind === 'error' && reply.code === 'mismatch') this.stats.mismatchesRefused += 1;
      return;
    }
    if (use.kind === 'attempt' && request.inflightToken === reply.token) request.inflightToken = undefined;
    const variant = use.amount === request.originalAmount ? 'original' : 'twin';
    if (reply.kind === 'transfer') {
      if (request.winner !== undefined && request.winner !== variant) {
        this.fail(
          'safety',
          `request ${name}: both argument sets were answered with an outcome (amounts ${request.originalAmount} and ${request.twinAmount})`,
        );
      }
      this.setWinner(request, variant);
      this.knownLeader.set(`${request.client}/${replica.shard}`, replica.ordinal);
      if (reply.outcome === Outcome.COMMITTED || reply.outcome === Outcome.INSUFFICIENT_FUNDS) {
        if (request.outcome !== undefined && request.outcome !== reply.outcome) {
          this.fail('safety', `request ${name} got ${reply.outcome} after ${request.outcome}`);
        }
        if (request.outcome === undefined) {
          request.outcome = reply.outcome;
          request.outcomeMs = this.nowMs;
          if (reply.outcome === Outcome.COMMITTED) {
            this.recentItems.push(request.from, request.to);
            if (this.recentItems.length > 8) this.recentItems.splice(0, this.recentItems.length - 8);
          }
        }
        return;
      }
    }
    if (reply.kind === 'error' && reply.code === 'mismatch') {
      // Refusals are fine once the client sent two argument sets for one id (either may be
      // refused while the other is in flight or done); never without a twin.
      if (request.twinAmount === undefined) {
        this.fail(
          'safety',
          `request ${name} (${use.kind}, amount ${use.amount}) refused as mismatched: ${reply.message}`,
        );
      }
      // The other argument set may have run (or be in flight): the client's next attempt
      // carries it, and alternates again if that one is refused in turn.
      if (request.winner === undefined)
        request.amount = variant === 'original' ? request.twinAmount : request.originalAmount;
      this.stats.mismatchesRefused += 1;
    }
    if (reply.kind === 'error' && reply.code === 'expired') {
      this.fail(
        'safety',
        `request ${name} (${use.kind}) refused as of an expired session though no session is ever evicted here: ${reply.message}`,
      );
    }
    if (
      reply.kind === 'error' &&
      reply.code === 'stale' &&
      (use.kind === 'attempt' || request.requestId > this.ackSent[request.client]!)
    ) {
      this.fail(
        'safety',
        `request ${name} (${use.kind}) refused as stale though the client never acknowledged it: ${reply.message}`,
      );
    }
    // not-leader, aborted, unavailable: retry the same request id later.
    if (use.kind === 'attempt' && request.outcome === undefined && this.clientsDriven)
      request.nextTryMs = this.nowMs + this.rng.int(5, 60);
  }

  private setWinner(request: ClientRequest, variant: 'original' | 'twin'): void {
    request.winner = variant;
    request.amount = variant === 'twin' ? request.twinAmount! : request.originalAmount;
  }

  // ---- Final checks ----

  private checkFinal(): void {
    const { topology } = this.options;
    const expected = new Array<number>(itemCount(topology) + 1).fill(topology.initialBalance);
    for (const request of this.requests) {
      if (request.outcome !== Outcome.COMMITTED) continue;
      expected[request.from]! -= request.amount;
      expected[request.to]! += request.amount;
    }
    let total = 0;
    for (let shard = 0; shard < topology.shards; shard += 1) {
      const group = this.replicas[shard]!.filter((replica) => this.active(replica));
      const reference = group[0]!.node.bank;
      for (const replica of group) {
        if (replica.node.bank.fingerprint() !== reference.fingerprint()) {
          this.fail(
            'invariant',
            `shard ${shard}: replica ${replica.ordinal} disagrees with replica ${group[0]!.ordinal}`,
          );
        }
      }
      const balances = reference.balancesCopy();
      for (let i = 0; i < balances.length; i += 1) {
        const item = reference.firstItem + i;
        total += balances[i]!;
        if (balances[i]! < 0) this.fail('invariant', `item ${item} is negative`);
        if (balances[i] !== expected[item]) {
          this.fail('invariant', `item ${item}: balance ${balances[i]} but committed transfers say ${expected[item]}`);
        }
      }
    }
    if (total !== initialClusterTotal(topology)) {
      this.fail('invariant', `total ${total} != initial ${initialClusterTotal(topology)}`);
    }
  }

  /**
   * The history against a linearizable bank. Every request now has its final fate (COMMITTED
   * exactly once, or not at all), and each committed transfer took effect at one instant
   * between its first attempt and the reply that told the client. So:
   * - a read returning v for item i over [sent, reply] needs v = initial + the transfers on i
   *   answered COMMITTED before it was sent + some subset of those committed and not answered
   *   by then, first sent before its reply;
   * - a final INSUFFICIENT_FUNDS for a debit of a from item i over [sent, reply] is provably
   *   wrong when even the lowest balance i could have had meanwhile covers it: initial +
   *   credits answered COMMITTED before it was sent - every committed debit of i sent before
   *   its reply.
   */
  private checkHistory(): void {
    const { topology } = this.options;
    const byItem = new Map<number, { delta: number; sentMs: number; answeredMs: number; request: ClientRequest }[]>();
    for (const request of this.requests) {
      if (request.outcome !== Outcome.COMMITTED) continue;
      for (const [item, delta] of [
        [request.from, -request.amount],
        [request.to, request.amount],
      ] as const) {
        let list = byItem.get(item);
        if (!list) byItem.set(item, (list = []));
        list.push({ delta, sentMs: request.firstSentMs, answeredMs: request.outcomeMs, request });
      }
    }
    for (const read of this.readHistory) {
      let base = topology.initialBalance;
      const open: number[] = [];
      for (const t of byItem.get(read.item) ?? []) {
        if (t.answeredMs < read.sentMs) base += t.delta;
        else if (t.sentMs < read.replyMs) open.push(t.delta);
      }
      if (!subsetSumReaches(open, read.value - base)) {
        this.fail(
          'safety',
          `read of item ${read.item} over [${read.sentMs.toFixed(1)}, ${read.replyMs.toFixed(1)}] ms returned ${read.value}: not reachable from ${base} (committed before it) with the concurrent transfers [${open.join(', ')}]`,
        );
      }
    }
    for (const request of this.requests) {
      if (request.outcome !== Outcome.INSUFFICIENT_FUNDS) continue;
      this.stats.insufficientChecked += 1;
      let lowest = topology.initialBalance;
      for (const t of byItem.get(request.from) ?? []) {
        const crossShardCredit = shardOfItem(topology, t.request.from) !== shardOfItem(topology, t.request.to);
        if (
          t.delta > 0 &&
          t.answeredMs < request.firstSentMs &&
          !(crossShardCredit && this.options.knownBugDecidedCreditsIgnored)
        )
          lowest += t.delta;
        else if (t.delta < 0 && t.sentMs < request.outcomeMs) lowest += t.delta;
      }
      if (lowest >= request.amount) {
        this.fail(
          'safety',
          `request ${request.clientId}#${request.requestId} (${request.from}->${request.to} ${request.amount}) got INSUFFICIENT_FUNDS over [${request.firstSentMs.toFixed(1)}, ${request.outcomeMs.toFixed(1)}] ms, but item ${request.from} held at least ${lowest} throughout`,
        );
      }
    }
  }
}

/**
 * The simulator's own account of which voters choose which slot, kept apart from the core's
 * (node/paxos/membership.ts ConfigurationHistory), so a mutation there cannot move the oracle
 * with it: a configuration chosen at slot c governs slots from c + 256 (docs/ARCHITECTURE.md).
 */
const CONFIGURATION_WINDOW_SLOTS_EXPECTED = 256;

class ChosenConfigurations {
  private readonly epochs: { fromSlot: number; configuration: Configuration }[];
  constructor(initial: Configuration) {
    this.epochs = [{ fromSlot: 1, configuration: initial }];
  }
  /** Void (a no-op) while an earlier change comes into force, or if not one step from the newest. */
  record(slot: number, configuration: Configuration): boolean {
    const last = this.epochs.at(-1)!;
    if (slot < last.fromSlot || successionProblem(last.configuration, configuration) !== undefined) return false;
    this.epochs.push({ fromSlot: slot + CONFIGURATION_WINDOW_SLOTS_EXPECTED, configuration });
    return true;
  }
  inForceAt(slot: number): Configuration {
    let found = this.epochs[0]!.configuration;
    for (const epoch of this.epochs) if (epoch.fromSlot <= slot) found = epoch.configuration;
    return found;
  }
  get latest(): Configuration {
    return this.epochs.at(-1)!.configuration;
  }
  /** Every configuration that governs some slot from `slot` on. */
  from(slot: number): Configuration[] {
    const result = [this.inForceAt(slot)];
    for (const epoch of this.epochs) if (epoch.fromSlot > slot) result.push(epoch.configuration);
    return result;
  }
}

function majorityOfConfiguration(configuration: Configuration): number {
  return Math.floor(configuration.voters.length / 2) + 1;
}

function describeConfiguration(configuration: Configuration): string {
  return `voters ${configuration.voters.join(',')} learners ${configuration.learners.join(',') || '-'}`;
}

function describeChange(change: ConfigurationChange): string {
  return change.type === 'add-learner' ? 'add a learner' : `${change.type} ${change.member}`;
}

/** Whether some subset of `values` sums to `target` (values are small: a set of reachable sums). */
function subsetSumReaches(values: number[], target: number): boolean {
  let sums = new Set<number>([0]);
  for (const value of values) {
    const next = new Set(sums);
    for (const sum of sums) next.add(sum + value);
    sums = next;
    if (sums.size > 100_000) return true; // too many to tell: never a false alarm
  }
  return sums.has(target);
}

function describeTx(message: TxMessage): string {
  const body = message.body;
  if (!body) return '?';
  switch (body.$case) {
    case 'prepare':
      return `PREPARE ${txName(txIdOf(body.prepare.txid))} ${body.prepare.from}->${body.prepare.to} ${body.prepare.amount}`;
    case 'vote':
      return `VOTE ${txName(txIdOf(body.vote.txid))} ${body.vote.yes ? 'yes' : 'no'}`;
    case 'inquiry':
      return `INQUIRY ${txName(txIdOf(body.inquiry.txid))}`;
    case 'decision':
      return `DECISION ${txName(txIdOf(body.decision.txid))} ${body.decision.commit ? 'commit' : 'abort'}`;
    case 'ack':
      return `ACK ${txName(txIdOf(body.ack.txid))}`;
    default:
      return '?';
  }
}

export function digestOf(value: Buffer): string {
  return createHash('sha1').update(value).digest('base64');
}
