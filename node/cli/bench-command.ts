// `shardbank bench`: closed-loop load (each client sends its next request when the last
// one answered), a progress bar on a terminal, and a report as text, JSON or HTML.
import { writeFileSync } from 'node:fs';
import {
  BATCH_ENTRIES_MAX,
  ShardbankClient,
  type ClientSession,
  type TransferRequestInput,
  type TransferResult,
} from '../client/bank-client.js';
import {
  parseCommandArgs,
  parseDurationMs,
  parseIntegerOption,
  parseNumberOption,
  resolveTarget,
  TARGET_HELP,
  TARGET_OPTIONS,
} from './args.js';
import { EXIT, reportError, UnavailableError, UsageError, type CliIo } from './cli-io.js';
import { renderHtmlReport } from './html-report.js';
import { LeaderTracker } from './leader-tracker.js';
import { RunStats } from './run-stats.js';
import { PairGenerator } from './workload.js';
import { TRACING, traceRole, traceStamp } from '../util/stage-trace.js';

export const BENCH_CLIENTS_MAX = 4096;
/** The client library's batch limit: 8190, TigerBeetle's batch size (bench:compare measures it next to 1000). */
export const BENCH_BATCH_MAX = BATCH_ENTRIES_MAX;
export const PROGRESS_INTERVAL_MS = 250;
export const RATE_WINDOW_MS = 1_000;

export const BENCH_HELP = `Usage: shardbank bench [--clients N] [--duration 10s] [--cross-shard-ratio R] [--zipf S] [--batch B] [--json] [--report FILE.html]

Closed-loop load: N clients each send a transfer (or a batch of B) as soon as the last one
answered, for the duration. Reference workload: uniform random pairs, amount 1, two in
three cross-shard. Exit code 0 once any transfer had a definite answer, 3 when none did and
all were UNKNOWN (the cluster could not be reached), 1 otherwise.

Options:
  --clients N              concurrent clients (default 16)
  --duration D             how long to run (default 10s)
  --cross-shard-ratio R    share of cross-shard transfers, 0..1 (default 0.67)
  --zipf S                 Zipf exponent for item choice; 0 = uniform (default 0)
  --batch B                transfers per batchTransfer (at most 8190); 1 = single Transfer (default 1)
  --amount N               amount per transfer (default 1)
  --timeout D              deadline per call, retries included (default 10s)
  --warmup D               run the same load for D first, unmeasured (default 0s): a fresh
                           process spends its first seconds compiling (JIT)
  --no-coalesce            one gRPC call per transfer (default: the client library sends
                           the transfers its clients start together in one call per shard)
  --no-stream              coalesced transfers go in BatchTransfer calls (default: over a
                           TransferStream to each shard's leader once it is found)
  --report FILE.html       write a self-contained HTML report
  --json                   print the result as JSON
${TARGET_HELP}`;

const BENCH_OPTIONS = {
  ...TARGET_OPTIONS,
  clients: { type: 'string' },
  duration: { type: 'string' },
  warmup: { type: 'string' },
  'cross-shard-ratio': { type: 'string' },
  zipf: { type: 'string' },
  batch: { type: 'string' },
  amount: { type: 'string' },
  timeout: { type: 'string' },
  report: { type: 'string' },
  'no-coalesce': { type: 'boolean' },
  'no-stream': { type: 'boolean' },
} as const;

export interface BenchSettings {
  clients: number;
  durationMs: number;
  warmupMs: number;
  crossShardRatio: number;
  zipf: number;
  batchSize: number;
  amount: number;
  timeoutMs: number;
}

export interface BenchResultJson {
  clients: number;
  durationS: number;
  crossShardRatio: number;
  batchSize: number;
  transfers: number;
  transfersPerS: number;
  latencyMs: { p50: number; p95: number; p99: number; max: number };
  outcomes: Record<string, number>;
}

export function parseBenchSettings(values: Record<string, string | boolean | undefined>): BenchSettings {
  const text = (key: string) => values[key] as string | undefined;
  return {
    clients: parseIntegerOption('clients', text('clients'), 16, 1, BENCH_CLIENTS_MAX),
    durationMs: parseDurationMs('duration', text('duration') ?? '10s'),
    warmupMs: parseDurationMs('warmup', text('warmup') ?? '0s', { allowZero: true }),
    crossShardRatio: parseNumberOption('cross-shard-ratio', text('cross-shard-ratio'), 0.67, 0, 1),
    zipf: parseNumberOption('zipf', text('zipf'), 0, 0, 10),
    batchSize: parseIntegerOption('batch', text('batch'), 1, 1, BENCH_BATCH_MAX),
    amount: parseIntegerOption('amount', text('amount'), 1, 1, 1_000_000_000),
    timeoutMs: parseDurationMs('timeout', text('timeout') ?? '10s'),
  };
}

