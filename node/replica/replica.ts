// The driver around one ShardNode: it carries out each ShardReady through the shared Ready
// loop (node/shard/ready-driver.ts, which owns the ordering rules) with real ports (the peer
// transport, the 2PC router, the DurableLog, client calls), ticks the node on a timer, and
// feeds it frames from peers.
import { mkdir, readFile, writeFile, rename, rm } from 'node:fs/promises';
import { unlinkSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { Logger } from 'pino';
import { assert } from '../util/assert.js';
import type { PeerFrame } from '../gen/shardbank/v1/peer.js';
import { openDurableLog } from '../storage/durable-log.js';
import type { DurableLog, RecoveredState } from '../storage/durable-log-interface.js';
import {
  decideVotingState as decideVotingStateOnDisk,
  removeNotVotingMarker,
  type FirstStartMemory,
  type VotingDecision,
} from '../storage/not-voting-marker.js';
import type { PersistWork } from '../paxos/paxos-core.js';
import { ReadyDriver, type PersistStart } from '../shard/ready-driver.js';
import {
  ShardNode,
  DEFAULT_TIMING,
  type ClientReply,
  type ShardReady,
  type TransferInput,
} from '../shard/shard-node.js';
import { PeerTransport } from '../transport/peer-transport.js';
import type { PeerTls } from '../security/peer-tls.js';
import type { ReplicaConfig } from './replica-config.js';
import { TxRouter } from './tx-router.js';
import { ReplicaMetrics } from './replica-metrics.js';
import type { JoinDecision } from './membership-join.js';
import { NextTurn } from '../util/next-turn.js';
import { isProcessAlive } from '../util/process-alive.js';
import { TRACING, traceStamp, paxosTraceName } from '../util/stage-trace.js';

export type ReplyHandler = (reply: ClientReply) => void;

const LOG_SEGMENT_BYTES = 16 * 1024 * 1024;

/** A leader with at most this many client requests waiting does its durable write on its own thread. */
const LEADER_WRITE_ON_THREAD_CALLS_MAX = 1;

/** Limits on client work held in memory while waiting for consensus. */
const PENDING_CALLS_MAX = 200_000;

export class Replica {
  readonly node: ShardNode;
  readonly transport: PeerTransport;
  readonly router: TxRouter;
  private readonly calls = new Map<number, ReplyHandler>();
  private nextToken = 1;
  private readonly driver: ReadyDriver<ShardReady>;
  private readonly processNextTurn = new NextTurn(() => this.process());
  private pacingTimer: NodeJS.Timeout | undefined;
  private persistChain: Promise<void> = Promise.resolve();
  private ticker: NodeJS.Timeout | undefined;
  private stopped = false;
  private failed: Error | undefined;
  private leaderListeners: ((leading: boolean) => void)[] = [];
  private readonly itemsPerShard: number;
  /** Stage-trace names: `s<shard>L` on the leader, `s<shard>F` on a follower. */
  private readonly traceWho = () => `s${this.config.shard}${this.node.core.role === 'leader' ? 'L' : 'F'}`;

  private constructor(
    readonly config: ReplicaConfig,
    readonly incarnation: string,
    private readonly log: DurableLog,
    node: ShardNode,
    readonly logger: Logger,
    readonly metrics: ReplicaMetrics,
    peerTls: PeerTls | undefined,
  ) {
    this.node = node;
    this.itemsPerShard = config.topology.itemsPerShard;
    this.transport = new PeerTransport(
      config.cluster,
      { shard: config.shard, ordinal: config.ordinal },
      config.peers,
      logger,
      config.peerSocketDir,
      peerTls,
    );
    if (TRACING) this.transport.traceWho = this.traceWho;
    this.transport.memberAddress = (member) => this.resolveMemberAddress(member);
    this.router = new TxRouter(config, this.transport);
    this.driver = this.makeDriver();
    metrics.attach({
      node,
      storage: () => log.stats(),
      framesSent: () => this.transport.framesSent,
      shardTotal: () => node.bank.shardTotal(),
    });
  }

  /**
   * Opens the data dir. One without topology.json is new: `join` says which member of the
   * shard this replica is (node/replica/membership-join.ts; without it, the member on its slot);
   * undefined from `join` (shutdown while waiting to be added) opens nothing.
   */
  static async open(
    config: ReplicaConfig,
    logger: Logger,
    peerTls?: PeerTls,
    join?: () => Promise<JoinDecision | undefined>,
  ): Promise<Replica | undefined> {
    await mkdir(config.dataDir, { recursive: true });
    await lockDataDir(config.dataDir);
    let member = await checkTopology(config);
    if (member === undefined) {
      const decision = join ? await join() : { kind: 'founding' as const, member: config.ordinal };
      if (decision === undefined) return undefined;
      logger.info({ decision }, 'new data dir: member of the shard decided');
      if (decision.kind === 'learner') {
        // A new member id: an acceptor that never voted (ids are never reused), so it votes
        // from its first message; made durable before topology.json names the member, so a
        // crash in between asks the shard again.
        await removeNotVotingMarker(config.dataDir, { countedEmpty: new Map() });
      }
      await writeTopology(config, decision.member);
      member = decision.member;
    }
    const incarnation = await loadIncarnation(config);
    const metrics = new ReplicaMetrics({ cluster: config.cluster, shard: config.shard, replica: config.ordinal });
    // 16 MiB segments: the oldest is deleted as soon as a snapshot covers it, so a replica's
    // log stays within a few segments whatever the load. Preallocated (zero-filled, the next
    // one in the background): a durable write then overwrites allocated blocks instead of
    // growing the file: 1-7% more transfers/s at 64 clients (docs/PERFORMANCE.md, item 14).
    const { log, recovered } = await openDurableLog(path.join(config.dataDir, 'log'), {
      noSync: config.unsafeNoFsync,
      segmentBytesMax: LOG_SEGMENT_BYTES,
      preallocateSegments: config.preallocateSegments,
      onSync: metrics.onSync,
    });
    // A torn tail is an O_DSYNC write that never returned, so nothing in it was acknowledged:
    // the replica votes as before. (Abstaining after every crash would leave a shard that lost
    // power on every replica at once without a majority to re-learn from.)
    for (const cut of recovered.truncated) logger.warn(cut, 'discarded a torn, never-acknowledged tail of the log');
    logger.info(
      { cleanShutdown: recovered.cleanShutdown },
      recovered.cleanShutdown
        ? 'the log was closed cleanly'
        : 'the log was not closed cleanly (a crash): recovered up to its last complete write',
    );
    const { votingState, firstStart } = await decideVotingState(config, recovered, logger);
    const node = new ShardNode(
      {
        topology: config.topology,
        shard: config.shard,
        ordinal: config.ordinal,
        member,
        foundingReplicas: config.foundingReplicas,
        paxos: {
          // Long enough that a replica starved of CPU for a moment (9 replicas on 2 cores) does
          // not cause an election; short enough to fail over well within 3 s.
          electionTimeoutTicksMin: Math.round(800 / config.tickMs),
          electionTimeoutTicksMax: Math.round(1600 / config.tickMs),
          heartbeatTicks: Math.max(1, Math.round(100 / config.tickMs)),
          // Peer connections are reliable except across reconnects, so resends are rare and slow.
          retransmitTicks: Math.max(2, Math.round(500 / config.tickMs)),
          inflightSlotsMax: config.inflightSlotsMax,
          entriesPerMessageMax: 256,
          thriftyAccepts: config.thriftyAccepts,
          votingState,
          firstStart,
        },
        timing: {
          ...DEFAULT_TIMING,
          txScanTicks: Math.max(1, Math.round(50 / config.tickMs)),
          txResendTicks: Math.max(2, Math.round(200 / config.tickMs)),
          txInquiryTicks: Math.round(1000 / config.tickMs),
          readWaitTicksMax: Math.round(2000 / config.tickMs),
          conflictBackoffTicksMax: 4,
        },
        commandsPerSlotMax: 4096,
        snapshotEverySlots: config.snapshotEverySlots,
        ...(config.pacingHoldMs > 0
          ? { pacing: { minWaiters: config.pacingMinWaiters, targetCommands: config.pacingTargetCommands } }
          : {}),
        random: Math.random,
        txPhases: metrics,
      },
      { hardState: recovered.hardState, snapshot: recovered.snapshot, entries: recovered.entries },
    );
    logger.info(
      {
        promised: recovered.hardState?.promised,
        snapshotIndex: recovered.snapshot?.index ?? 0,
        entries: recovered.entries.length,
      },
      'recovered acceptor state',
    );
    return new Replica(config, incarnation, log, node, logger, metrics, peerTls);
  }

  /** This replica's member id in its shard's configuration. */
  get member(): number {
    return this.node.core.ordinal;
  }

  /**
   * The peer address of a member of this shard: the newest configuration that records one,
   * else the static peer table for a founding id (docs/ARCHITECTURE.md, "Membership").
   */
  private resolveMemberAddress(member: number): string | undefined {
    if (member === this.member) return this.config.peers[this.config.shard]![this.config.ordinal];
    for (const configuration of this.node.core.knownConfigurations()) {
      const address = configuration.addresses?.[member];
      if (address !== undefined) return address;
    }
    return member < this.config.foundingReplicas ? this.config.peers[this.config.shard]?.[member] : undefined;
  }

  /** The address of a member of this shard, or undefined (not known yet). */
  addressOfMember(member: number): string | undefined {
    return member < 0 ? undefined : this.transport.addressOfMember(member);
  }

  start(): void {
    this.ticker = setInterval(() => {
      this.node.tick();
      this.scheduleProcess();
    }, this.config.tickMs);
    this.scheduleProcess();
  }

  /** Runs the Ready loop soon (after the core was changed from outside, e.g. a membership change). */
  poke(): void {
    this.scheduleProcess();
  }

  onLeadership(listener: (leading: boolean) => void): void {
    this.leaderListeners.push(listener);
  }

  get healthy(): boolean {
    return this.failed === undefined && !this.stopped;
  }

  // ---- Client calls ----

  submitTransfer(input: TransferInput, handler: ReplyHandler): void {
    const token = this.register(handler);
    if (token === undefined) return;
    // Cross-shard: the destination item is another shard's (the input is validated already).
    this.metrics.transferArrived(token, Math.floor((input.to - 1) / this.itemsPerShard) !== this.config.shard);
    this.node.submitTransfer(input, token);
    this.scheduleProcess();
  }

  submitOpenSession(clientId: string, handler: ReplyHandler): void {
    const token = this.register(handler);
    if (token === undefined) return;
    this.node.submitOpenSession(clientId, token);
    this.scheduleProcess();
  }

  submitRead(items: number[], handler: ReplyHandler): void {
    const token = this.register(handler);
    if (token === undefined) return;
    this.node.submitRead(items, token);
    this.scheduleProcess();
  }

  private register(handler: ReplyHandler): number | undefined {
    if (this.calls.size >= PENDING_CALLS_MAX || this.failed) {
      handler({
        token: 0,
        kind: 'error',
        code: 'unavailable',
        message: 'replica overloaded; retry',
        leaderOrdinal: this.node.core.leaderOrdinal,
      });
      return undefined;
    }
    const token = this.nextToken++;
    this.calls.set(token, handler);
    return token;
  }

  // ---- Peer frames ----

  onFrame(frame: PeerFrame): void {
    if (TRACING) for (const message of frame.paxos) traceStamp(`${this.traceWho()}.recv-${paxosTraceName(message)}`);
    if (TRACING) for (const message of frame.tx) traceStamp(`${this.traceWho()}.recv-${message.body?.$case}`);
    if (frame.senderShard === this.config.shard)
      for (const message of frame.paxos) this.transport.noteMemberSlot(message.from, frame.senderOrdinal);
    for (const message of frame.paxos) this.node.stepPaxos(message);
    if (frame.tx.length > 0) {
      // Only a leader sends 2PC messages, so each names its shard's leader (as of sending).
      for (const message of frame.tx) {
        if (message.fromShard !== this.config.shard) this.router.learnLeader(message.fromShard, message.fromOrdinal);
      }
      const leader = this.node.core.leaderOrdinal;
      if (!this.node.isReadyLeader && !frame.forwarded && leader >= 0 && leader !== this.member) {
        // Only the leader acts on 2PC messages; a follower passes them on, once.
        for (const message of frame.tx) this.transport.sendTxToMember(leader, message, true);
      } else {
        for (const message of frame.tx) this.node.stepTx(message);
      }
    }
    this.scheduleProcess();
  }

  // ---- The Ready loop ----

  /** Pacing: a held batch goes after pacingHoldMs at the latest (see PacingConfig). */
  private armPacingRelease(): void {
    if (this.pacingTimer) return;
    this.pacingTimer = setTimeout(() => {
      this.pacingTimer = undefined;
      this.node.releaseHeldProposals();
      this.scheduleProcess();
    }, this.config.pacingHoldMs);
  }

  private scheduleProcess(): void {
    if (!this.stopped) this.processNextTurn.request();
  }

  private process(): void {
    if (this.stopped || this.failed) return;
    // The metrics' turn clock: replies and proposals of this pass share one fresh timestamp.
    this.metrics.endTurn();
    this.passes();
    this.metrics.endTurn();
    // The frames this run produced leave now, not one more turn of the event loop later.
    this.transport.flushNow();
  }

  private passes(): void {
    for (let round = 0; round < 4; round += 1) {
      const wasLeader = this.node.isReadyLeader;
      const did = this.driver.pass();
      this.metrics.afterPass(this.node);
      const busy = did || this.node.hasQueuedWork();
      if (this.node.proposalsHeld) this.armPacingRelease();
      if (wasLeader !== this.node.isReadyLeader)
        for (const listener of this.leaderListeners) listener(this.node.isReadyLeader);
      if (this.failed) return;
      if (!busy) return;
    }
    this.scheduleProcess();
  }

  /** The ports of the shared Ready loop (node/shard/ready-driver.ts): real network and DurableLog. */
  private makeDriver(): ReadyDriver<ShardReady> {
    const { shard } = this.config;
    return new ReadyDriver<ShardReady>(TRACING ? this.tracedNode() : this.node, {
      storage: { persist: (work, durable, quiet) => this.persist(work, durable, quiet) },
      send: (message) => this.transport.sendPaxos(shard, message.to, message),
      sendTx: (message) => this.router.send(message),
      reply: (reply) => this.reply(reply),
      event: (event) => {
        if (event.type === 'leader-changed') this.metrics.leaderChanges += 1;
        else if (event.type === 'became-leader') {
          this.metrics.electionsWon += 1;
          this.logger.info({ ballot: event.ballot }, 'became leader');
        } else if (event.type === 'stepped-down') this.logger.info({ ballot: event.ballot }, 'stepped down');
        else if (event.type === 'voting-ready') this.startVoting(event.reason, event.firstStart);
      },
      progress: () => this.scheduleProcess(),
    });
  }

  /** The node as the driver sees it, stamping each pass that applied slots (stage trace only). */
  private tracedNode(): { ready(): ShardReady; persisted(id: number): void } {
    const { node } = this;
    return {
      ready: () => {
        const before = node.bank.appliedIndex;
        const ready = node.ready();
        if (node.bank.appliedIndex !== before) traceStamp(`${this.traceWho()}.applied`);
        return ready;
      },
      persisted: (id) => node.persisted(id),
    };
  }

  private persist(work: PersistWork, durable: () => void, quiet: boolean): PersistStart {
    if (TRACING && work.entries.length > 0) {
      const who = this.traceWho();
      traceStamp(`${who}.persist-start`);
      const done = durable;
      durable = () => {
        traceStamp(`${who}.persist-durable`);
        done();
      };
      const started = this.persistNow(work, durable, quiet);
      if (started === 'durable') traceStamp(`${who}.persist-durable`);
      return started;
    }
    return this.persistNow(work, durable, quiet);
  }

  private persistNow(work: PersistWork, durable: () => void, quiet: boolean): PersistStart {
    try {
      this.log.append(work.hardState, work.entries);
    } catch (error) {
      this.fail(error);
      return 'failed';
    }
    // A follower with nothing else in flight writes on this thread (see DurableLog.syncNow), and
    // so does a leader serving a lone client: the thread pool's two hand-offs cost such a
    // leader's write about twice a follower's (docs/PERFORMANCE.md, item 22). Under load the
    // leader keeps the pool: it must go on reading requests and Accepted replies meanwhile.
    const leader = this.node.core.role === 'leader';
    if (quiet && !work.snapshot && (!leader || this.calls.size <= LEADER_WRITE_ON_THREAD_CALLS_MAX)) {
      // The Accept this Ready queued must be on its way before this thread blocks in the write.
      if (leader) this.transport.flushNow();
      try {
        if (this.log.syncNow()) {
          this.metrics.persistBatches += 1;
          return 'durable';
        }
      } catch (error) {
        this.fail(error);
        return 'failed';
      }
    }
    const synced = this.log.sync();
    const snapshotSaved = work.snapshot ? this.log.saveSnapshot(work.snapshot) : Promise.resolve();
    // Seen by the chain below; until it gets there (an earlier persist still running) a failure
    // must not count as an unhandled rejection, which would crash the process past fail().
    synced.catch(() => undefined);
    snapshotSaved.catch(() => undefined);
    this.persistChain = this.persistChain
      .then(() => Promise.all([synced, snapshotSaved]))
      .then(() => {
        this.metrics.persistBatches += 1;
        durable();
      })
      .catch((error: unknown) => this.fail(error));
    return 'pending';
  }

  /** The core may vote: make that durable (the voter record written, the marker removed) first, then let it. */
  private startVoting(reason: 'first-start' | 'rebuilt', firstStart: FirstStartMemory): void {
    this.persistChain = this.persistChain
      .then(async () => {
        await removeNotVotingMarker(this.config.dataDir, firstStart);
        if (this.stopped) return;
        this.logger.info(
          { reason },
          reason === 'first-start'
            ? 'first start of the shard: voting'
            : 'rebuilt from the live majority: voting again',
        );
        this.node.core.startVoting();
        this.scheduleProcess();
      })
      .catch((error: unknown) => this.fail(error));
  }

  private reply(reply: ClientReply): void {
    const handler = this.calls.get(reply.token);
    if (!handler) return;
    this.calls.delete(reply.token);
    if (TRACING) traceStamp(`${this.traceWho()}.reply`);
    this.metrics.replied(reply);
    handler(reply);
  }

  /** A storage failure is fail-stop: a replica that cannot persist must not answer. */
  private fail(error: unknown): void {
    if (this.failed) return;
    this.failed = error instanceof Error ? error : new Error(String(error));
    this.driver.halt();
    this.logger.fatal({ err: this.failed }, 'storage failed: stopping this replica');
    this.stop().finally(() => process.exit(70));
  }

  // ---- Shutdown ----

  /** Graceful: hand leadership to the most caught-up follower, then flush and close. */
  async handOver(timeoutMs: number): Promise<void> {
    const target = this.node.transferLeadership();
    this.scheduleProcess();
    if (target < 0) return;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && this.node.core.role === 'leader') {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.ticker) clearInterval(this.ticker);
    if (this.pacingTimer) clearTimeout(this.pacingTimer);
    for (const [token, handler] of this.calls) {
      handler({
        token,
        kind: 'error',
        code: 'unavailable',
        message: 'replica shutting down; the outcome is unknown: retry with the same request id',
        leaderOrdinal: -1,
      });
    }
    this.calls.clear();
    await this.persistChain.catch(() => undefined);
    this.transport.close();
    await this.log.close().catch(() => undefined);
  }

  stats() {
    return this.log.stats();
  }
}

