// Deterministic simulation of whole shardbank clusters in one process (after TigerBeetle's
// VOPR and FoundationDB's simulator). One seed drives every choice: message loss,
// duplication, reordering and delay; partitions; crashes that lose unsynced writes; restarts.
// The real ShardNode runs unchanged; only the network, disk and clock are simulated.
//
// A run has a safety phase (faults on) and a liveness phase (faults healed, every replica
// up), after which every request must have a definite outcome and every transaction must be
// finished. Checked throughout: a chosen slot never changes (no two replicas apply different
// values at one index), no negative balance and shard totals conserved (asserted inside
// BankState); checked at the end: total money conserved, every COMMITTED transfer applied
// exactly once (balances equal the initial ones plus the committed transfers), and the
// replicas of each shard agree.
import { createHash } from 'node:crypto';
import type { Topology } from '../../node/cluster/topology.js';
import { initialClusterTotal, itemCount, shardOfItem } from '../../node/cluster/topology.js';
import { Outcome } from '../../node/gen/shardbank/v1/bank.js';
import type { PaxosMessage, TxMessage } from '../../node/gen/shardbank/v1/peer.js';
import { PaxosMessage as PaxosCodec, TxMessage as TxCodec } from '../../node/gen/shardbank/v1/peer.js';
import type { LogEntry, RecoveredAcceptorState, Snapshot, HardState } from '../../node/paxos/paxos-core.js';
import { ShardNode, DEFAULT_TIMING, type ClientReply, type PacingConfig, type ShardReady } from '../../node/shard/shard-node.js';
import { Prng } from './prng.js';

export interface SimOptions {
  seed: number;
  topology: Topology;
  clients: number;
  requestsPerClient: number;
  safetyMs: number;
  livenessMsMax: number;
  dropProbability: number;
  duplicateProbability: number;
  crashProbabilityPerTick: number;
  partitionProbabilityPerTick: number;
  crossShardRatio: number;
  hotItems: number;
  /** Leader pacing; a held batch is released by the next tick (the simulator has no sub-tick timer). */
  pacing?: PacingConfig;
  /** Every new slot to every follower at once (production sends thrifty Accepts: see PaxosConfig). */
  eagerAccepts?: boolean;
}

export const TICK_MS = 25;

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
  id: number;
  ready: ShardReady;
  doneAtMs: number;
}

class SimReplica {
  node: ShardNode;
  up = true;
  disk: SimDisk = { hardState: undefined, entries: new Map(), snapshot: undefined };
  unsynced: PendingSync[] = [];
  restartAtMs = 0;

  constructor(
    readonly shard: number,
    readonly ordinal: number,
    private readonly makeNode: (recovered: RecoveredAcceptorState | undefined) => ShardNode,
  ) {
    this.node = makeNode(undefined);
  }

  /** quickFollowerChanges of the nodes this replica ran before its last restart. */
  quickFollowerChangesBefore = 0;

  crash(): void {
    this.quickFollowerChangesBefore += this.node.core.quickFollowerChanges;
    this.up = false;
    this.unsynced = [];
  }

  restart(): void {
    const entries = [...this.disk.entries.values()].sort((a, b) => a.slot - b.slot);
    this.node = this.makeNode({ hardState: this.disk.hardState, snapshot: this.disk.snapshot, entries });
    this.up = true;
  }
}

interface Envelope {
  atMs: number;
  seq: number;
  kind: 'paxos' | 'tx';
  toShard: number;
  toOrdinal: number;
  bytes: Uint8Array;
}

interface ClientRequest {
  clientId: string;
  requestId: number;
  from: number;
  to: number;
  amount: number;
  outcome: number | undefined;
  attempts: number;
  inflightToken: number | undefined;
  nextTryMs: number;
  /** Fixed at the first send. */
  sessionEpoch?: number;
}