export function benchJson(settings: BenchSettings, stats: RunStats, elapsedMs: number): BenchResultJson {
  const durationS = Math.round(elapsedMs) / 1000;
  return {
    clients: settings.clients,
    durationS,
    crossShardRatio: settings.crossShardRatio,
    batchSize: settings.batchSize,
    transfers: stats.transfers,
    transfersPerS: durationS > 0 ? Math.round((stats.transfers / durationS) * 10) / 10 : 0,
    latencyMs: stats.latencySummary(),
    outcomes: { ...stats.outcomes },
  };
}

export function benchText(result: BenchResultJson): string {
  const outcomes =
    Object.entries(result.outcomes)
      .map(([outcome, count]) => `${outcome} ${count}`)
      .join(', ') || 'none';
  return [
    `bench: ${result.clients} clients, ${result.durationS} s, cross-shard ratio ${result.crossShardRatio}, batch ${result.batchSize}`,
    `transfers   ${result.transfers} (${result.transfersPerS}/s)`,
    `latency ms  p50 ${result.latencyMs.p50}  p95 ${result.latencyMs.p95}  p99 ${result.latencyMs.p99}  max ${result.latencyMs.max}`,
    `outcomes    ${outcomes}`,
  ].join('\n');
}

/** The rate over the last second or so: the progress shows a stall as it happens. */
export class RateWindow {
  private readonly samples: { atMs: number; count: number }[] = [];
  constructor(private readonly windowMs = RATE_WINDOW_MS) {}
  /** Adds a sample (a running total at a time) and returns the rate over the window, per second. */
  add(atMs: number, count: number): number {
    this.samples.push({ atMs, count });
    while (this.samples.length > 2 && this.samples[1]!.atMs <= atMs - this.windowMs) this.samples.shift();
    const first = this.samples[0]!;
    return atMs > first.atMs ? Math.round(((count - first.count) / (atMs - first.atMs)) * 1000) : 0;
  }
}

export interface ProgressState {
  elapsedMs: number;
  totalMs: number;
  transfers: number;
  /** Finished without a definite answer so far. */
  failed: number;
  nowPerS: number;
}

function progressNumbers(state: ProgressState): string {
  const average = state.elapsedMs > 0 ? Math.round((state.transfers / state.elapsedMs) * 1000) : 0;
  return `${state.transfers} transfers  now ${state.nowPerS}/s  avg ${average}/s${state.failed > 0 ? `  ${state.failed} failed` : ''}`;
}

/** The terminal's progress bar (redrawn in place). */
export function progressBar(state: ProgressState, width = 30): string {
  const fraction = Math.min(1, state.elapsedMs / state.totalMs);
  const filled = Math.round(fraction * width);
  return `\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${Math.round(fraction * 100)}%  ${progressNumbers(state)}\u001b[K`;
}

/** The progress line on stderr when it is not a terminal (a log, CI). */
export function progressLine(state: ProgressState): string {
  return `bench: ${(state.elapsedMs / 1000).toFixed(1)}s of ${state.totalMs / 1000}s  ${progressNumbers(state)}`;
}

/** About five lines per run, at most one a second and at least one every 5 s. */
export function progressLineIntervalMs(durationMs: number): number {
  return Math.min(5_000, Math.max(1_000, Math.round(durationMs / 5)));
}

/** Every client sends at least one request, however short the duration. */
async function runClient(
  client: ShardbankClient,
  session: ClientSession,
  generator: PairGenerator,
  settings: BenchSettings,
  endAtMs: number,
  stats: RunStats,
): Promise<void> {
  do {
    const startedAtMs = performance.now();
    let results: TransferResult[];
    if (settings.batchSize === 1) {
      results = [
        await client.transfer(
          { ...generator.next(), amount: settings.amount },
          { session, deadlineMs: settings.timeoutMs },
        ),
      ];
    } else {
      const entries = new Array<TransferRequestInput>(settings.batchSize);
      for (let i = 0; i < entries.length; i += 1) {
        const { from, to } = generator.next();
        entries[i] = { from, to, amount: settings.amount };
      }
      results = await client.batchTransfer(entries, { session, deadlineMs: settings.timeoutMs });
    }
    const latencyMs = performance.now() - startedAtMs;
    const nowMs = Date.now();
    for (const result of results) stats.record(result.outcome, latencyMs, nowMs);
  } while (Date.now() < endAtMs);
}

