// The simulated file system under the real DurableLog: its fault model gives the answers the
// simulator's checker expects (a torn unacknowledged tail is truncated, a flipped bit in
// acknowledged data is refused with file and offset, an I/O error fails the log, a crashed
// process's writes never land).
import { describe, expect, it } from 'vitest';
import {
  openDurableLog,
  CorruptLogError,
  DurableLogFailedError,
  type DurableLog,
} from '../../node/storage/durable-log.js';
import { Prng } from './prng.js';
import { NO_DISK_FAULTS, SimFileSystem, type SimDiskFaults } from './sim-file-system.js';

const DIR = '/data/log';
const ballot = (round: number) => ({ round, ordinal: 0 });
const entry = (slot: number) => ({ slot, ballot: ballot(1), value: Buffer.alloc(200, slot) });

/** A disk and a clock; run() completes the disk's operations in time order until `promise` settles. */
function harness(faults: Partial<SimDiskFaults> = {}, seed = 1) {
  let nowMs = 0;
  const fs = new SimFileSystem(
    new Prng(seed),
    () => nowMs,
    { ...NO_DISK_FAULTS, ...faults },
    () => undefined,
  );
  async function run<T>(promise: Promise<T>): Promise<T> {
    let settled = false;
    const watched = promise.finally(() => (settled = true));
    watched.catch(() => undefined);
    for (let i = 0; i < 100_000 && !settled; i += 1) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (settled) break;
      if (fs.nextDueMs === Number.POSITIVE_INFINITY) continue;
      nowMs = Math.max(nowMs, fs.nextDueMs);
      fs.runNextDue();
    }
    return watched;
  }
  const open = () => run(openDurableLog(DIR, { fileSystem: fs.forProcess(), segmentBytesMax: 64 * 1024 }));
  return { fs, run, open };
}

async function writeSlots(
  run: <T>(p: Promise<T>) => Promise<T>,
  log: DurableLog,
  from: number,
  to: number,
): Promise<void> {
  for (let slot = from; slot <= to; slot += 1) {
    log.append(slot === from ? { promised: ballot(1) } : undefined, [entry(slot)]);
    await run(log.sync());
  }
}

describe('SimFileSystem under the production DurableLog', () => {
  it('a crash during a write loses only that unacknowledged batch: recovery truncates or drops it and keeps every acknowledged slot', async () => {
    let truncations = 0;
    for (let seed = 1; seed <= 20; seed += 1) {
      const { fs, run, open } = harness({}, seed);
      const { log } = await open();
      await writeSlots(run, log, 1, 5);
      // A batch of about 2 KB: it spans several sectors, so a crash tears it.
      log.append(undefined, [6, 7, 8, 9, 10, 11, 12, 13, 14].map(entry));
      void log.sync().catch(() => undefined);
      // Let the flush start its write, then cut the power while it is in flight.
      for (let i = 0; i < 3; i += 1) await new Promise<void>((resolve) => setImmediate(resolve));
      fs.crash();
      const { recovered } = await open();
      expect(recovered.entries.map((e) => e.slot).slice(0, 5)).toEqual([1, 2, 3, 4, 5]);
      expect(recovered.hardState?.promised.round).toBe(1);
      truncations += recovered.truncated.length;
    }
    expect(truncations).toBeGreaterThan(0);
  });

  it('a flipped bit in an acknowledged record is refused with the file and offset', async () => {
    const { fs, run, open } = harness();
    const { log } = await open();
    await writeSlots(run, log, 1, 5);
    fs.corruptionAllowed = () => true;
    expect(fs.flipBit()).toBe(true);
    const { path, offset } = fs.corruptions[0]!;
    fs.crash();
    const error = await open().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CorruptLogError);
    expect((error as CorruptLogError).file).toBe(path);
    expect(Math.abs((error as CorruptLogError).offset - offset)).toBeLessThan(300);
  });

  it('a misdirected write that lands on a frame boundary over acknowledged records is refused with the file and offset', async () => {
    // The shape of swarm seed 709649: a batch misdirected one sector back lands exactly where an
    // acknowledged batch (the promise and an entry) began and covers it up to the end of the
    // records; the place it belonged keeps its zeros. Each of its frames is intact, so with
    // checksums over the frame alone the log read as valid and the promise silently went back.
    const { fs, run } = harness();
    const open = () =>
      run(openDurableLog(DIR, { fileSystem: fs.forProcess(), segmentBytesMax: 4096, preallocateSegments: true }));
    const { log } = await open();
    const at = (round: number, slot: number, valueBytes: number) => ({
      slot,
      ballot: ballot(round),
      value: Buffer.alloc(valueBytes, slot),
    });
    // Segment header (37 bytes), then a batch of 150 bytes at 37 and one of exactly 512 at 187.
    log.append({ promised: ballot(1) }, [at(1, 1, 100)]);
    await run(log.sync());
    log.append({ promised: ballot(2) }, [at(2, 2, 462)]);
    await run(log.sync());
    expect(log.stats().bytesWritten).toBe(37 + 150 + 512);
    // The next batch belongs at 699 (in the second sector: only a one-sector shift is possible).
    fs.faults.misdirectedWriteProbability = 1;
    fs.corruptionAllowed = () => true;
    log.append(undefined, [at(2, 3, 600)]);
    await run(log.sync());
    expect(fs.corruptions).toEqual([{ kind: 'misdirected-write', path: `${DIR}/log-000001.seg`, offset: 187 }]);
    fs.crash();
    const outcome = await open().then(
      ({ recovered }) => recovered,
      (error: unknown) => error,
    );
    expect(outcome).toBeInstanceOf(CorruptLogError);
    expect(outcome).toMatchObject({ file: `${DIR}/log-000001.seg`, offset: 187 });
  });

  it('an I/O error fails the log: the sync rejects and every later append throws (the replica must fail-stop)', async () => {
    const { fs, run, open } = harness();
    const { log } = await open();
    await writeSlots(run, log, 1, 2);
    fs.faults.ioErrorProbability = 1;
    log.append(undefined, [entry(3)]);
    await expect(run(log.sync())).rejects.toThrow(DurableLogFailedError);
    expect(() => log.append(undefined, [entry(4)])).toThrow(DurableLogFailedError);
    // The failed batch never reached the media: after the power cycle only slots 1-2 exist.
    fs.faults.ioErrorProbability = 0;
    fs.crash();
    const { recovered } = await open();
    expect(recovered.entries.map((e) => e.slot)).toEqual([1, 2]);
  });

  it("a crashed process's pending writes never reach the disk of its successor", async () => {
    const { fs, run, open } = harness();
    const { log } = await open();
    await writeSlots(run, log, 1, 3);
    fs.crash();
    // The dead process's log object goes on trying: nothing of it may land.
    expect(() => log.append(undefined, [entry(4)])).not.toThrow();
    void log.sync().catch(() => undefined);
    for (let i = 0; i < 5; i += 1) await new Promise<void>((resolve) => setImmediate(resolve));
    const { recovered } = await open();
    expect(recovered.entries.map((e) => e.slot)).toEqual([1, 2, 3]);
  });
});