async function decideVotingState(
  config: ReplicaConfig,
  recovered: RecoveredState,
  logger: Logger,
): Promise<VotingDecision> {
  // The founding size: the core's own rule (a founding single replica has nobody to ask).
  const decision = await decideVotingStateOnDisk(config.dataDir, recovered, config.foundingReplicas);
  if (decision.votingState !== 'voter')
    logger.warn(
      { emptyLog: decision.emptyLog },
      'not voting until the peers show this is the first start or the lost state is re-learned (protocol-aware recovery)',
    );
  return decision;
}

/** Two replica processes on one data dir would corrupt it: the second one refuses to start. */
async function lockDataDir(dataDir: string): Promise<void> {
  const file = path.join(dataDir, 'LOCK');
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      await writeFile(file, String(process.pid), { flag: 'wx' });
      process.once('exit', () => {
        try {
          unlinkSync(file);
        } catch {
          // already gone
        }
      });
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = Number((await readFile(file, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && isProcessAlive(holder)) {
        throw new Error(`data dir ${dataDir} is in use by process ${holder}; refusing to start a second replica on it`);
      }
      await rm(file, { force: true }); // left by a process that died (SIGKILL): take it over
    }
  }
  throw new Error(`could not lock data dir ${dataDir}`);
}

/** What topology.json records: the data dir's cluster, place and the founding size, and its member id. */
interface TopologyRecord {
  cluster: string;
  shard: number;
  ordinal: number;
  shards: number;
  replicasPerShard: number;
  itemsPerShard: number;
  initialBalance: number;
  /** Absent in files written before membership changes: the founding size was replicasPerShard. */
  foundingReplicas?: number;
  /** Absent in files written before membership changes: the member id is the slot (`ordinal`). */
  member?: number;
}