export async function benchCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(argv, BENCH_OPTIONS, false);
  if (values.help) {
    io.out(BENCH_HELP);
    return EXIT.ok;
  }
  const settings = parseBenchSettings(values);
  traceRole('client');
  if (values.report !== undefined && !values.report.endsWith('.html'))
    throw new UsageError(`--report: expected a FILE.html, got ${JSON.stringify(values.report)}`);
  const target = await resolveTarget(values, true);
  const client = await ShardbankClient.connect({
    ...target.options,
    coalesce: values['no-coalesce'] !== true,
    stream: values['no-stream'] !== true,
  });
  const generator = new PairGenerator({
    topology: target.options.topology,
    crossShardRatio: settings.crossShardRatio,
    zipfExponent: settings.zipf,
  });
  if (settings.warmupMs > 0) {
    const warmupEndAtMs = Date.now() + settings.warmupMs;
    const discarded = new RunStats(Date.now());
    await Promise.all(
      Array.from({ length: settings.clients }, () =>
        runClient(client, client.newSession(), generator, settings, warmupEndAtMs, discarded),
      ),
    );
  }
  if (TRACING) traceStamp('client.measured');
  const startedAtMs = Date.now();
  const stats = new RunStats(startedAtMs);
  const tracker = new LeaderTracker(client, startedAtMs);
  if (values.report) tracker.start();
  const progress = startProgress(io, values.json, settings.durationMs, startedAtMs, stats);
  try {
    const endAtMs = startedAtMs + settings.durationMs;
    await Promise.all(
      Array.from({ length: settings.clients }, () =>
        runClient(client, client.newSession(), generator, settings, endAtMs, stats),
      ),
    );
    const elapsedMs = Date.now() - startedAtMs;
    progress.stop();
    const result = benchJson(settings, stats, elapsedMs);
    io.out(values.json ? JSON.stringify(result) : benchText(result));
    if (values.report) {
      writeFileSync(
        values.report,
        renderHtmlReport({
          title: `shardbank bench: ${settings.clients} clients, batch ${settings.batchSize}`,
          generatedAt: new Date().toISOString(),
          series: stats.reportSeries(elapsedMs),
          markers: tracker.markers,
          summary: benchSummaryRows(result, settings),
        }),
      );
      if (!values.json) io.out(`report written to ${values.report}`);
    }
    // 0 once any transfer had a definite answer; none at all and only UNKNOWN: unreachable.
    const definite = (result.outcomes.COMMITTED ?? 0) + (result.outcomes.INSUFFICIENT_FUNDS ?? 0);
    if (definite > 0) return EXIT.ok;
    const unknown = result.outcomes.UNKNOWN ?? 0;
    if (unknown === result.transfers) {
      reportError(
        io,
        'bench',
        new UnavailableError(`cannot reach the cluster: no transfer had a definite answer (${unknown} UNKNOWN)`),
        values.json,
      );
      return EXIT.unavailable;
    }
    return EXIT.failure;
  } finally {
    progress.stop();
    tracker.stop();
    await client.close();
  }
}

/**
 * Progress on stderr, never stdout: a bar redrawn in place on a terminal (with --json too);
 * otherwise a line now and then, but not with --json, whose stderr carries only JSON.
 */
function startProgress(
  io: CliIo,
  json: boolean,
  totalMs: number,
  startedAtMs: number,
  stats: RunStats,
): { stop(): void } {
  if (!io.stderrIsTTY && json) return { stop: () => undefined };
  const window = new RateWindow();
  const state = (): ProgressState => {
    const now = Date.now();
    const failed = stats.transfers - (stats.outcomes.COMMITTED ?? 0) - (stats.outcomes.INSUFFICIENT_FUNDS ?? 0);
    return {
      elapsedMs: now - startedAtMs,
      totalMs,
      transfers: stats.transfers,
      failed,
      nowPerS: window.add(now, stats.transfers),
    };
  };
  window.add(startedAtMs, 0);
  const tty = io.stderrIsTTY;
  const timer = setInterval(
    () => (tty ? io.progress(progressBar(state())) : io.err(progressLine(state()))),
    tty ? PROGRESS_INTERVAL_MS : progressLineIntervalMs(totalMs),
  );
  let stopped = false;
  return {
    stop: () => {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      if (tty) io.progress(`${progressBar(state())}\n`);
    },
  };
}

function benchSummaryRows(result: BenchResultJson, settings: BenchSettings): [string, string | number][] {
  return [
    ['clients', result.clients],
    ['duration', `${result.durationS} s`],
    ['cross-shard ratio', result.crossShardRatio],
    ['zipf exponent', settings.zipf],
    ['batch size', result.batchSize],
    ['transfers', result.transfers],
    ['throughput', `${result.transfersPerS} transfers/s`],
    [
      'latency p50 / p95 / p99 / max',
      `${result.latencyMs.p50} / ${result.latencyMs.p95} / ${result.latencyMs.p99} / ${result.latencyMs.max} ms`,
    ],
    [
      'outcomes',
      Object.entries(result.outcomes)
        .map(([k, v]) => `${k} ${v}`)
        .join(', '),
    ],
  ];
}
