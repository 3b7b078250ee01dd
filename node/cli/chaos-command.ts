// `shardbank chaos`: a workload while replicas (and with --kill-nats, nats-server) are
// SIGKILLed at an interval, then, once every in-flight transaction is decided, the bank
// invariants of SPEC section 2 are checked. The local equivalent of deleting pods; with
// --kubernetes it deletes the pods of a BankCluster through the Kubernetes API instead.
import { writeFileSync } from 'node:fs';
import { initialClusterTotal, shardOfItem } from '../cluster/topology.js';
import { readAllBalances, readShardReplicas, waitQuiescent } from '../client/bank-audit.js';
import { sleep } from '../client/backoff.js';
import { ShardbankClient, type ClientSession } from '../client/bank-client.js';
import { checkBank, ExpectationLedger, type BankVerdict, type ShardReplicaReads } from '../client/bank-invariants.js';
import { compareBallots, type BallotPair, type ClusterView, type LeaderView } from '../client/status-view.js';
import { readAddressBook, type AddressBook } from '../local/address-book.js';
import {
  parseCommandArgs,
  parseDurationMs,
  parseIntegerOption,
  parseNumberOption,
  natsSecurityFromValues,
  resolveTarget,
  tlsFromFlags,
  TLS_OPTIONS,
} from './args.js';
import { KubeApiError } from './kube-api.js';
import { kubernetesTarget, type KubernetesTarget } from './kube-chaos.js';
import { CliError, EXIT, UsageError, warn, type CliIo } from './cli-io.js';
import { renderHtmlReport, type ReportFault, type ReportMarker } from './html-report.js';
import { LeaderTracker } from './leader-tracker.js';
import { RunStats } from './run-stats.js';
import { PairGenerator } from './workload.js';

export const CHAOS_CLIENTS_MAX = 64;
export const CALL_DEADLINE_MS = 8_000;
export const AMOUNT_MAX = 3;
/** After a leader fault, ClusterStatus is asked this often until the shard has a new leader... */
export const FAILOVER_POLL_MS = 100;
export const FAILOVER_POLL_TIMEOUT_MS = 500;
/** ...for at most this long; then the fault's line says no new leader was seen. */
export const FAILOVER_WATCH_MS = 30_000;

export const CHAOS_HELP = `Usage: shardbank chaos [--duration 60s] [--interval 5s] [--target leader|random] [--kill-nats] [--json] [--report FILE.html]

Runs a workload against the local cluster while SIGKILLing, at every interval, the leader
of a random shard (or a random replica) and, with --kill-nats, nats-server every other
interval; the supervisor restarts them. Then it resolves every transfer whose outcome was
unknown (retrying with the same request id), waits until no transaction is in flight and
the replicas have caught up, and checks: total money conserved, no negative balance,
every COMMITTED transfer applied exactly once, replicas of each shard agree.
Exit code 0 only when every invariant held.

Each fault is printed on stdout as it happens (with --json, one JSON object per line; the
verdict is the last line), a leader fault once its shard has a new leader:
  12.3s kill shard 1 replica 2 (leader, pid 4242) -> new leader replica 0 (ballot 5.0) after 0.84s

Options:
  --duration D          how long the workload and the kills run (default 60s)
  --interval D          time between kills (default 5s)
  --target T            leader (default) or random
  --kill-nats           also kill nats-server (a managed one); --nats is a deprecated spelling
  --clients N           concurrent workload clients (default 4)
  --cross-shard-ratio R share of cross-shard transfers (default 0.67)
  --call-timeout D      deadline of one transfer call, retries included (default 8s);
                        shorter values leave more outcomes unknown for the resolution phase
  --settle-timeout D    bound on each wait after the run (default 120s)
  --report FILE.html    write a self-contained HTML report
  --json                print the verdict with the counts it checked
  --state-dir DIR       the local cluster (default .shardbank)
  --kubernetes          delete pods of a BankCluster through the Kubernetes API instead (graceful
                        deletion, as a user would); the workload talks to the replicas' per-pod DNS
                        names, so run it inside the cluster (a pod), or give reachable --endpoints
  --cluster NAME        with --kubernetes: the BankCluster (required)
  --namespace NS        with --kubernetes: its namespace (default "default")
  --kubeconfig FILE     with --kubernetes: credentials (default $KUBECONFIG, else the pod's ServiceAccount)
  --nats-url URL, --nats-ca FILE, --nats-creds FILE
                        with --kubernetes: the cluster's NATS for leader discovery (the watcher user)
  --ca, --cert, --key   TLS files (a local cluster started with TLS is found without them)`;

