// Recovery from torn tails (never acknowledged, truncated) and from damage to acknowledged
// data (CorruptLogError, never skipped). A torn tail is an incomplete final write: the file
// ends inside a record, or an aligned 512-byte sector of it is zeros (it never landed). A
// complete record with a bad checksum is corruption, even at the very end of the log.
import { copyFile, mkdir, readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CorruptLogError, openDurableLog } from '../../node/storage/durable-log.js';
import { encodeEntry, encodeHardState, encodeSegmentHeader, sealBatch } from '../../node/storage/record-codec.js';
import { sectorBytes } from '../../node/storage/segment-scanner.js';
import { entry, makeTempDir, plain, removeDir, segmentFiles } from './storage-fixtures.js';

const segmentName = 'log-000001.seg';
let root: string;
let caseNumber = 0;

beforeAll(async () => {
  root = await makeTempDir('recovery');
});
afterAll(async () => {
  await removeDir(root);
});

async function freshDir(): Promise<string> {
  caseNumber += 1;
  const dir = join(root, `case-${caseNumber}`);
  await mkdir(dir);
  return dir;
}

/** Slots 1..5, one sync each, then slot 6 alone in the final sync. Returns the segment bytes. */
async function buildLog(): Promise<{ bytes: Buffer; lastRecordStart: number }> {
  const dir = await freshDir();
  const { log } = await openDurableLog(dir, { noSync: true });
  log.append({ promised: { round: 2, ordinal: 1 } }, []);
  for (let slot = 1; slot <= 5; slot += 1) {
    log.append(undefined, [entry(slot, 2, 1)]);
    await log.sync();
  }
  const lastRecordStart = (await stat(join(dir, segmentName))).size;
  log.append(undefined, [entry(6, 2, 1, 'the last record, long enough to tear at many offsets: ' + 'z'.repeat(60))]);
  await log.sync();
  // The segment as a crash right now leaves it: before close() adds its close record.
  const bytes = await readFile(join(dir, segmentName));
  await log.close();
  return { bytes, lastRecordStart };
}

async function dirWithSegment(bytes: Buffer): Promise<string> {
  const dir = await freshDir();
  await writeFile(join(dir, segmentName), bytes);
  return dir;
}

const firstFive = plain([1, 2, 3, 4, 5].map((slot) => entry(slot, 2, 1)));

type Mode = 'append' | 'preallocated';
const modes: Mode[] = ['append', 'preallocated'];
const preallocatedBytes = 64 * 1024;
const optionsOf = (mode: Mode) => ({
  noSync: true,
  preallocateSegments: mode === 'preallocated',
  segmentBytesMax: preallocatedBytes,
});
/** An entry record with a 100-byte value: 9 bytes of frame header, 20 of slot and ballot. */
const recordBytes = 9 + 4 + 16 + 100;
const earlierSlots = 5;
const finalBatchSlots = 40;
const valueOf = (slot: number) => `slot ${slot} `.padEnd(100, '.');

/**
 * Slots 1..5 in five syncs (acknowledged), then slots 6..45 in one final batch whose write
 * the tests tear or damage. In preallocated mode the file is zero-filled to 64 KiB.
 */
async function buildFinalBatchLog(
  mode: Mode,
): Promise<{ bytes: Buffer; finalBatchStart: number; finalBatchEnd: number }> {
  const dir = await freshDir();
  const { log } = await openDurableLog(dir, optionsOf(mode));
  log.append({ promised: { round: 2, ordinal: 1 } }, []);
  for (let slot = 1; slot <= earlierSlots; slot += 1) {
    log.append(undefined, [entry(slot, 2, 1, valueOf(slot))]);
    await log.sync();
  }
  const finalBatchStart = log.stats().bytesWritten;
  for (let slot = earlierSlots + 1; slot <= earlierSlots + finalBatchSlots; slot += 1)
    log.append(undefined, [entry(slot, 2, 1, valueOf(slot))]);
  await log.sync();
  // The segment as a crash right now leaves it: before close() adds its close record.
  const bytes = await readFile(join(dir, segmentName));
  await log.close();
  const finalBatchEnd = finalBatchStart + finalBatchSlots * recordBytes;
  expect(bytes.length).toBe(mode === 'preallocated' ? preallocatedBytes : finalBatchEnd);
  expect(finalBatchStart % sectorBytes).not.toBe(0);
  return { bytes, finalBatchStart, finalBatchEnd };
}

