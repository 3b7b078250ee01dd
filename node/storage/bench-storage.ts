// Storage micro-benchmark: prints numbers, asserts nothing.
//
//   node dist/node/storage/bench-storage.js [--duration-ms 2000] [--dir /path/on/the/disk/to/test]
//
// Rows:
// - "durable log": W concurrent writers, each appends one ~100-byte entry and awaits sync();
//   concurrent syncs share one write + fdatasync (group commit).
// - "write+fdatasync per entry": the baseline without group commit; W concurrent writers, each
//   writes its own record to the same O_APPEND file and calls fdatasync itself.
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { openDurableLog } from './durable-log.js';
import { encodeEntry, sealBatch } from './record-codec.js';

const valueBytes = 100;
const writerCounts = [1, 8, 64] as const;
/** Latency samples kept per row; enough for stable percentiles, bounded memory. */
const latencySamplesMax = 200_000;

interface Row {
  system: string;
  writers: number;
  entries: number;
  fsyncs: number;
  elapsedMs: number;
  latenciesMs: number[];
}

function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))]!;
}

function recordLatency(row: Row, startedMs: number): void {
  if (row.latenciesMs.length < latencySamplesMax) row.latenciesMs.push(performance.now() - startedMs);
}

async function runWriters(writers: number, durationMs: number, step: () => Promise<void>, row: Row): Promise<void> {
  const deadlineMs = performance.now() + durationMs;
  const startMs = performance.now();
  const writer = async (): Promise<void> => {
    while (performance.now() < deadlineMs) {
      const stepStartMs = performance.now();
      await step();
      recordLatency(row, stepStartMs);
      row.entries += 1;
    }
  };
  await Promise.all(Array.from({ length: writers }, writer));
  row.elapsedMs = performance.now() - startMs;
}

async function benchDurableLog(baseDir: string, writers: number, durationMs: number): Promise<Row> {
  const dir = await mkdtemp(join(baseDir, 'bench-log-'));
  const { log } = await openDurableLog(dir);
  const row: Row = {
    system: 'durable log (group commit)',
    writers,
    entries: 0,
    fsyncs: 0,
    elapsedMs: 0,
    latenciesMs: [],
  };
  const value = Buffer.alloc(valueBytes, 0x61);
  let nextSlot = 1;
  const syncsBefore = log.stats().syncs;
  await runWriters(
    writers,
    durationMs,
    async () => {
      log.append(undefined, [{ slot: nextSlot++, ballot: { round: 1, ordinal: 0 }, value }]);
      await log.sync();
    },
    row,
  );
  row.fsyncs = log.stats().syncs - syncsBefore;
  await log.close();
  await rm(dir, { recursive: true, force: true });
  return row;
}

async function benchFsyncPerEntry(baseDir: string, writers: number, durationMs: number): Promise<Row> {
  const dir = await mkdtemp(join(baseDir, 'bench-baseline-'));
  const handle = await open(join(dir, 'baseline.seg'), 'a');
  const row: Row = {
    system: 'write+fdatasync per entry',
    writers,
    entries: 0,
    fsyncs: 0,
    elapsedMs: 0,
    latenciesMs: [],
  };
  const record = encodeEntry({ slot: 1, ballot: { round: 1, ordinal: 0 }, value: Buffer.alloc(valueBytes, 0x61) });
  sealBatch(record, 1, 0);
  await runWriters(
    writers,
    durationMs,
    async () => {
      await handle.write(record, 0, record.length, null);
      await handle.datasync();
      row.fsyncs += 1;
    },
    row,
  );
  await handle.close();
  await rm(dir, { recursive: true, force: true });
  return row;
}

function formatRow(row: Row): string {
  const seconds = row.elapsedMs / 1000;
  const sorted = [...row.latenciesMs].sort((left, right) => left - right);
  const cells = [
    row.system.padEnd(27),
    String(row.writers).padStart(7),
    Math.round(row.entries / seconds)
      .toString()
      .padStart(10),
    Math.round(row.fsyncs / seconds)
      .toString()
      .padStart(9),
    (row.entries / Math.max(1, row.fsyncs)).toFixed(1).padStart(13),
    percentile(sorted, 0.5).toFixed(2).padStart(8),
    percentile(sorted, 0.99).toFixed(2).padStart(8),
  ];
  return cells.join(' ');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { 'duration-ms': { type: 'string', default: '2000' }, dir: { type: 'string', default: tmpdir() } },
  });
  const durationMs = Number(values['duration-ms']);
  const baseDir = values.dir!;
  console.log(
    `storage bench: ${valueBytes}-byte entries, ${durationMs} ms per row, files under ${baseDir}, node ${process.version}`,
  );
  console.log(
    [
      'system'.padEnd(27),
      'writers'.padStart(7),
      'entries/s'.padStart(10),
      'fsyncs/s'.padStart(9),
      'entries/fsync'.padStart(13),
      'p50 ms'.padStart(8),
      'p99 ms'.padStart(8),
    ].join(' '),
  );
  for (const writers of writerCounts) {
    console.log(formatRow(await benchDurableLog(baseDir, writers, durationMs)));
    console.log(formatRow(await benchFsyncPerEntry(baseDir, writers, durationMs)));
  }
}

await main();
