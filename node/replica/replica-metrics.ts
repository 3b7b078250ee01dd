// The replica's Prometheus metrics (/metrics): one prom-client Registry per replica process,
// with cluster/shard/replica as default labels on every series and prom-client's default
// process metrics. Names and meanings: docs/METRICS.md.
//
// The hot path stays cheap: nothing here looks up a label set or allocates per transfer.
// - Counters the core already keeps (ShardNode.counters, the DurableLog's stats, the peer
//   transport) are read at scrape time by collect() callbacks, never incremented twice.
// - Counts this module keeps itself are plain numbers or typed arrays, also read at scrape.
// - Histograms are FastHistogram below: a series bound once to its labels, whose observe() is
//   a bucket scan over a Float64Array (prom-client's Histogram hashes its labels and allocates
//   on every observe(): about 600 ns against 30 ns measured here).
// - Timestamps: one performance.now() per turn of the event loop at most (now()), shared by
//   every arrival, reply, proposal and 2PC step of that turn.
import { Counter, Gauge, type Registry, type Metric } from 'prom-client';
import { processRegistry } from '../util/prometheus.js';
import { Outcome } from '../gen/shardbank/v1/bank.js';
import { ABORT_REASONS } from '../bank/bank-state.js';
import type { TxKey } from '../bank/txid.js';
import type { ClientReply, ErrorCode, ShardNode } from '../shard/shard-node.js';
import type { TxPhaseObserver } from '../shard/two-phase-commit.js';
import type { DurableLogStats } from '../storage/durable-log-interface.js';

/** Seconds: client and consensus latencies, 0.5 ms to 10 s. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Seconds: one durable write (O_DSYNC write or fdatasync), 50 us to 1 s. */
export const FSYNC_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

type Labels = Record<string, string>;

/** One labelled series of a FastHistogram: bind it once, observe() on the hot path. */
export class HistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    private readonly bounds: Float64Array,
    readonly labels: Labels,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(seconds: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && seconds > bounds[i]!) i += 1;
    this.counts[i]! += 1;
    this.sum += seconds;
    this.count += 1;
  }
}

/**
 * A Prometheus histogram that prom-client's Registry renders like its own (it implements the
 * registry's metric interface: name, help, type, get()); the series are fixed at creation.
 */