const slotsUpTo = (last: number) => Array.from({ length: last }, (_, index) => index + 1);
/** Where the final batch's record holding byte `at` starts. */
const recordStartHolding = (finalBatchStart: number, at: number) =>
  finalBatchStart + Math.floor((at - finalBatchStart) / recordBytes) * recordBytes;
const sectorBoundariesIn = (from: number, to: number) => {
  const boundaries: number[] = [];
  for (let at = Math.ceil(from / sectorBytes) * sectorBytes; at < to; at += sectorBytes) boundaries.push(at);
  return boundaries;
};

/** Opens a damaged segment, expecting a torn tail cut at `offset`; checks the file and a reopen. */
async function expectTruncatedAt(
  mode: Mode,
  damaged: Buffer,
  offset: number,
  keptSlots: number,
  reason: RegExp,
  label: string,
): Promise<void> {
  const dir = await dirWithSegment(damaged);
  const file = join(dir, segmentName);
  const opened = await openDurableLog(dir, optionsOf(mode));
  expect(opened.recovered.truncated, label).toEqual([
    { file, offset, bytes: damaged.length - offset, reason: expect.stringMatching(reason) },
  ]);
  expect(opened.recovered.tornTailBytes).toBe(damaged.length - offset);
  expect(opened.recovered.cleanShutdown).toBe(false);
  const slots = opened.recovered.entries.map((stored) => stored.slot);
  expect(slots, label).toEqual(slotsUpTo(keptSlots));
  for (const stored of opened.recovered.entries) expect(stored.value.toString()).toBe(valueOf(stored.slot));
  expect(opened.recovered.hardState).toEqual({ promised: { round: 2, ordinal: 1 } });
  expect((await stat(file)).size, label).toBe(offset);
  opened.log.append(undefined, [entry(100, 2, 1)]);
  await opened.log.close();
  const reopened = await openDurableLog(dir, optionsOf(mode));
  expect(reopened.recovered.truncated).toEqual([]);
  expect(reopened.recovered.cleanShutdown).toBe(true);
  expect(reopened.recovered.entries.map((stored) => stored.slot)).toEqual([...slots, 100]);
  await reopened.log.close();
}

/** Opens a damaged segment, expecting CorruptLogError naming the file and `offset`, and the file left as it was. */
async function expectCorruptAt(
  mode: Mode,
  damaged: Buffer,
  offset: number,
  reason: RegExp,
  label: string,
): Promise<void> {
  const dir = await dirWithSegment(damaged);
  const file = join(dir, segmentName);
  const failure = openDurableLog(dir, optionsOf(mode));
  await expect(failure, label).rejects.toBeInstanceOf(CorruptLogError);
  await expect(failure, label).rejects.toMatchObject({ file, offset, reason: expect.stringMatching(reason) });
  await expect(failure).rejects.toThrow(`${file} at byte offset ${offset}`);
  expect((await readFile(file)).equals(damaged), `${label}: the file must be left as it was`).toBe(true);
}

