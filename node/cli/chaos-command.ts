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
import type { ClusterView } from '../client/status-view.js';
import { readAddressBook, type AddressBook } from '../local/address-book.js';
import { parseCommandArgs, parseDurationMs, parseIntegerOption, parseNumberOption, resolveTarget } from './args.js';
import { KubeApiError } from './kube-api.js';
import { kubernetesTarget, type KubernetesTarget } from './kube-chaos.js';
import { CliError, EXIT, UsageError, warn, type CliIo } from './cli-io.js';
import { renderHtmlReport, type ReportMarker } from './html-report.js';
import { LeaderTracker } from './leader-tracker.js';
import { RunStats } from './run-stats.js';
import { PairGenerator } from './workload.js';

export const CHAOS_CLIENTS_MAX = 64;
export const CALL_DEADLINE_MS = 8_000;
export const AMOUNT_MAX = 3;

export const CHAOS_HELP = `Usage: shardbank chaos [--duration 60s] [--interval 5s] [--target leader|random] [--kill-nats] [--json] [--report FILE.html]

Runs a workload against the local cluster while SIGKILLing, at every interval, the leader
of a random shard (or a random replica) and, with --kill-nats, nats-server every other
interval; the supervisor restarts them. Then it resolves every transfer whose outcome was
unknown (retrying with the same request id), waits until no transaction is in flight and
the replicas have caught up, and checks: total money conserved, no negative balance,
every COMMITTED transfer applied exactly once, replicas of each shard agree.
Exit code 0 only when every invariant held.

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
  --kubeconfig FILE     with --kubernetes: credentials (default $KUBECONFIG, else the pod's ServiceAccount)`;

const CHAOS_OPTIONS = {
  'state-dir': { type: 'string' },
  endpoints: { type: 'string' },
  kubernetes: { type: 'boolean', default: false },
  cluster: { type: 'string' },
  namespace: { type: 'string' },
  kubeconfig: { type: 'string' },
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

/** What a fault hit: a label for markers and the shard of the replica. */
export interface Victim {
  label: string;
  shard: number;
  /** It led its shard when it was chosen. */
  leader: boolean;
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
  /** Kills one replica; null: the cluster is gone (stop), undefined: nothing to kill now. */
  replica(view: ClusterView | undefined, target: 'leader' | 'random'): Promise<Victim | null | undefined>;
  nats(): Promise<string | undefined>;
}

function localFaulter(stateDir: string): Faulter {
  return {
    verb: 'SIGKILL replica',
    replica: async (view, target) => {
      const book = readAddressBook(stateDir);
      return book === undefined ? null : killReplica(book, view, target);
    },
    nats: async () => {
      const book = readAddressBook(stateDir);
      if (book === undefined || book.natsPid === null || !kill(book.natsPid)) return undefined;
      return `SIGKILL nats-server (pid ${book.natsPid})`;
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
    leader,
  };
}

class ChaosRun {
  readonly ledger = new ExpectationLedger();
  readonly unresolved: PendingTransfer[] = [];
  readonly faults: Faults = { replicaKills: 0, natsKills: 0 };
  /** Leader faults, oldest first; those not yet recovered are matched by later commits. */
  readonly recoveries: Recovery[] = [];
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
      const atMs = Date.now();
      const atS = (atMs - this.startedAtMs) / 1000;
      const victim = await this.faulter.replica(this.tracker.latest, this.settings.target).catch((err: Error) => {
        this.tracker.addMarker({ atS, kind: 'kill', label: `${this.faulter.verb} failed: ${err.message}` });
        return undefined;
      });
      if (victim === null) return;
      if (victim) {
        this.faults.replicaKills += 1;
        this.tracker.addMarker({ atS, kind: 'kill', label: `${this.faulter.verb} ${victim.label}` });
        if (victim.leader) this.recoveries.push({ label: victim.label, shard: victim.shard, atMs });
      }
      const nats = this.settings.nats && tick % 2 === 1 ? await this.faulter.nats().catch(() => undefined) : undefined;
      if (nats) {
        this.faults.natsKills += 1;
        this.tracker.addMarker({ atS, kind: 'nats-kill', label: nats });
      }
    }
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
  const samples = recoveries.flatMap((r) => (r.recoveredMs === undefined ? [] : [r.recoveredMs]));
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    measured: samples.length,
    unmeasured: recoveries.length - samples.length,
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
): Record<string, unknown> {
  return {
    ok: verdict.ok,
    durationS: Math.round(elapsedMs) / 1000,
    target: settings.target,
    faults,
    resolution,
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
): string {
  const lines = Object.entries(verdict.checks).map(
    ([name, check]) => `${check.ok ? 'ok  ' : 'FAIL'} ${name}: ${check.detail}`,
  );
  const counts = verdict.counts;
  lines.push(`faults: ${faults.replicaKills} replica kills, ${faults.natsKills} nats-server kills`);
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
    const client = await ShardbankClient.connect({ ...kube.options, pidOf: undefined });
    try {
      return await runChaos(client, settings, kube.faulter, io, log, values.json, values.report);
    } finally {
      await client.close();
    }
  }
  for (const k of ['cluster', 'namespace', 'kubeconfig'] as const) {
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
  const run = new ChaosRun(client, settings, faulter, startedAtMs);
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
  io.out(
    json
      ? JSON.stringify(chaosJson(verdict, run.faults, settings, run.stats, workloadMs, resolution, recovery))
      : chaosText(verdict, run.faults, resolution, recovery),
  );
  if (report) writeChaosReport(report, run, verdict, workloadMs);
  return verdict.ok ? EXIT.ok : EXIT.failure;
}

function writeChaosReport(path: string, run: ChaosRun, verdict: BankVerdict, workloadMs: number): void {
  const markers: ReportMarker[] = run.tracker.markers;
  const recovery = recoverySummary(run.recoveries);
  writeFileSync(
    path,
    renderHtmlReport({
      title: `shardbank chaos: ${run.settings.target} ${run.faulter.verb === 'delete pod' ? 'pod deletions' : 'kills'} every ${run.settings.intervalMs / 1000} s${run.settings.nats ? ' + nats-server' : ''}`,
      generatedAt: new Date().toISOString(),
      series: run.stats
        .series(Math.ceil(workloadMs / 1000))
        .map((point) => ({ second: point.second, transfersPerS: point.transfers, p99Ms: point.p99Ms })),
      markers,
      summary: [
        ['verdict', verdict.ok ? 'PASS' : 'FAIL'],
        ['replica kills', run.faults.replicaKills],
        ['nats-server kills', run.faults.natsKills],
        [
          'leader fault to the next new commit on its shard (p50 / max)',
          recovery.measured === 0
            ? '-'
            : `${recovery.p50Ms} ms / ${recovery.maxMs} ms over ${recovery.measured} faults`,
        ],
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