function topologyRecord(config: ReplicaConfig, member: number): TopologyRecord {
  return {
    cluster: config.cluster,
    shard: config.shard,
    ordinal: config.ordinal,
    ...config.topology,
    foundingReplicas: config.foundingReplicas,
    member,
  };
}

async function writeTopology(config: ReplicaConfig, member: number): Promise<void> {
  const file = path.join(config.dataDir, 'topology.json');
  await writeFile(`${file}.tmp`, JSON.stringify(topologyRecord(config, member)));
  await rename(`${file}.tmp`, file);
}

/**
 * The member id topology.json records, or undefined for a new data dir. Refuses a data dir of
 * another cluster, shard, slot, item range or founding size; a changed replicasPerShard is the
 * log's business (membership changes), and is recorded.
 */
export async function checkTopology(config: ReplicaConfig): Promise<number | undefined> {
  const file = path.join(config.dataDir, 'topology.json');
  let existing: string | undefined;
  try {
    existing = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  const previous = JSON.parse(existing) as Partial<TopologyRecord>;
  const recordedFounding = previous.foundingReplicas ?? previous.replicasPerShard;
  const member = previous.member ?? previous.ordinal ?? config.ordinal;
  const wanted = topologyRecord(config, member);
  const compared: (keyof TopologyRecord)[] = [
    'cluster',
    'shard',
    'ordinal',
    'shards',
    'itemsPerShard',
    'initialBalance',
  ];
  for (const key of compared) {
    if (previous[key] !== wanted[key]) {
      throw new Error(
        `data dir ${config.dataDir} belongs to a different topology: ${key} was ${JSON.stringify(previous[key])}, now ${JSON.stringify(wanted[key])}; refusing to start`,
      );
    }
  }
  if (recordedFounding !== config.foundingReplicas) {
    throw new Error(
      `data dir ${config.dataDir} belongs to a shard founded with ${recordedFounding} replicas, --founding-replicas is ${config.foundingReplicas}; refusing to start (the founding size never changes: pass --founding-replicas ${recordedFounding})`,
    );
  }
  if (previous.replicasPerShard !== wanted.replicasPerShard || previous.member === undefined)
    await writeTopology(config, member);
  return member;
}

async function loadIncarnation(config: ReplicaConfig): Promise<string> {
  const file = path.join(config.dataDir, 'incarnation');
  if (config.incarnation) {
    await writeFile(file, config.incarnation);
    return config.incarnation;
  }
  try {
    const value = (await readFile(file, 'utf8')).trim();
    assert(value.length > 0, 'empty incarnation file');
    return value;
  } catch {
    const value = randomUUID();
    await writeFile(file, value);
    return value;
  }
}