describe('recovery: torn tail', () => {
  it('truncates a cut at every byte offset of the last record, then appends normally', async () => {
    const { bytes, lastRecordStart } = await buildLog();
    expect(bytes.length - lastRecordStart).toBeGreaterThan(100);
    for (let cut = lastRecordStart; cut < bytes.length; cut += 1) {
      const dir = await dirWithSegment(bytes.subarray(0, cut));
      const opened = await openDurableLog(dir, { noSync: true });
      expect(opened.recovered.tornTailBytes, `cut at ${cut}`).toBe(cut - lastRecordStart);
      const tail = {
        file: join(dir, segmentName),
        offset: lastRecordStart,
        bytes: cut - lastRecordStart,
        reason: expect.stringMatching(/the file ends/),
      };
      expect(opened.recovered.truncated).toEqual(cut === lastRecordStart ? [] : [tail]);
      expect(plain(opened.recovered.entries)).toEqual(firstFive);
      expect(opened.recovered.hardState).toEqual({ promised: { round: 2, ordinal: 1 } });
      expect((await stat(join(dir, segmentName))).size).toBe(lastRecordStart);
      opened.log.append(undefined, [entry(7, 2, 1)]);
      await opened.log.close();

      const reopened = await openDurableLog(dir, { noSync: true });
      expect(reopened.recovered.tornTailBytes).toBe(0);
      expect(plain(reopened.recovered.entries)).toEqual([...firstFive, ...plain([entry(7, 2, 1)])]);
      await reopened.log.close();
    }
  });

  it.each(modes)(
    'a final batch cut at each sector boundary (the rest zeros, or the file ends) keeps the whole records before the cut (%s)',
    async (mode) => {
      const { bytes, finalBatchStart, finalBatchEnd } = await buildFinalBatchLog(mode);
      const boundaries = sectorBoundariesIn(finalBatchStart + 1, finalBatchEnd);
      expect(boundaries.length).toBeGreaterThan(8);
      for (const cut of boundaries) {
        // Preallocated: the pages after the cut never landed and still hold the file's zeros.
        // Append-only: the file ends where the write stopped.
        const damaged = mode === 'preallocated' ? Buffer.from(bytes).fill(0, cut) : bytes.subarray(0, cut);
        const tornAt = recordStartHolding(finalBatchStart, cut);
        const kept = earlierSlots + (tornAt - finalBatchStart) / recordBytes;
        const reason = mode === 'preallocated' ? /sector holding byte \d+ is all zeros/ : /the file ends at byte/;
        await expectTruncatedAt(mode, damaged, tornAt, kept, reason, `${mode}, cut at ${cut}`);
      }
    },
  );

  it.each(modes)(
    'a final batch whose pages landed out of order (one sector of zeros inside, valid records after) is truncated at the hole (%s)',
    async (mode) => {
      const { bytes, finalBatchStart, finalBatchEnd } = await buildFinalBatchLog(mode);
      // The first sector the batch touches kept its old contents: the earlier records, then zeros.
      const firstSectorEnd = Math.ceil(finalBatchStart / sectorBytes) * sectorBytes;
      const holes = [
        [finalBatchStart, firstSectorEnd],
        ...sectorBoundariesIn(finalBatchStart, finalBatchEnd - sectorBytes).map((at) => [at, at + sectorBytes]),
      ];
      expect(holes.length).toBeGreaterThan(5);
      for (const [from, to] of holes as Array<[number, number]>) {
        const damaged = Buffer.from(bytes).fill(0, from, to);
        const tornAt = recordStartHolding(finalBatchStart, from);
        const kept = earlierSlots + (tornAt - finalBatchStart) / recordBytes;
        await expectTruncatedAt(
          mode,
          damaged,
          tornAt,
          kept,
          /sector holding byte \d+ is all zeros/,
          `${mode}, zeros at ${from}..${to}`,
        );
      }
    },
  );

  it.each(modes)(
    'a torn write right after the close record of an earlier clean stop is a crash, not a clean shutdown (%s)',
    async (mode) => {
      const dir = await freshDir();
      const first = await openDurableLog(dir, optionsOf(mode));
      first.log.append({ promised: { round: 2, ordinal: 1 } }, [entry(1, 2, 1, valueOf(1))]);
      await first.log.close();
      const closedRecordsEnd = first.log.stats().bytesWritten;
      const second = await openDurableLog(dir, optionsOf(mode));
      expect(second.recovered.cleanShutdown).toBe(true);
      // One record longer than a sector, so that the cut leaves the close record the last whole one.
      second.log.append(undefined, [entry(2, 2, 1, 'x'.repeat(2000))]);
      await second.log.sync();
      const crashed = await readFile(join(dir, segmentName));
      await second.log.close();
      const cut = Math.ceil((closedRecordsEnd + 1) / sectorBytes) * sectorBytes;
      const damaged = mode === 'preallocated' ? Buffer.from(crashed).fill(0, cut) : crashed.subarray(0, cut);
      const crashDir = await dirWithSegment(damaged);
      const opened = await openDurableLog(crashDir, optionsOf(mode));
      expect(opened.recovered.truncated).toEqual([
        expect.objectContaining({ offset: closedRecordsEnd, bytes: damaged.length - closedRecordsEnd }),
      ]);
      expect(opened.recovered.cleanShutdown).toBe(false);
      expect(plain(opened.recovered.entries)).toEqual(plain([entry(1, 2, 1, valueOf(1))]));
      await opened.log.close();
    },
  );

  it('an empty or header-torn last segment left by a crash during rollover is repaired', async () => {
    for (const partialBytes of [0, 20]) {
      const dir = await freshDir();
      const first = await openDurableLog(dir, { noSync: true });
      first.log.append({ promised: { round: 4, ordinal: 0 } }, [entry(1, 4, 0)]);
      await first.log.close();
      const partial = (await readFile(join(dir, segmentName))).subarray(0, partialBytes);
      await writeFile(join(dir, 'log-000002.seg'), partial);

      const opened = await openDurableLog(dir, { noSync: true });
      expect(opened.recovered.tornTailBytes).toBe(partialBytes);
      expect(opened.recovered.hardState).toEqual({ promised: { round: 4, ordinal: 0 } });
      await opened.log.saveSnapshot({ index: 1, data: Buffer.from('s') });
      await opened.log.close();
      // The repaired segment repeats the hard state, so deleting segment 1 lost nothing.
      expect(await segmentFiles(dir)).toEqual(['log-000002.seg']);
      const reopened = await openDurableLog(dir, { noSync: true });
      expect(reopened.recovered.hardState).toEqual({ promised: { round: 4, ordinal: 0 } });
      expect(reopened.recovered.snapshot?.index).toBe(1);
      await reopened.log.close();
    }
  });
});