const CHAOS_OPTIONS = {
  'state-dir': { type: 'string' },
  endpoints: { type: 'string' },
  kubernetes: { type: 'boolean', default: false },
  cluster: { type: 'string' },
  namespace: { type: 'string' },
  kubeconfig: { type: 'string' },
  'nats-url': { type: 'string' },
  'nats-ca': { type: 'string' },
  'nats-creds': { type: 'string' },
  ...TLS_OPTIONS,
  duration: { type: 'string' },
  interval: { type: 'string' },
  target: { type: 'string' },
  'kill-nats': { type: 'boolean', default: false },
  /** Deprecated spelling of --kill-nats (warns): --nats names a NATS URL on the other commands. */
  nats: { type: 'boolean', default: false },
  clients: { type: 'string' },
  'cross-shard-ratio': { type: 'string' },
  'settle-timeout': { type: 'string' },
  'call-timeout': { type: 'string' },
  report: { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

interface ChaosSettings {
  durationMs: number;
  intervalMs: number;
  target: 'leader' | 'random';
  nats: boolean;
  clients: number;
  crossShardRatio: number;
  settleMs: number;
  callTimeoutMs: number;
}

interface PendingTransfer {
  from: number;
  to: number;
  amount: number;
  requestId: number;
  session: ClientSession;
  /** Once an attempt's outcome was unknown, a later rejection does not prove it had no effect. */
  everUnknown: boolean;
  firstAttemptAtMs?: number;
}

/** What a fault hit: a label for markers, the replica, how it was found (pid, pod name). */
export interface Victim {
  label: string;
  shard: number;
  ordinal: number;
  /** It led its shard when it was chosen. */
  leader: boolean;
  detail: string;
}

/** One fault chaos injected, and (for a leader) what followed. */
export interface ReplicaFault {
  atMs: number;
  atS: number;
  action: string;
  label: string;
  shard: number;
  replica: number;
  leader: boolean;
  detail: string;
  /** The ballot the killed leader led with, when known: its successor has a higher one. */
  oldBallot?: BallotPair;
  /** A leader fault: the next leader seen, null when none was seen within FAILOVER_WATCH_MS. */
  newLeader?: { replica: number; ballot: BallotPair } | null;
  /** A leader fault: from the kill call to the first ClusterStatus answer naming the new leader. */
  failoverMs?: number | null;
  recoveredMs?: number;
}

export type FaultEvent =
  | ({ target: 'replica' } & ReplicaFault)
  | { target: 'nats-server'; atS: number; action: string; detail: string }
  | { target: 'failed'; atS: number; action: string; message: string };

const seconds = (ms: number) => Math.round(ms / 10) / 100;

/** The line a fault prints as it happens (docs/CLI.md). */
export function faultText(event: FaultEvent): string {
  const at = `${event.atS.toFixed(1)}s ${event.action}`;
  switch (event.target) {
    case 'nats-server':
      return `${at} nats-server (${event.detail})`;
    case 'failed':
      return `${at} failed: ${event.message}`;
    case 'replica': {
      const what = `${at} shard ${event.shard} replica ${event.replica} (${event.leader ? 'leader, ' : ''}${event.detail})`;
      if (!event.leader || event.newLeader === undefined) return what;
      if (event.newLeader === null || event.failoverMs == null)
        return `${what} -> no new leader within ${FAILOVER_WATCH_MS / 1000}s`;
      const { replica, ballot } = event.newLeader;
      return `${what} -> new leader replica ${replica} (ballot ${ballot[0]}.${ballot[1]}) after ${seconds(event.failoverMs).toFixed(2)}s`;
    }
  }
}

/** The JSON line of a fault (docs/CLI.md). */
export function faultJson(event: FaultEvent): Record<string, unknown> {
  const head = { type: 'fault', atS: Math.round(event.atS * 1000) / 1000, action: event.action };
  switch (event.target) {
    case 'nats-server':
      return { ...head, target: 'nats-server', detail: event.detail };
    case 'failed':
      return { ...head, target: 'failed', message: event.message };
    case 'replica':
      return {
        ...head,
        target: 'replica',
        shard: event.shard,
        replica: event.replica,
        leader: event.leader,
        detail: event.detail,
        newLeader: event.newLeader ?? null,
        failoverS: event.failoverMs == null ? null : seconds(event.failoverMs),
      };
  }
}

/** A leader after a fault is new if it leads with a higher ballot (or, not knowing that, is another replica). */
export function isNewLeader(fault: ReplicaFault, leader: LeaderView | null): leader is LeaderView {
  if (leader === null) return false;
  return fault.oldBallot ? compareBallots(leader.ballot, fault.oldBallot) > 0 : leader.ordinal !== fault.replica;
}

/**
 * Per fault on a shard's leader: the time from the kill (or pod delete) call to the first
 * COMMITTED transfer touching that shard whose first attempt started after the call (the
 * shard serves new work again, as a client sees it).
 */
export interface Recovery {
  label: string;
  shard: number;
  atMs: number;
  recoveredMs?: number;
}

interface Faults {
  replicaKills: number;
  natsKills: number;
}

/** What chaos does to a cluster: SIGKILL local processes, or delete pods. */
export interface Faulter {
  /** The action, for markers ("SIGKILL replica", "delete pod"). */
  readonly verb: string;
  /** The action, for the fault lines ("kill", "delete pod"). */
  readonly action: string;
  /** Kills one replica; null: the cluster is gone (stop), undefined: nothing to kill now. */
  replica(view: ClusterView | undefined, target: 'leader' | 'random'): Promise<Victim | null | undefined>;
  nats(): Promise<string | undefined>;
}

function localFaulter(stateDir: string): Faulter {
  return {
    verb: 'SIGKILL replica',
    action: 'kill',
    replica: async (view, target) => {
      const book = readAddressBook(stateDir);
      return book === undefined ? null : killReplica(book, view, target);
    },
    nats: async () => {
      const book = readAddressBook(stateDir);
      if (book === undefined || book.natsPid === null || !kill(book.natsPid)) return undefined;
      return `pid ${book.natsPid}`;
    },
  };
}

function parseSettings(values: Record<string, string | boolean | undefined>): ChaosSettings {
  const text = (key: string) => values[key] as string | undefined;
  const target = text('target') ?? 'leader';
  if (target !== 'leader' && target !== 'random')
    throw new UsageError(`--target: expected leader or random, got ${JSON.stringify(target)}`);
  return {
    durationMs: parseDurationMs('duration', text('duration') ?? '60s'),
    intervalMs: parseDurationMs('interval', text('interval') ?? '5s'),
    target,
    nats: values['kill-nats'] === true || values.nats === true,
    clients: parseIntegerOption('clients', text('clients'), 4, 1, CHAOS_CLIENTS_MAX),
    crossShardRatio: parseNumberOption('cross-shard-ratio', text('cross-shard-ratio'), 0.67, 0, 1),
    settleMs: parseDurationMs('settle-timeout', text('settle-timeout') ?? '120s'),
    callTimeoutMs: parseDurationMs('call-timeout', text('call-timeout') ?? `${CALL_DEADLINE_MS}ms`),
  };
}

function pick<T>(values: readonly T[]): T | undefined {
  return values.length === 0 ? undefined : values[Math.floor(Math.random() * values.length)];
}

function kill(pid: number): boolean {
  try {
    process.kill(pid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

/** Chooses and SIGKILLs one replica: the leader of a random shard, or any replica. */
function killReplica(
  book: AddressBook,
  view: ClusterView | undefined,
  target: 'leader' | 'random',
): Victim | undefined {
  const alive = book.replicas.filter((entry) => entry.pid !== null);
  let victim = pick(alive);
  let leader = false;
  if (target === 'leader' && view !== undefined) {
    const leaders = view.shards.flatMap((shard) =>
      shard.leader === null ? [] : [{ shard: shard.shard, ordinal: shard.leader.ordinal }],
    );
    const chosen = pick(leaders);
    const entry = chosen && alive.find((e) => e.shard === chosen.shard && e.ordinal === chosen.ordinal);
    if (entry) {
      victim = entry;
      leader = true;
    }
  }
  if (victim === undefined || !kill(victim.pid!)) return undefined;
  return {
    label: `s${victim.shard}-${victim.ordinal} (pid ${victim.pid}${leader ? ', leader' : ''})`,
    shard: victim.shard,
    ordinal: victim.ordinal,
    leader,
    detail: `pid ${victim.pid}`,
  };
}

class ChaosRun {
  readonly ledger = new ExpectationLedger();
  readonly unresolved: PendingTransfer[] = [];
  readonly faults: Faults = { replicaKills: 0, natsKills: 0 };
  /** Leader faults, oldest first; those not yet recovered are matched by later commits. */
  readonly recoveries: ReplicaFault[] = [];
  /** Every fault, in the order they happened, for the report. */
  readonly events: FaultEvent[] = [];
  /** The failover watches still running. */
  readonly watches: Promise<void>[] = [];
  /** Transfers whose outcome was unknown at some point, and later attempts made for them. */
  outcomeUnknownSeen = 0;
  resolvedRetries = 0;
  readonly stats: RunStats;
  readonly tracker: LeaderTracker;

  constructor(
    readonly client: ShardbankClient,
    readonly settings: ChaosSettings,
    readonly faulter: Faulter,
    readonly startedAtMs: number,
    /** Prints a fault's line (stdout) as it happens. */
    readonly emit: (event: FaultEvent) => void,
  ) {
    this.stats = new RunStats(startedAtMs);
    this.tracker = new LeaderTracker(client, startedAtMs);
  }

  private settle(pending: PendingTransfer, outcome: string): boolean {
    if (outcome === 'UNKNOWN') {
      if (!pending.everUnknown) this.outcomeUnknownSeen += 1;
      pending.everUnknown = true;
      return false;
    }
    const provedNoEffect = outcome !== 'COMMITTED' && outcome !== 'INSUFFICIENT_FUNDS';
    this.ledger.record({ ...pending, outcome: provedNoEffect && pending.everUnknown ? 'UNKNOWN' : outcome });
    return true;
  }

  async attempt(pending: PendingTransfer, deadlineMs: number): Promise<boolean> {
    const startedAtMs = performance.now();
    pending.firstAttemptAtMs ??= Date.now();
    const result = await this.client.transfer(
      { from: pending.from, to: pending.to, amount: pending.amount, requestId: pending.requestId },
      { session: pending.session, deadlineMs },
    );
    const now = Date.now();
    this.stats.record(result.outcome, performance.now() - startedAtMs, now);
    if (result.outcome === 'COMMITTED') this.noteCommit(pending, now);
    return this.settle(pending, result.outcome);
  }

  private noteCommit(pending: PendingTransfer, now: number): void {
    const topology = this.client.topology;
    const shards = new Set([shardOfItem(topology, pending.from), shardOfItem(topology, pending.to)]);
    for (const r of this.recoveries) {
      if (r.recoveredMs === undefined && shards.has(r.shard) && pending.firstAttemptAtMs! >= r.atMs)
        r.recoveredMs = now - r.atMs;
    }
  }

  /** One closed-loop client: a new request only once the previous one has a definite outcome. */
  async worker(generator: PairGenerator, endAtMs: number): Promise<void> {
    const session = this.client.newSession();
    let pending: PendingTransfer | undefined;
    while (Date.now() < endAtMs) {
      pending ??= {
        ...generator.next(),
        amount: 1 + Math.floor(Math.random() * AMOUNT_MAX),
        requestId: session.nextRequestId(),
        session,
        everUnknown: false,
      };
      if (await this.attempt(pending, this.settings.callTimeoutMs)) pending = undefined;
    }
    if (pending !== undefined) this.unresolved.push(pending);
  }

  async killer(endAtMs: number): Promise<void> {
    for (let tick = 1; ; tick += 1) {
      const nextAtMs = this.startedAtMs + tick * this.settings.intervalMs;
      if (nextAtMs >= endAtMs) return;
      await sleep(nextAtMs - Date.now());
      if ((await this.faultReplica()) === null) return;
      if (this.settings.nats && tick % 2 === 1) await this.faultNats();
    }
  }

  private record(event: FaultEvent, emitNow = true): void {
    this.events.push(event);
    if (emitNow) this.emit(event);
  }

  /** A fresh view to choose the victim from (and to know the ballot it led with); the tracker's if none. */
  private async currentView(): Promise<ClusterView | undefined> {
    const view = await this.client.clusterStatus(FAILOVER_POLL_TIMEOUT_MS).catch(() => undefined);
    return view?.shards.some((shard) => shard.leader !== null) ? view : this.tracker.latest;
  }

  /** Kills one replica; null when the cluster is gone. */
  private async faultReplica(): Promise<null | undefined> {
    const view = await this.currentView();
    const atMs = Date.now();
    const atS = (atMs - this.startedAtMs) / 1000;
    const victim = await this.faulter.replica(view, this.settings.target).catch((err: Error) => {
      this.record({ target: 'failed', atS, action: this.faulter.action, message: err.message });
      return undefined;
    });
    if (victim === null) return null;
    if (victim === undefined) return undefined;
    this.faults.replicaKills += 1;
    const leaderView = view?.shards[victim.shard]?.leader ?? null;
    const leader = victim.leader || leaderView?.ordinal === victim.ordinal;
    const fault: ReplicaFault = {
      atMs,
      atS,
      action: this.faulter.action,
      label: `${this.faulter.verb} ${victim.label}`,
      shard: victim.shard,
      replica: victim.ordinal,
      leader,
      detail: victim.detail,
      ...(leader && leaderView?.ordinal === victim.ordinal ? { oldBallot: leaderView.ballot } : {}),
    };
    const event: FaultEvent = { target: 'replica', ...fault };
    this.record(event, !leader);
    if (!leader) return undefined;
    // The same object: commits matched later (noteCommit) and the watch fill it in.
    this.recoveries.push(event);
    this.watches.push(this.watchFailover(event).then(() => this.emit(event)));
    return undefined;
  }

  private async faultNats(): Promise<void> {
    const atS = (Date.now() - this.startedAtMs) / 1000;
    const detail = await this.faulter.nats().catch(() => undefined);
    if (detail === undefined) return;
    this.faults.natsKills += 1;
    this.record({ target: 'nats-server', atS, action: this.faulter.action, detail });
  }

  /** Asks ClusterStatus until the shard of a killed leader has a new one, or FAILOVER_WATCH_MS passed. */
  private async watchFailover(fault: ReplicaFault): Promise<void> {
    const deadlineAtMs = fault.atMs + FAILOVER_WATCH_MS;
    while (Date.now() < deadlineAtMs) {
      const view = await this.client.clusterStatus(FAILOVER_POLL_TIMEOUT_MS).catch(() => undefined);
      const leader = view?.shards[fault.shard]?.leader ?? null;
      if (isNewLeader(fault, leader)) {
        fault.failoverMs = Date.now() - fault.atMs;
        fault.newLeader = { replica: leader.ordinal, ballot: leader.ballot };
        return;
      }
      await sleep(FAILOVER_POLL_MS);
    }
    fault.newLeader = null;
    fault.failoverMs = null;
  }

  /** Retries every outcome-unknown transfer with its own id until it has a definite answer. */
  async resolve(deadlineAtMs: number): Promise<void> {
    while (this.unresolved.length > 0 && Date.now() < deadlineAtMs) {
      const pending = this.unresolved[0]!;
      if (await this.attempt(pending, Math.min(CALL_DEADLINE_MS * 2, Math.max(1, deadlineAtMs - Date.now()))))
        this.unresolved.shift();
      this.resolvedRetries += 1;
    }
    for (const pending of this.unresolved) this.ledger.record({ ...pending, outcome: 'UNKNOWN' });
  }
}

export interface Resolution {
  /** Transfers whose outcome was unknown at least once (then retried with the same id). */
  outcomeUnknown: number;
  /** Of those, still pending when the workload stopped and resolved afterwards (or not). */
  pendingAtEnd: number;
}

export interface RecoverySummary {
  /** Leader faults whose shard committed a new transfer afterwards, and those that did not (in the run). */
  measured: number;
  unmeasured: number;
  p50Ms: number | null;
  maxMs: number | null;
  samplesMs: number[];
}

/** Leader fault to the shard's next new committed transfer, over the run's leader faults. */
export function recoverySummary(recoveries: readonly Recovery[]): RecoverySummary {
  return durationSummary(
    recoveries.flatMap((r) => (r.recoveredMs === undefined ? [] : [r.recoveredMs])),
    recoveries.length,
  );
}

/** Leader fault to the new leader in ClusterStatus, over the run's leader faults. */
export function failoverSummary(faults: readonly Pick<ReplicaFault, 'failoverMs'>[]): RecoverySummary {
  return durationSummary(
    faults.flatMap((f) => (typeof f.failoverMs === 'number' ? [f.failoverMs] : [])),
    faults.length,
  );
}

function durationSummary(samples: number[], total: number): RecoverySummary {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    measured: samples.length,
    unmeasured: total - samples.length,
    p50Ms: sorted.length === 0 ? null : sorted[Math.ceil(sorted.length / 2) - 1]!,
    maxMs: sorted.length === 0 ? null : sorted[sorted.length - 1]!,
    samplesMs: samples,
  };
}

export function chaosJson(
  verdict: BankVerdict,
  faults: Faults,
  settings: ChaosSettings,
  stats: RunStats,
  elapsedMs: number,
  resolution: Resolution,
  recovery?: RecoverySummary,
  failover?: RecoverySummary,
): Record<string, unknown> {
  return {
    type: 'verdict',
    ok: verdict.ok,
    durationS: Math.round(elapsedMs) / 1000,
    target: settings.target,
    faults,
    resolution,
    ...(failover ? { failover } : {}),
    ...(recovery ? { leaderRecovery: recovery } : {}),
    transfers: stats.transfers,
    outcomes: { ...stats.outcomes },
    checks: verdict.checks,
    counts: verdict.counts,
  };
}

export function chaosText(
  verdict: BankVerdict,
  faults: Faults,
  resolution: Resolution,
  recovery?: RecoverySummary,
  failover?: RecoverySummary,
): string {
  const lines = Object.entries(verdict.checks).map(
    ([name, check]) => `${check.ok ? 'ok  ' : 'FAIL'} ${name}: ${check.detail}`,
  );
  const counts = verdict.counts;
  lines.push(`faults: ${faults.replicaKills} replica kills, ${faults.natsKills} nats-server kills`);
  if (failover && failover.measured + failover.unmeasured > 0) {
    lines.push(
      `leader fault to a new leader in ClusterStatus: p50 ${failover.p50Ms ?? '-'} ms, max ${failover.maxMs ?? '-'} ms over ${failover.measured} faults (${failover.unmeasured} without a new leader within ${FAILOVER_WATCH_MS / 1000} s)`,
    );
  }
  if (recovery && recovery.measured + recovery.unmeasured > 0) {
    lines.push(
      `leader fault to the shard's next new committed transfer: p50 ${recovery.p50Ms ?? '-'} ms, max ${recovery.maxMs ?? '-'} ms over ${recovery.measured} faults (${recovery.unmeasured} not followed by one before the run ended)`,
    );
  }
  lines.push(
    `outcome unknown at some point: ${resolution.outcomeUnknown} transfers (${resolution.pendingAtEnd} still pending when the workload stopped), each retried with its own id`,
  );
  lines.push(
    `checked ${counts.items} items, ${counts.committed} committed transfers (${counts.movedAmount} moved), ${counts.insufficientFunds} insufficient funds, ${counts.notApplied} not applied, ${counts.replicasCompared} replicas compared`,
  );
  lines.push(verdict.ok ? 'PASS: every invariant held' : 'FAIL: an invariant was violated');
  return lines.join('\n');
}

export async function chaosCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(argv, CHAOS_OPTIONS, false);
  if (values.help) {
    io.out(CHAOS_HELP);
    return EXIT.ok;
  }
  if (values.nats)
    warn(
      io,
      'chaos',
      '--nats is deprecated (it reads like the NATS URL of the other commands): use --kill-nats',
      values.json,
    );
  const settings = parseSettings(values);
  const log = (line: string) => {
    if (!values.json) io.err(line);
  };
  if (values.kubernetes) {
    if (settings.nats)
      throw new UsageError('--kill-nats: not supported with --kubernetes yet (delete the NATS pod yourself)');
    let kube: KubernetesTarget;
    try {
      kube = await kubernetesTarget(values);
    } catch (err) {
      if (err instanceof KubeApiError) throw new UsageError(`--kubernetes: ${err.message}`);
      throw err;
    }
    log(
      `BankCluster ${kube.namespace}/${kube.cluster}: ${kube.options.topology.shards} shards x ${kube.options.topology.replicasPerShard} replicas`,
    );
    const tls = tlsFromFlags(values);
    const client = await ShardbankClient.connect({
      ...kube.options,
      ...(tls ? { tls } : {}),
      ...(values['nats-url'] ? { natsUrl: values['nats-url'] } : {}),
      ...natsSecurityFromValues(values),
      pidOf: undefined,
    });
    try {
      return await runChaos(client, settings, kube.faulter, io, log, values.json, values.report);
    } finally {
      await client.close();
    }
  }
  for (const k of ['cluster', 'namespace', 'kubeconfig', 'nats-url', 'nats-ca', 'nats-creds'] as const) {
    if (values[k] !== undefined) throw new UsageError(`--${k}: only with --kubernetes`);
  }
  if (values.endpoints !== undefined)
    throw new UsageError(
      'chaos kills local processes: it runs against a local cluster (--state-dir), not --endpoints (or use --kubernetes)',
    );
  const target = await resolveTarget(values, true);
  const book = target.book!;
  if (settings.nats && !book.natsManaged)
    throw new UsageError(
      '--kill-nats: this cluster uses an external NATS (up --nats-url URL), which chaos does not kill',
    );
  const client = await ShardbankClient.connect({ ...target.options, pidOf: undefined });
  try {
    return await runChaos(client, settings, localFaulter(target.stateDir!), io, log, values.json, values.report);
  } finally {
    await client.close();
  }
}

async function runChaos(
  client: ShardbankClient,
  settings: ChaosSettings,
  faulter: Faulter,
  io: CliIo,
  log: (line: string) => void,
  json: boolean,
  report: string | undefined,
): Promise<number> {
  log('waiting for a quiet cluster (a leader per shard, nothing in flight)');
  if ((await waitQuiescent(client, Date.now() + settings.settleMs)) === undefined) {
    throw new CliError(
      'the cluster did not become quiet (leader per shard, all replicas up, nothing in flight) before the run; not starting',
      EXIT.failure,
    );
  }
  const startBalances = await readAllBalances(client);
  const startedAtMs = Date.now();
  const run = new ChaosRun(client, settings, faulter, startedAtMs, (event) =>
    io.out(json ? JSON.stringify(faultJson(event)) : faultText(event)),
  );
  run.tracker.start();
  const endAtMs = startedAtMs + settings.durationMs;
  log(
    `running ${settings.clients} clients for ${settings.durationMs / 1000} s, ${faulter.verb === 'delete pod' ? 'deleting the pod of' : 'killing'} ${settings.target === 'leader' ? 'the leader of a random shard' : 'a random replica'} every ${settings.intervalMs / 1000} s${settings.nats ? ' and nats-server every other time' : ''}`,
  );
  const generator = new PairGenerator({
    topology: client.topology,
    crossShardRatio: settings.crossShardRatio,
    zipfExponent: 0,
  });
  await Promise.all([
    run.killer(endAtMs),
    ...Array.from({ length: settings.clients }, () => run.worker(generator, endAtMs)),
  ]);
  const workloadMs = Date.now() - startedAtMs;
  await Promise.all(run.watches);
  const pendingAtEnd = run.unresolved.length;
  log(`workload done; resolving ${pendingAtEnd} transfers with unknown outcome`);
  await run.resolve(Date.now() + settings.settleMs);
  log('waiting until no transaction is in flight');
  const quiet = await waitQuiescent(client, Date.now() + settings.settleMs);
  run.tracker.stop();
  const finalBalances = await readAllBalances(client);
  log('comparing replicas');
  const replicaReads: ShardReplicaReads[] = [];
  for (let shard = 0; shard < client.topology.shards; shard += 1)
    replicaReads.push(await readShardReplicas(client, shard, Date.now() + settings.settleMs));
  const verdict = checkBank({
    initialTotal: initialClusterTotal(client.topology),
    startBalances,
    finalBalances,
    ledger: run.ledger,
    replicaReads,
  });
  if (quiet === undefined) {
    verdict.ok = false;
    verdict.checks.outcomesResolved.ok = false;
    verdict.checks.outcomesResolved.detail +=
      '; the cluster never became quiet (in-flight transactions or replicas down) within the settle timeout';
  }
  const resolution = { outcomeUnknown: run.outcomeUnknownSeen, pendingAtEnd };
  const recovery = recoverySummary(run.recoveries);
  const failover = failoverSummary(run.recoveries);
  io.out(
    json
      ? JSON.stringify(chaosJson(verdict, run.faults, settings, run.stats, workloadMs, resolution, recovery, failover))
      : chaosText(verdict, run.faults, resolution, recovery, failover),
  );
  if (report) writeChaosReport(report, run, verdict, workloadMs);
  return verdict.ok ? EXIT.ok : EXIT.failure;
}

/** A fault as the report shows it. */
export function reportFault(event: FaultEvent): ReportFault {
  switch (event.target) {
    case 'nats-server':
      return { atS: event.atS, kind: 'nats-kill', label: `${event.action} nats-server (${event.detail})` };
    case 'failed':
      return { atS: event.atS, kind: 'kill', label: `${event.action} failed: ${event.message}` };
    case 'replica': {
      const label = `${event.action} shard ${event.shard} replica ${event.replica} (${event.leader ? 'leader, ' : ''}${event.detail})`;
      if (!event.leader) return { atS: event.atS, kind: 'kill', label };
      return {
        atS: event.atS,
        kind: 'kill',
        label,
        ...(event.newLeader
          ? { newLeader: `replica ${event.newLeader.replica} (ballot ${event.newLeader.ballot.join('.')})` }
          : {}),
        failoverS: typeof event.failoverMs === 'number' ? event.failoverMs / 1000 : null,
        recoveryS: event.recoveredMs === undefined ? null : event.recoveredMs / 1000,
      };
    }
  }
}

function writeChaosReport(path: string, run: ChaosRun, verdict: BankVerdict, workloadMs: number): void {
  const markers: ReportMarker[] = run.tracker.markers;
  const recovery = recoverySummary(run.recoveries);
  const failover = failoverSummary(run.recoveries);
  const summaryMs = (s: RecoverySummary) =>
    s.measured === 0 ? '-' : `${s.p50Ms} ms / ${s.maxMs} ms over ${s.measured} faults`;
  writeFileSync(
    path,
    renderHtmlReport({
      title: `shardbank chaos: ${run.settings.target} ${run.faulter.verb === 'delete pod' ? 'pod deletions' : 'kills'} every ${run.settings.intervalMs / 1000} s${run.settings.nats ? ' + nats-server' : ''}`,
      generatedAt: new Date().toISOString(),
      series: run.stats.reportSeries(workloadMs),
      markers,
      faults: run.events.map(reportFault),
      summary: [
        ['verdict', verdict.ok ? 'PASS' : 'FAIL'],
        ['replica kills', run.faults.replicaKills],
        ['nats-server kills', run.faults.natsKills],
        ['leader fault to a new leader (p50 / max)', summaryMs(failover)],
        ['leader fault to the next new commit on its shard (p50 / max)', summaryMs(recovery)],
        ['transfers with an unknown outcome, retried', run.outcomeUnknownSeen],
        ['transfers (attempts)', run.stats.transfers],
        ['committed', verdict.counts.committed],
        ['amount moved', verdict.counts.movedAmount],
        ...Object.entries(verdict.checks).map(
          ([name, check]) => [name, `${check.ok ? 'ok' : 'FAIL'}: ${check.detail}`] as [string, string],
        ),
      ],
      verdict: { ok: verdict.ok, text: verdict.ok ? 'every invariant held' : 'an invariant was violated' },
      details: JSON.stringify(verdict, null, 2),
    }),
  );
}