export interface SimResult {
  seed: number;
  committed: number;
  insufficient: number;
  aborted: number;
  crashes: number;
  elections: number;
  simulatedMs: number;
  slotsApplied: number;
  readsChecked: number;
  /** Ready passes that ended with pacing holding a leader's queue. */
  holds: number;
  /** Times a leader replaced a silent quick follower (thrifty Accepts' fallback). */
  quickFollowerChanges: number;
}

export class SimCluster {
  private readonly rng: Prng;
  private readonly netRng: Prng;
  private readonly replicas: SimReplica[][] = [];
  private nowMs = 0;
  private seq = 0;
  private queue: Envelope[] = [];
  private partitioned = new Set<string>();
  private readonly chosen: Map<number, string>[] = [];
  private readonly requests: ClientRequest[] = [];
  private readonly tokens = new Map<number, ClientRequest>();
  /** Linearizable reads in flight: the item, and the balance it must show. */
  private readonly reads = new Map<number, { item: number; expected: number; overlapped: boolean }>();
  private readsChecked = 0;
  private nextToken = 1;
  /** Clients' session epochs by `shard/client`, and the OpenSession requests in flight by token. */
  private readonly sessionEpochs = new Map<string, number>();
  private readonly opening = new Map<string, { token: number; sinceMs: number }>();
  private readonly openTokens = new Map<number, string>();
  private faultsOn = true;
  private crashes = 0;
  private elections = 0;
  private holds = 0;