describe('recovery: damaged acknowledged data', () => {
  it('refuses a flipped bit anywhere in the complete last record: CorruptLogError naming file and offset, file unchanged', async () => {
    // The bug this replaces asserted truncation: one flipped bit dropped a synced, acknowledged record.
    const { bytes, lastRecordStart } = await buildLog();
    for (let offset = lastRecordStart; offset < bytes.length; offset += 1) {
      const damaged = Buffer.from(bytes);
      damaged[offset] = damaged[offset]! ^ (1 << (offset % 8));
      await expectCorruptAt('append', damaged, lastRecordStart, /complete frame/, `flip at ${offset}`);
    }
  });

  it.each(modes)(
    'refuses a flipped bit anywhere in the final batch, at the damaged record, valid records of it after or not (%s)',
    async (mode) => {
      const { bytes, finalBatchStart, finalBatchEnd } = await buildFinalBatchLog(mode);
      for (let offset = finalBatchStart; offset < finalBatchEnd; offset += 7) {
        const damaged = Buffer.from(bytes);
        damaged[offset] = damaged[offset]! ^ (1 << (offset % 8));
        await expectCorruptAt(
          mode,
          damaged,
          recordStartHolding(finalBatchStart, offset),
          /complete frame/,
          `${mode}, flip at ${offset}`,
        );
      }
    },
  );

  it.each(modes)(
    'refuses the final record with any one bit of its length field flipped, even one that claims bytes past the data (%s)',
    async (mode) => {
      const { bytes, finalBatchEnd } = await buildFinalBatchLog(mode);
      const lastRecordStart = finalBatchEnd - recordBytes;
      for (let bit = 0; bit < 32; bit += 1) {
        const damaged = Buffer.from(bytes);
        damaged.writeUInt32LE((damaged.readUInt32LE(lastRecordStart) ^ (1 << bit)) >>> 0, lastRecordStart);
        await expectCorruptAt(mode, damaged, lastRecordStart, /complete frame/, `${mode}, length bit ${bit}`);
      }
    },
  );

  it.each(modes)('refuses a lost sector in an acknowledged batch followed by later batches (%s)', async (mode) => {
    const dir = await freshDir();
    const { log } = await openDurableLog(dir, optionsOf(mode));
    for (let slot = 1; slot <= 30; slot += 1) {
      log.append(undefined, [entry(slot, 1, 0, valueOf(slot))]);
      await log.sync();
    }
    await log.close();
    const bytes = await readFile(join(dir, segmentName));
    const damaged = Buffer.from(bytes).fill(0, 1024, 1536);
    const headerBytes = 9 + 28;
    const damagedRecordStart = headerBytes + Math.floor((1024 - headerBytes) / recordBytes) * recordBytes;
    await expectCorruptAt(mode, damaged, damagedRecordStart, /later write batch/, mode);
  });

  it.each(modes)(
    'refuses a lost sector in the next-to-last batch when only the final batch, one record, follows it (%s)',
    async (mode) => {
      const dir = await freshDir();
      const { log } = await openDurableLog(dir, optionsOf(mode));
      log.append(undefined, [entry(1)]);
      await log.sync();
      const bigRecordStart = log.stats().bytesWritten;
      log.append(undefined, [entry(2, 1, 0, 'b'.repeat(1500))]);
      await log.sync();
      log.append(undefined, [entry(3)]);
      await log.close();
      const bytes = await readFile(join(dir, segmentName));
      const sectorInside = Math.ceil((bigRecordStart + 40) / sectorBytes) * sectorBytes;
      expect(sectorInside + sectorBytes).toBeLessThan(bigRecordStart + 9 + 20 + 1500);
      const damaged = Buffer.from(bytes).fill(0, sectorInside, sectorInside + sectorBytes);
      await expectCorruptAt(mode, damaged, bigRecordStart, /later write batch/, mode);
    },
  );

  it.each(modes)(
    'refuses a lost write of the final batch before a clean close: a hole before the close record (%s)',
    async (mode) => {
      const dir = await freshDir();
      const { log } = await openDurableLog(dir, optionsOf(mode));
      for (let slot = 1; slot <= 5; slot += 1) {
        log.append(undefined, [entry(slot, 1, 0, valueOf(slot))]);
        await log.sync();
      }
      const finalBatchStart = log.stats().bytesWritten;
      for (let slot = 6; slot <= 20; slot += 1) log.append(undefined, [entry(slot, 1, 0, valueOf(slot))]);
      await log.sync();
      const closeRecordStart = log.stats().bytesWritten;
      await log.close();
      const bytes = await readFile(join(dir, segmentName));
      const intact = await openDurableLog(await dirWithSegment(bytes), optionsOf(mode));
      expect(intact.recovered.cleanShutdown).toBe(true);
      await intact.log.close();
      // The disk acknowledged the final batch's write and never stored it; the close record's
      // write landed, and with it the sector it shares with the end of the batch.
      const lostEnd = closeRecordStart - (closeRecordStart % sectorBytes);
      expect(lostEnd - finalBatchStart).toBeGreaterThan(sectorBytes);
      const damaged = Buffer.from(bytes).fill(0, finalBatchStart, lostEnd);
      await expectCorruptAt(mode, damaged, finalBatchStart, /later write batch/, mode);
    },
  );

  it('documented limit: a lost write of the whole final batch (zeros where it was) reads as the end of the records', async () => {
    // After a crash nothing in the log can tell it from a crash before the write; cleanShutdown
    // is false, and the replica's protocol-aware recovery is the defence (README.md, "Recovery").
    const { bytes, finalBatchStart } = await buildFinalBatchLog('preallocated');
    const dir = await dirWithSegment(Buffer.from(bytes).fill(0, finalBatchStart));
    const opened = await openDurableLog(dir, optionsOf('preallocated'));
    expect(opened.recovered.truncated).toEqual([]);
    expect(opened.recovered.cleanShutdown).toBe(false);
    expect(opened.recovered.entries.map((stored) => stored.slot)).toEqual(slotsUpTo(earlierSlots));
    await opened.log.close();
  });

  it('throws CorruptLogError for a flipped byte anywhere in a middle record', async () => {
    const { bytes } = await buildLog();
    // Record of slot 3: header record, hard state record, then one entry record per sync.
    const recordBytes = 9 + 20 + 'value-3'.length;
    const headerAndHardState = 9 + 28 + 9 + 12; // a version 2 segment header is 28 bytes of payload
    const start = headerAndHardState + 2 * recordBytes;
    for (let offset = start; offset < start + recordBytes; offset += 1) {
      const damaged = Buffer.from(bytes);
      damaged[offset] = damaged[offset]! ^ 0x01;
      const failure = openDurableLog(await dirWithSegment(damaged), { noSync: true });
      await expect(failure, `flip at ${offset}`).rejects.toBeInstanceOf(CorruptLogError);
      await expect(failure).rejects.toMatchObject({
        file: expect.stringMatching(new RegExp(`/${segmentName}$`)),
        offset: start,
      });
    }
  });

  it('throws for damage at the end of a segment that is not the last one', async () => {
    const dir = await freshDir();
    const { log } = await openDurableLog(dir, { noSync: true, segmentBytesMax: 4096 });
    for (let slot = 1; slot <= 60; slot += 1) {
      log.append(undefined, [entry(slot, 1, 0, 'y'.repeat(100))]);
      await log.sync();
    }
    await log.close();
    const first = join(dir, segmentName);
    const bytes = await readFile(first);
    await writeFile(first, bytes.subarray(0, bytes.length - 3));
    await expect(openDurableLog(dir, { noSync: true })).rejects.toThrow(/not the last one/);
  });

  it('throws when a segment in the middle is missing', async () => {
    const dir = await freshDir();
    const { log } = await openDurableLog(dir, { noSync: true, segmentBytesMax: 4096 });
    for (let slot = 1; slot <= 100; slot += 1) {
      log.append(undefined, [entry(slot, 1, 0, 'y'.repeat(100))]);
      await log.sync();
    }
    await log.close();
    expect((await segmentFiles(dir)).length).toBeGreaterThan(2);
    await unlink(join(dir, 'log-000002.seg'));
    await expect(openDurableLog(dir, { noSync: true })).rejects.toThrow(/missing/);
  });

  it('reads a version 3 segment (checksums over the frame alone) and continues it the same way', async () => {
    const header = encodeSegmentHeader(1, 0);
    header.writeUInt32LE(3, 17); // the format version field
    const prelude = Buffer.concat([header, encodeHardState({ promised: { round: 2, ordinal: 0 } })]);
    const batch = Buffer.concat([encodeEntry(entry(1, 2)), encodeEntry(entry(2, 2))]);
    sealBatch(prelude, undefined, 0);
    sealBatch(batch, undefined, prelude.length);
    const dir = await freshDir();
    await writeFile(join(dir, segmentName), Buffer.concat([prelude, batch]));
    const opened = await openDurableLog(dir, { noSync: true });
    expect(opened.recovered.hardState).toEqual({ promised: { round: 2, ordinal: 0 } });
    expect(plain(opened.recovered.entries)).toEqual(plain([entry(1, 2), entry(2, 2)]));
    opened.log.append(undefined, [entry(3, 2)]);
    await opened.log.sync();
    await opened.log.close();
    const reopened = await openDurableLog(dir, { noSync: true });
    expect(plain(reopened.recovered.entries)).toEqual(plain([entry(1, 2), entry(2, 2), entry(3, 2)]));
    expect(reopened.recovered.cleanShutdown).toBe(true);
    await reopened.log.close();
  });

  it('throws when a segment file carries another segment number', async () => {
    const { bytes } = await buildLog();
    const dir = await freshDir();
    await writeFile(join(dir, 'log-000007.seg'), bytes);
    await expect(openDurableLog(dir, { noSync: true })).rejects.toThrow(/segment header says segment 1/);
  });

  it('throws for a damaged or truncated snapshot, and when the segments are gone', async () => {
    const dir = await freshDir();
    const { log } = await openDurableLog(dir, { noSync: true });
    log.append({ promised: { round: 1, ordinal: 0 } }, [entry(1), entry(2)]);
    await log.sync();
    await log.saveSnapshot({ index: 2, data: Buffer.from('state machine image') });
    await log.close();
    const snapshotPath = join(dir, 'snapshot-00000000000000000002.snap');
    const intact = await readFile(snapshotPath);

    const flipped = Buffer.from(intact);
    flipped[intact.length - 3] = flipped[intact.length - 3]! ^ 0xff;
    await writeFile(snapshotPath, flipped);
    await expect(openDurableLog(dir, { noSync: true })).rejects.toThrow(/snapshot checksum mismatch/);
    await writeFile(snapshotPath, intact.subarray(0, intact.length - 1));
    await expect(openDurableLog(dir, { noSync: true })).rejects.toBeInstanceOf(CorruptLogError);

    await writeFile(snapshotPath, intact);
    const segmentsKept = join(root, `segment-copy-${caseNumber}`);
    await copyFile(join(dir, segmentName), segmentsKept);
    await unlink(join(dir, segmentName));
    await expect(openDurableLog(dir, { noSync: true })).rejects.toThrow(/promised ballot is lost/);
    await copyFile(segmentsKept, join(dir, segmentName));
    const opened = await openDurableLog(dir, { noSync: true });
    expect(opened.recovered.snapshot).toEqual({ index: 2, data: Buffer.from('state machine image') });
    await opened.log.close();
  });

  it('removes a leftover temporary snapshot and keeps the newest complete one', async () => {
    const dir = await freshDir();
    const { log } = await openDurableLog(dir, { noSync: true });
    log.append(undefined, [entry(1), entry(2), entry(3)]);
    await log.saveSnapshot({ index: 1, data: Buffer.from('one') });
    await log.close();
    await copyFile(join(dir, 'snapshot-00000000000000000001.snap'), join(dir, 'snapshot-00000000000000000000.snap'));
    await writeFile(join(dir, 'snapshot-00000000000000000003.snap.tmp'), 'half written');
    const opened = await openDurableLog(dir, { noSync: true });
    expect(opened.recovered.snapshot).toEqual({ index: 1, data: Buffer.from('one') });
    expect(opened.recovered.entries.map((stored) => stored.slot)).toEqual([2, 3]);
    await opened.log.close();
    expect((await segmentFiles(dir)).length).toBe(1);
    expect((await readdir(dir)).filter((name) => name.startsWith('snapshot'))).toEqual([
      'snapshot-00000000000000000001.snap',
    ]);
  });
});