export class FastHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly bounds: Float64Array;
  private readonly series: HistogramSeries[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
    buckets: readonly number[],
  ) {
    this.bounds = Float64Array.from(buckets);
  }

  /** The series for these labels (call once, keep the result). */
  bind(labels: Labels = {}): HistogramSeries {
    const series = new HistogramSeries(this.bounds, labels);
    this.series.push(series);
    return series;
  }

  /** At scrape time; the layout of prom-client's own Histogram (le first, series labels shared). */
  get() {
    const values: {
      labels: Record<string, string | number>;
      sharedLabels: Labels;
      value: number;
      metricName: string;
    }[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.series) {
      const shared = s.labels;
      let cumulative = 0;
      for (let i = 0; i < this.bounds.length; i += 1) {
        cumulative += s.counts[i]!;
        values.push({ labels: { le: this.bounds[i]! }, sharedLabels: shared, value: cumulative, metricName: bucket });
      }
      values.push({ labels: { le: '+Inf' }, sharedLabels: shared, value: s.count, metricName: bucket });
      values.push({ labels: {}, sharedLabels: shared, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: {}, sharedLabels: shared, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    for (const s of this.series) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}

/** Outcome label of a transfer's reply: the Outcome name, or the error code in the same style. */
const ERROR_OUTCOMES: Record<ErrorCode, number> = {
  'not-leader': 0,
  aborted: 1,
  stale: 2,
  expired: 3,
  mismatch: 4,
  unavailable: 5,
};
const ERROR_OUTCOME_LABELS = ['NOT_LEADER', 'ABORTED', 'STALE', 'EXPIRED', 'MISMATCH', 'UNAVAILABLE'];
const ABORT_REASON_LABELS: string[] = [];
for (const [name, code] of Object.entries(ABORT_REASONS))
  ABORT_REASON_LABELS[code] = name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * Pending transfers by token: arrival time (ms, negative for a cross-shard transfer) and the
 * token it belongs to. Tokens are handed out in order and at most PENDING_CALLS_MAX (200,000)
 * calls are pending at once, so a ring of 2^18 holds every pending one; a slot taken over by
 * a much newer token (a call pending for 262,144 others) is simply not observed.
 */
const ARRIVAL_RING = 1 << 18;
const ARRIVAL_MASK = ARRIVAL_RING - 1;
/** Proposed slots waiting to be chosen, by slot number (far above inflightSlotsMax). */
const SLOT_RING = 1 << 14;
const SLOT_MASK = SLOT_RING - 1;

/** What the scrape reads from the running replica. */
export interface MetricsSources {
  node: ShardNode;
  storage: () => DurableLogStats;
  framesSent: () => number;
  shardTotal: () => number;
}

export class ReplicaMetrics implements TxPhaseObserver {
  readonly registry: Registry;
  // Counts kept here (read at scrape time).
  electionsWon = 0;
  leaderChanges = 0;
  persistBatches = 0;
  grpcRequests = 0;
  forwardedRequests = 0;
  /** Transfers received over TransferStream (each stream message also counts as a gRPC request). */
  transferStreamEntries = 0;
  private readonly outcomes = new Float64Array(16);
  private readonly errorOutcomes = new Float64Array(ERROR_OUTCOME_LABELS.length);
  // Histograms, each series bound once.
  private readonly transferIntra: HistogramSeries;
  private readonly transferCross: HistogramSeries;
  private readonly commit: HistogramSeries;
  private readonly fsyncAsync: HistogramSeries;
  private readonly fsyncNow: HistogramSeries;
  private readonly phasePrepare: HistogramSeries;
  private readonly phaseDecision: HistogramSeries;
  // The turn clock: one performance.now() per turn of the event loop (NaN: not taken yet).
  private turnClock = Number.NaN;
  private readonly arrivalAt = new Float64Array(ARRIVAL_RING);
  private readonly arrivalToken = new Float64Array(ARRIVAL_RING).fill(-1);
  private readonly proposedAt = new Float64Array(SLOT_RING);
  private readonly proposedSlot = new Float64Array(SLOT_RING).fill(-1);
  private trackedProposed = 0;
  private trackedCommit = 0;
  private leading = false;
  /** In-doubt transactions by key: when a scrape first saw each (ms). */
  private readonly inDoubtSince = new Map<TxKey, number>();
  private sources: MetricsSources | undefined;

  constructor(labels: { cluster: string; shard: number; replica: number }) {
    const registry = processRegistry({
      cluster: labels.cluster,
      shard: String(labels.shard),
      replica: String(labels.replica),
    });
    this.registry = registry;
    const histogram = (name: string, help: string, buckets: readonly number[]) => {
      const h = new FastHistogram(name, help, buckets);
      registry.registerMetric(h as unknown as Metric);
      return h;
    };
    const transfer = histogram(
      'shardbank_transfer_duration_seconds',
      'Client transfers served by this replica as leader: from the request reaching the replica to its definite reply (COMMITTED or INSUFFICIENT_FUNDS), by scope (intra: both items in this shard; cross: two-phase commit).',
      LATENCY_BUCKETS,
    );
    this.transferIntra = transfer.bind({ scope: 'intra' });
    this.transferCross = transfer.bind({ scope: 'cross' });
    this.commit = histogram(
      'shardbank_commit_duration_seconds',
      'Consensus latency on the leader: from proposing a slot to learning it is chosen (accepted by a majority).',
      LATENCY_BUCKETS,
    ).bind();
    const fsync = histogram(
      'shardbank_log_fsync_duration_seconds',
      "One durable write of the log (an O_DSYNC write, plus the directory fsync of a new segment): path async is the group commit's flush on the thread pool, sync_now the follower's synchronous write.",
      FSYNC_BUCKETS,
    );
    this.fsyncAsync = fsync.bind({ path: 'async' });
    this.fsyncNow = fsync.bind({ path: 'sync_now' });
    const phases = histogram(
      'shardbank_2pc_phase_duration_seconds',
      "Two-phase commit on the coordinator's leader: phase prepare from sending PREPARE to the participant's vote, phase decision from the decision (applied) to the participant's acknowledgement.",
      LATENCY_BUCKETS,
    );
    this.phasePrepare = phases.bind({ phase: 'prepare' });
    this.phaseDecision = phases.bind({ phase: 'decision' });
    this.registerCounters();
    this.registerGauges();
  }

  /** The running replica, read at scrape time. */
  attach(sources: MetricsSources): void {
    this.sources = sources;
  }

  // ---- Hot path ----

  /** Milliseconds, taken once per turn of the event loop (see endTurn). */
  now(): number {
    let t = this.turnClock;
    if (t !== t) {
      t = performance.now();
      this.turnClock = t;
    }
    return t;
  }

  /** Called at the start and the end of each Ready pass: the next event takes a fresh clock. */
  endTurn(): void {
    this.turnClock = Number.NaN;
  }

  transferArrived(token: number, cross: boolean): void {
    const slot = token & ARRIVAL_MASK;
    const t = this.now();
    this.arrivalToken[slot] = token;
    this.arrivalAt[slot] = cross ? -t - 1 : t + 1;
  }

  /** Every client reply; counts and times the transfers among them. */
  replied(reply: ClientReply): void {
    const slot = reply.token & ARRIVAL_MASK;
    if (this.arrivalToken[slot] !== reply.token) return;
    this.arrivalToken[slot] = -1;
    if (reply.kind === 'transfer') {
      const outcome = reply.outcome;
      if (outcome >= 0 && outcome < this.outcomes.length) this.outcomes[outcome]! += 1;
      const at = this.arrivalAt[slot]!;
      if (at < 0) this.transferCross.observe((this.now() + at + 1) / 1000);
      else this.transferIntra.observe((this.now() - at + 1) / 1000);
    } else if (reply.kind === 'error') {
      this.errorOutcomes[ERROR_OUTCOMES[reply.code]]! += 1;
    }
  }

  /** After each Ready pass: times slots from proposal to chosen (leader only). */
  afterPass(node: ShardNode): void {
    const proposed = node.counters.lastProposedSlot;
    const commit = node.core.commitIndex;
    if (node.core.role !== 'leader') {
      // Slots this replica proposed in an earlier term may be chosen with another leader's
      // value, much later: forget them.
      if (this.leading) this.proposedSlot.fill(-1);
      this.leading = false;
      this.trackedProposed = Math.max(proposed, commit);
      this.trackedCommit = commit;
      return;
    }
    this.leading = true;
    if (proposed > this.trackedProposed) {
      const t = this.now();
      for (let s = Math.max(this.trackedProposed, commit, proposed - SLOT_RING) + 1; s <= proposed; s += 1) {
        this.proposedAt[s & SLOT_MASK] = t;
        this.proposedSlot[s & SLOT_MASK] = s;
      }
      this.trackedProposed = proposed;
    }
    if (commit > this.trackedCommit) {
      if (this.trackedProposed > this.trackedCommit) {
        const t = this.now();
        const last = Math.min(commit, this.trackedProposed);
        for (let s = Math.max(this.trackedCommit, last - SLOT_RING) + 1; s <= last; s += 1) {
          const i = s & SLOT_MASK;
          if (this.proposedSlot[i] !== s) continue;
          this.proposedSlot[i] = -1;
          this.commit.observe((t - this.proposedAt[i]!) / 1000);
        }
      }
      this.trackedCommit = commit;
    }
  }

  /** The DurableLog's observer: one durable write took this long. */
  readonly onSync = (seconds: number, synchronous: boolean): void => {
    (synchronous ? this.fsyncNow : this.fsyncAsync).observe(seconds);
  };

  prepareVoted(sentAtMs: number): void {
    this.phasePrepare.observe((this.now() - sentAtMs) / 1000);
  }

  decisionAcked(sentAtMs: number): void {
    this.phaseDecision.observe((this.now() - sentAtMs) / 1000);
  }

  // ---- Scrape ----

  async render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private registerCounters(): void {
    const registers = [this.registry];
    const self = this.collectView();
    const counter = (name: string, help: string, read: (s: MetricsSources) => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          if (self.sources) this.inc(read(self.sources));
        },
      });
    counter(
      'shardbank_elections_started_total',
      'Elections this replica stood in (phase 1 started).',
      (s) => s.node.core.electionsStarted,
    );
    counter('shardbank_elections_won_total', 'Elections this replica won (it became leader).', () => this.electionsWon);
    counter(
      'shardbank_leader_changes_total',
      'Times this replica learned of a new leader of its shard (itself or a peer).',
      () => this.leaderChanges,
    );
    counter('shardbank_persist_batches_total', 'Ready passes whose writes became durable.', () => this.persistBatches);
    counter(
      'shardbank_grpc_requests_total',
      'gRPC calls and TransferStream messages received.',
      () => this.grpcRequests,
    );
    counter(
      'shardbank_forwarded_requests_total',
      'Client calls passed on to another replica (a follower to its leader, or to the leader of another shard).',
      () => this.forwardedRequests,
    );
    counter(
      'shardbank_transfer_stream_entries_total',
      'Transfers received over TransferStream.',
      () => this.transferStreamEntries,
    );
    counter('shardbank_log_syncs_total', 'Durable writes of the log (fsyncs).', (s) => s.storage().syncs);
    counter('shardbank_log_bytes_written_total', 'Bytes written durably to the log.', (s) => s.storage().bytesWritten);
    counter(
      'shardbank_commands_proposed_total',
      'Commands this replica proposed as leader.',
      (s) => s.node.counters.commandsProposed,
    );
    counter(
      'shardbank_slots_proposed_total',
      'Log slots this replica proposed as leader (commands per slot: the ratio of the two).',
      (s) => s.node.counters.slotsProposed,
    );
    counter(
      'shardbank_pacing_holds_total',
      'Times the leader held a batch for more commands (pacing).',
      (s) => s.node.counters.pacingHolds,
    );
    counter(
      'shardbank_tx_messages_sent_total',
      'Two-phase-commit messages sent to other shards.',
      (s) => s.node.counters.txMessagesSent,
    );
    counter('shardbank_peer_frames_sent_total', 'Frames sent to peer replicas.', (s) => s.framesSent());
    new Counter({
      name: 'shardbank_transfers_total',
      help: 'Client transfers answered by this replica as leader, by outcome: COMMITTED, INSUFFICIENT_FUNDS, or the error (ABORTED after repeated conflicts, NOT_LEADER, UNAVAILABLE, STALE, EXPIRED, MISMATCH).',
      labelNames: ['outcome'],
      registers,
      collect() {
        this.reset();
        for (const name of ['COMMITTED', 'INSUFFICIENT_FUNDS'] as const)
          this.labels(name).inc(self.outcomes[Outcome[name]]!);
        self.errorOutcomes.forEach((count, i) => this.labels(ERROR_OUTCOME_LABELS[i]!).inc(count));
      },
    });
    new Counter({
      name: 'shardbank_tx_aborts_total',
      help: 'Cross-shard transactions coordinated by this shard that were decided ABORT while this replica led, by reason (participant_no, insufficient_funds, conflict, rejected: a refused request, timeout: kept, always 0 since parallel commits, presumed: a presumed-abort tombstone).',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        const aborts = self.sources?.node.counters.txAborts;
        ABORT_REASON_LABELS.forEach((reason, code) => this.labels(reason).inc(aborts?.[code] ?? 0));
      },
    });
  }

  private registerGauges(): void {
    const registers = [this.registry];
    const self = this.collectView();
    const gauge = (name: string, help: string, read: (s: MetricsSources) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          if (self.sources) this.set(read(self.sources));
        },
      });
    gauge('shardbank_is_leader', '1 while this replica is the leader of its shard, else 0.', (s) =>
      s.node.core.role === 'leader' ? 1 : 0,
    );
    gauge(
      'shardbank_leader_known',
      '1 while this replica knows a leader of its shard (itself or a peer), else 0.',
      (s) => (s.node.core.leaderOrdinal >= 0 ? 1 : 0),
    );
    gauge(
      'shardbank_shard_replicas',
      'Replicas of each shard in the topology (a majority of them is a quorum).',
      (s) => s.node.config.topology.replicasPerShard,
    );
    gauge(
      'shardbank_commit_index',
      'Highest log slot known chosen, with every slot before it.',
      (s) => s.node.core.commitIndex,
    );
    gauge('shardbank_applied_index', 'Highest log slot applied to the bank state.', (s) => s.node.core.appliedIndex);
    gauge('shardbank_snapshot_index', 'Log slot of the latest snapshot.', (s) => s.node.core.snapshotIndex);
    gauge(
      'shardbank_ballot_round',
      'Round of the ballot this replica has promised.',
      (s) => s.node.core.promisedBallot.round,
    );
    gauge('shardbank_log_segments', 'Segment files of the log on disk.', (s) => s.storage().segments);
    gauge('shardbank_shard_balance', 'Sum of the balances of this shard (applied state).', (s) => s.shardTotal());
    gauge(
      'shardbank_inflight_transactions',
      'Cross-shard transactions not finished in the applied state: coordinated ones awaiting decision or acknowledgement, and undecided participant ones.',
      (s) => s.node.bank.inflightCount(),
    );
    new Gauge({
      name: 'shardbank_indoubt_transactions',
      help: 'Transactions in doubt here: this shard is their participant, has prepared (voted YES) and has no decision yet.',
      registers,
      collect() {
        this.set(self.scanInDoubt().count);
      },
    });
    new Gauge({
      name: 'shardbank_indoubt_oldest_age_seconds',
      help: 'Age of the oldest in-doubt transaction (0 when none), counted from the first scrape that saw it in doubt (so up to one scrape interval low).',
      registers,
      collect() {
        this.set(self.scanInDoubt().oldestSeconds);
      },
    });
  }

  /** This object, for prom-client's collect() callbacks (their `this` is the metric). */
  private collectView(): this {
    return this;
  }

  private lastScan = { at: Number.NaN, count: 0, oldestSeconds: 0 };

  /** Once per scrape (both in-doubt gauges share it): walks the transactions of the applied state. */
  private scanInDoubt(): { count: number; oldestSeconds: number } {
    const now = performance.now();
    if (now - this.lastScan.at < 100) return this.lastScan;
    const node = this.sources?.node;
    let count = 0;
    let oldest = now;
    const seen = new Set<TxKey>();
    if (node) {
      for (const [key, record] of node.bank.transactionEntries()) {
        if (record.role !== 'participant' || record.state !== 'prepared') continue;
        count += 1;
        seen.add(key);
        let since = this.inDoubtSince.get(key);
        if (since === undefined) {
          since = now;
          this.inDoubtSince.set(key, since);
        }
        if (since < oldest) oldest = since;
      }
    }
    for (const key of this.inDoubtSince.keys()) if (!seen.has(key)) this.inDoubtSince.delete(key);
    this.lastScan = { at: now, count, oldestSeconds: (now - oldest) / 1000 };
    return this.lastScan;
  }
}