  constructor(readonly options: SimOptions) {
    this.rng = new Prng(options.seed);
    this.netRng = this.rng.fork();
    const { topology } = options;
    for (let shard = 0; shard < topology.shards; shard += 1) {
      this.chosen.push(new Map());
      const group: SimReplica[] = [];
      for (let ordinal = 0; ordinal < topology.replicasPerShard; ordinal += 1) {
        const nodeRng = this.rng.fork();
        const makeNode = (recovered: RecoveredAcceptorState | undefined) =>
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
                inflightSlotsMax: 8,
                entriesPerMessageMax: 64,
                thriftyAccepts: !options.eagerAccepts,
              },
              timing: { ...DEFAULT_TIMING, txAbortTicks: 60, txInquiryTicks: 12 },
              commandsPerSlotMax: 16,
              snapshotEverySlots: 40,
              ...(options.pacing ? { pacing: options.pacing } : {}),
              random: () => nodeRng.next(),
              onApply: (slot, value) => this.checkChosen(shard, ordinal, slot, value),
            },
            recovered,
          );
        group.push(new SimReplica(shard, ordinal, makeNode));
      }
      this.replicas.push(group);
    }
    this.makeWorkload();
  }

  private makeWorkload(): void {
    const { topology, clients, requestsPerClient, crossShardRatio, hotItems } = this.options;
    const items = itemCount(topology);
    for (let c = 0; c < clients; c += 1) {
      for (let r = 1; r <= requestsPerClient; r += 1) {
        const pickItem = () => (hotItems > 0 ? this.rng.int(1, Math.min(items, hotItems) + 1) : this.rng.int(1, items + 1));
        let from = pickItem();
        let to = pickItem();
        const wantCross = topology.shards > 1 && this.rng.chance(crossShardRatio);
        for (let guard = 0; guard < 50 && (to === from || (wantCross !== (shardOfItem(topology, from) !== shardOfItem(topology, to)))); guard += 1) {
          from = this.rng.int(1, items + 1);
          to = this.rng.int(1, items + 1);
        }
        if (to === from) to = (from % items) + 1;
        this.requests.push({
          clientId: `c${c}`,
          requestId: r,
          from,
          to,
          amount: this.rng.int(1, Math.max(2, topology.initialBalance)),
          outcome: undefined,
          attempts: 0,
          inflightToken: undefined,
          nextTryMs: this.rng.int(0, 200),
        });
      }
    }
  }

  run(): SimResult {
    const { safetyMs, livenessMsMax } = this.options;
    let nextTickMs = 0;
    const endSafety = safetyMs;
    while (true) {
      if (this.nowMs >= endSafety && this.faultsOn) this.heal();
      if (!this.faultsOn && this.done()) break;
      if (this.nowMs > endSafety + livenessMsMax) {
        throw new SimFailure('liveness', `not converged after ${livenessMsMax} ms of healed operation: ${this.describeStuck()}`, this.options.seed);
      }
      const nextMsg = this.queue.length > 0 ? this.queue[0]!.atMs : Number.POSITIVE_INFINITY;
      if (nextMsg < nextTickMs) {
        const envelope = this.queue.shift()!;
        this.nowMs = Math.max(this.nowMs, envelope.atMs);
        this.deliver(envelope);
      } else {
        this.nowMs = nextTickMs;
        nextTickMs += TICK_MS;
        this.tickAll();
      }
    }
    this.checkFinal();
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
    for (const group of this.replicas) for (const replica of group) quickFollowerChanges += replica.quickFollowerChangesBefore + replica.node.core.quickFollowerChanges;
    return { seed: this.options.seed, committed, insufficient, aborted, crashes: this.crashes, elections: this.elections, simulatedMs: this.nowMs, slotsApplied, readsChecked: this.readsChecked, holds: this.holds, quickFollowerChanges };
  }

  private heal(): void {
    this.faultsOn = false;
    this.partitioned.clear();
    for (const group of this.replicas) for (const replica of group) if (!replica.up) replica.restart();
  }

  private done(): boolean {
    if (this.requests.some((r) => r.outcome === undefined)) return false;
    for (const group of this.replicas) {
      for (const replica of group) {
        if (!replica.up) return false;
        if (replica.node.bank.inflightCount() > 0) return false;
      }
      // Converged means: a ready leader, every replica applied what it committed, and nothing
      // that any replica ever applied is missing (a whole shard restarting forgets its commit index).
      const leader = group.find((r) => r.node.isReadyLeader);
      if (!leader) return false;
      const applied = group.map((r) => r.node.bank.appliedIndex);
      if (new Set(applied).size !== 1) return false;
      let maxChosen = 0;
      for (const slot of this.chosen[group[0]!.shard]!.keys()) maxChosen = Math.max(maxChosen, slot);
      if (applied[0]! < maxChosen) return false;
    }
    return true;
  }

  private describeStuck(): string {
    const pending = this.requests.filter((r) => r.outcome === undefined).length;
    const shards = this.replicas.map((group, s) =>
      `s${s}[${group.map((r) => `${r.ordinal}:${r.up ? r.node.core.role[0] : 'x'}@${r.node.bank.appliedIndex}/tx${r.node.bank.inflightCount()}`).join(' ')}]`,
    );
    return `${pending} requests without outcome; ${shards.join(' ')}`;
  }

  // ---- Time ----

  private tickAll(): void {
    for (const group of this.replicas) {
      for (const replica of group) {
        if (!replica.up) {
          if (this.faultsOn && this.nowMs >= replica.restartAtMs) replica.restart();
          continue;
        }
        this.completeSyncs(replica);
        if (this.faultsOn && this.rng.chance(this.options.crashProbabilityPerTick)) {
          this.crashes += 1;
          replica.crash();
          replica.restartAtMs = this.nowMs + this.rng.int(50, 1500);
          continue;
        }
        replica.node.tick();
        this.process(replica);
      }
    }
    if (this.faultsOn && this.rng.chance(this.options.partitionProbabilityPerTick)) this.newPartition();
    this.driveClients();
  }

  private newPartition(): void {
    this.partitioned.clear();
    if (this.rng.chance(0.3)) return;
    const shard = this.rng.int(0, this.replicas.length);
    const ordinal = this.rng.int(0, this.options.topology.replicasPerShard);
    this.partitioned.add(`${shard}/${ordinal}`);
  }

  private completeSyncs(replica: SimReplica): void {
    while (replica.unsynced.length > 0 && replica.unsynced[0]!.doneAtMs <= this.nowMs) {
      const sync = replica.unsynced.shift()!;
      const persist = sync.ready.persist!;
      if (persist.hardState) replica.disk.hardState = persist.hardState;
      if (persist.snapshot) {
        replica.disk.snapshot = persist.snapshot;
        for (const slot of [...replica.disk.entries.keys()]) if (slot <= persist.snapshot.index) replica.disk.entries.delete(slot);
      }
      for (const entry of persist.entries) {
        if (replica.disk.snapshot && entry.slot <= replica.disk.snapshot.index) continue;
        replica.disk.entries.set(entry.slot, entry);
      }
      for (const message of sync.ready.messagesAfterPersist) this.sendPaxos(message);
      replica.node.persisted(persist.id);
      this.process(replica);
    }
  }

  // ---- The driver of one replica: carry out a Ready ----

  private process(replica: SimReplica): void {
    for (let round = 0; round < 8; round += 1) {
      const ready = replica.node.ready();
      for (const message of ready.messages) this.sendPaxos(message);
      for (const message of ready.txMessages) this.sendTx(message);
      for (const reply of ready.replies) this.onReply(reply);
      for (const event of ready.events) if (event.type === 'became-leader') this.elections += 1;
      if (replica.node.proposalsHeld) this.holds += 1;
      if (ready.persist) {
        const last = replica.unsynced[replica.unsynced.length - 1];
        const doneAtMs = Math.max(last?.doneAtMs ?? 0, this.nowMs + this.rng.int(1, 4));
        replica.unsynced.push({ id: ready.persist.id, ready, doneAtMs });
      } else {
        for (const message of ready.messagesAfterPersist) this.sendPaxos(message);
      }
      if (!ready.persist && ready.messages.length === 0 && ready.txMessages.length === 0 && ready.replies.length === 0) break;
    }
  }

  /** A chosen slot never changes: every replica must apply the same value at each index. */
  private checkChosen(shard: number, ordinal: number, slot: number, value: Buffer): void {
    const digest = digestOf(value);
    const chosen = this.chosen[shard]!;
    const previous = chosen.get(slot);
    if (previous === undefined) chosen.set(slot, digest);
    else if (previous !== digest) {
      throw new SimFailure('safety', `shard ${shard} slot ${slot}: replica ${ordinal} applied a different value`, this.options.seed);
    }
  }

  // ---- Network ----

  private enqueue(kind: 'paxos' | 'tx', toShard: number, toOrdinal: number, bytes: Uint8Array, fromKey: string): void {
    const toKey = `${toShard}/${toOrdinal}`;
    if (this.faultsOn) {
      if (this.partitioned.has(fromKey) !== this.partitioned.has(toKey)) return;
      if (this.netRng.chance(this.options.dropProbability)) return;
    }
    const copies = this.faultsOn && this.netRng.chance(this.options.duplicateProbability) ? 2 : 1;
    for (let i = 0; i < copies; i += 1) {
      const delay = this.faultsOn ? this.netRng.int(0, 6) + this.netRng.next() : 0.2 + this.netRng.next() * 0.5;
      const envelope: Envelope = { atMs: this.nowMs + delay, seq: this.seq++, kind, toShard, toOrdinal, bytes };
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
  }

  private sendPaxos(message: PaxosMessage): void {
    // Messages cross the network encoded, as in production: the codec is part of what is tested.
    this.enqueue('paxos', message.shard, message.to, PaxosCodec.encode(message).finish(), `${message.shard}/${message.from}`);
  }

  private sendTx(message: TxMessage): void {
    const bytes = TxCodec.encode(message).finish();
    const group = this.replicas[message.toShard];
    if (!group) return;
    for (const replica of group) this.enqueue('tx', message.toShard, replica.ordinal, bytes, `${message.fromShard}/leader`);
  }

  private deliver(envelope: Envelope): void {
    const replica = this.replicas[envelope.toShard]?.[envelope.toOrdinal];
    if (!replica || !replica.up) return;
    if (envelope.kind === 'paxos') replica.node.stepPaxos(PaxosCodec.decode(envelope.bytes));
    else replica.node.stepTx(TxCodec.decode(envelope.bytes));
    this.process(replica);
  }

  // ---- Clients ----

  /**
   * Linearizable reads of quiescent items: every transfer that touches the item has a
   * definite outcome and none is in flight, so the read must show exactly the initial balance
   * plus the committed transfers, even when a participant has not applied a decision yet (the
   * read waits for pending credits) and across leader changes (read-index, never stale).
   */
  private driveReads(): void {
    if (!this.rng.chance(0.3)) return;
    const { topology } = this.options;
    const item = this.rng.int(1, itemCount(topology) + 1);
    let expected = topology.initialBalance;
    for (const request of this.requests) {
      if (request.from !== item && request.to !== item) continue;
      if (request.outcome === undefined || request.inflightToken !== undefined || request.attempts === 0) {
        if (request.attempts > 0 || request.inflightToken !== undefined) return; // touched and not settled
        continue; // never sent: cannot have run
      }
      if (request.outcome === Outcome.COMMITTED) expected += request.from === item ? -request.amount : request.amount;
    }
    const shard = shardOfItem(topology, item);
    const candidates = this.replicas[shard]!.filter((r) => r.up);
    if (candidates.length === 0) return;
    const replica = this.rng.pick(candidates);
    const token = this.nextToken++;
    this.reads.set(token, { item, expected, overlapped: false });
    replica.node.submitRead([item], token);
    this.process(replica);
  }

  private driveClients(): void {
    this.driveReads();
    const inflightPerClient = new Map<string, number>();
    for (const request of this.requests) {
      if (request.inflightToken !== undefined) inflightPerClient.set(request.clientId, (inflightPerClient.get(request.clientId) ?? 0) + 1);
    }
    for (const request of this.requests) {
      if (request.outcome !== undefined || request.inflightToken !== undefined || request.nextTryMs > this.nowMs) continue;
      if ((inflightPerClient.get(request.clientId) ?? 0) >= 2) continue;
      const shard = shardOfItem(this.options.topology, request.from);
      const candidates = this.replicas[shard]!.filter((r) => r.up);
      if (candidates.length === 0) continue;
      // Clients do not know the leader: they ask a random replica, as after a NATS outage.
      const replica = this.rng.pick(candidates);
      // A client opens its session on a shard before its first transfer there (OpenSession is
      // effect-free, so a lost reply is simply retried).
      const sessionKey = `${shard}/${request.clientId}`;
      const sessionEpoch = request.sessionEpoch ?? this.sessionEpochs.get(sessionKey);
      if (sessionEpoch === undefined) {
        const open = this.opening.get(sessionKey);
        if (open && this.nowMs - open.sinceMs < 3000) continue;
        if (open) this.openTokens.delete(open.token);
        const token = this.nextToken++;
        this.opening.set(sessionKey, { token, sinceMs: this.nowMs });
        this.openTokens.set(token, sessionKey);
        replica.node.submitOpenSession(request.clientId, token);
        this.process(replica);
        continue;
      }
      // Every retry of a request names the epoch it was first sent with.
      request.sessionEpoch = sessionEpoch;
      const token = this.nextToken++;
      request.inflightToken = token;
      request.attempts += 1;
      // A transfer on an item being read may linearize before or after the read: that read
      // proves nothing and is not checked.
      for (const read of this.reads.values()) if (read.item === request.from || read.item === request.to) read.overlapped = true;
      this.tokens.set(token, request);
      inflightPerClient.set(request.clientId, (inflightPerClient.get(request.clientId) ?? 0) + 1);
      replica.node.submitTransfer(
        { clientId: request.clientId, requestId: request.requestId, from: request.from, to: request.to, amount: request.amount, acknowledgedBelow: this.acknowledgedBelow(request), sessionEpoch },
        token,
      );
      this.process(replica);
      // A reply lost with a crash: the client times out and retries with the same id.
      const timeout = token;
      this.timeouts.push({ atMs: this.nowMs + 3000, token: timeout });
    }
    this.timeouts = this.timeouts.filter((t) => {
      if (t.atMs > this.nowMs) return true;
      const request = this.tokens.get(t.token);
      if (request && request.inflightToken === t.token) {
        request.inflightToken = undefined;
        request.nextTryMs = this.nowMs + this.rng.int(10, 100);
      }
      this.tokens.delete(t.token);
      return false;
    });
  }

  private timeouts: { atMs: number; token: number }[] = [];

  /** Clients acknowledge the contiguous prefix of their request ids that have an outcome. */
  private acknowledgedBelow(request: ClientRequest): number {
    let acknowledged = 0;
    for (const other of this.requests) {
      if (other.clientId !== request.clientId || other.requestId !== acknowledged + 1) continue;
      if (other.outcome === undefined) break;
      acknowledged += 1;
    }
    return Math.min(acknowledged, request.requestId - 1);
  }

  private onReply(reply: ClientReply): void {
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
      if (reply.kind === 'read' && !read.overlapped) {
        this.readsChecked += 1;
        if (reply.balances[0] !== read.expected) {
          throw new SimFailure('safety', `linearizable read of item ${read.item} returned ${reply.balances[0]}, expected ${read.expected}`, this.options.seed);
        }
      }
      return;
    }
    const request = this.tokens.get(reply.token);
    if (!request || request.inflightToken !== reply.token) return;
    this.tokens.delete(reply.token);
    request.inflightToken = undefined;
    if (reply.kind === 'transfer') {
      if (request.outcome !== undefined && request.outcome !== reply.outcome) {
        throw new SimFailure('safety', `request ${request.clientId}/${request.requestId} got ${reply.outcome} after ${request.outcome}`, this.options.seed);
      }
      if (reply.outcome === Outcome.COMMITTED || reply.outcome === Outcome.INSUFFICIENT_FUNDS) {
        request.outcome = reply.outcome;
        return;
      }
    }
    if (reply.kind === 'error' && (reply.code === 'stale' || reply.code === 'mismatch' || reply.code === 'expired')) {
      throw new SimFailure('safety', `request ${request.clientId}/${request.requestId} refused: ${reply.message}`, this.options.seed);
    }
    // not-leader, aborted, unavailable: retry the same request id later.
    request.nextTryMs = this.nowMs + this.rng.int(5, 60);
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
      const group = this.replicas[shard]!;
      const reference = group[0]!.node.bank;
      for (const replica of group) {
        if (replica.node.bank.fingerprint() !== reference.fingerprint()) {
          throw new SimFailure('invariant', `shard ${shard}: replica ${replica.ordinal} disagrees with replica 0`, this.options.seed);
        }
      }
      const balances = reference.balancesCopy();
      for (let i = 0; i < balances.length; i += 1) {
        const item = reference.firstItem + i;
        total += balances[i]!;
        if (balances[i]! < 0) throw new SimFailure('invariant', `item ${item} is negative`, this.options.seed);
        if (balances[i] !== expected[item]) {
          throw new SimFailure('invariant', `item ${item}: balance ${balances[i]} but committed transfers say ${expected[item]}`, this.options.seed);
        }
      }
    }
    if (total !== initialClusterTotal(topology)) {
      throw new SimFailure('invariant', `total ${total} != initial ${initialClusterTotal(topology)}`, this.options.seed);
    }
  }
}

export function digestOf(value: Buffer): string {
  return createHash('sha1').update(value).digest('base64');
}
