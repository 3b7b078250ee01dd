// Recovery from torn tails (never acknowledged, truncated) and from damage to acknowledged
// data (CorruptLogError, never skipped).
import { copyFile, mkdir, readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CorruptLogError, openDurableLog } from '../../node/storage/durable-log.js';
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
  await log.close();
  return { bytes: await readFile(join(dir, segmentName)), lastRecordStart };
}

async function dirWithSegment(bytes: Buffer): Promise<string> {
  const dir = await freshDir();
  await writeFile(join(dir, segmentName), bytes);
  return dir;
}

const firstFive = plain([1, 2, 3, 4, 5].map((slot) => entry(slot, 2, 1)));

describe('recovery: torn tail', () => {
  it('truncates a cut at every byte offset of the last record, then appends normally', async () => {
    const { bytes, lastRecordStart } = await buildLog();
    expect(bytes.length - lastRecordStart).toBeGreaterThan(100);
    for (let cut = lastRecordStart; cut < bytes.length; cut += 1) {
      const dir = await dirWithSegment(bytes.subarray(0, cut));
      const opened = await openDurableLog(dir, { noSync: true });
      expect(opened.recovered.tornTailBytes, `cut at ${cut}`).toBe(cut - lastRecordStart);
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

  it('truncates a flipped byte anywhere in the last record (bad checksum, nothing valid after)', async () => {
    const { bytes, lastRecordStart } = await buildLog();
    for (let offset = lastRecordStart; offset < bytes.length; offset += 1) {
      const damaged = Buffer.from(bytes);
      damaged[offset] = damaged[offset]! ^ 0x40;
      const opened = await openDurableLog(await dirWithSegment(damaged), { noSync: true });
      expect(opened.recovered.tornTailBytes, `flip at ${offset}`).toBe(bytes.length - lastRecordStart);
      expect(plain(opened.recovered.entries)).toEqual(firstFive);
      await opened.log.close();
    }
  });

  it('truncates a hole inside the final batch (its pages persisted out of order)', async () => {
    const dir = await freshDir();
    const { log } = await openDurableLog(dir, { noSync: true });
    log.append(undefined, [entry(1)]);
    await log.sync();
    const batchStart = (await stat(join(dir, segmentName))).size;
    for (let slot = 2; slot <= 40; slot += 1) log.append(undefined, [entry(slot, 1, 0, 'w'.repeat(100))]);
    await log.close();
    const bytes = await readFile(join(dir, segmentName));
    const damaged = Buffer.from(bytes);
    damaged.fill(0, batchStart + 1000, batchStart + 1500);

    const opened = await openDurableLog(await dirWithSegment(damaged), { noSync: true });
    const slots = opened.recovered.entries.map((stored) => stored.slot);
    expect(slots[0]).toBe(1);
    expect(slots).toEqual(Array.from({ length: slots.length }, (_, i) => i + 1));
    expect(slots.length).toBeLessThan(40);
    expect(opened.recovered.tornTailBytes).toBeGreaterThan(500);
    await opened.log.close();
  });

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
      await expect(failure).rejects.toMatchObject({ file: segmentName, offset: start });
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

  it('throws when a valid later batch follows a hole (the hole is in acknowledged data)', async () => {
    const { bytes, lastRecordStart } = await buildLog();
    const damaged = Buffer.from(bytes);
    damaged.fill(0, lastRecordStart - 30, lastRecordStart - 20);
    await expect(openDurableLog(await dirWithSegment(damaged), { noSync: true })).rejects.toThrow(/later write batch/);
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
    expect((await readdir(dir)).filter((name) => name.startsWith('snapshot'))).toEqual(['snapshot-00000000000000000001.snap']);
  });
});
