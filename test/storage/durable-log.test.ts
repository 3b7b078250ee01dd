import { link, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { DurableLogFailedError, openDurableLog, type StoredEntry } from '../../node/storage/durable-log.js';
import { InvariantViolation } from '../../node/util/assert.js';
import { entry, makeTempDir, plain, removeDir, segmentFiles } from './storage-fixtures.js';

let dir: string;
beforeEach(async () => {
  dir = await makeTempDir('log');
});
afterEach(async () => {
  await removeDir(dir);
});

describe('durable log: round trip', () => {
  it('opens an empty directory with nothing recovered', async () => {
    const { log, recovered } = await openDurableLog(dir);
    expect(recovered).toEqual({
      hardState: undefined,
      snapshot: undefined,
      entries: [],
      tornTailBytes: 0,
      truncated: [],
      cleanShutdown: false,
    });
    expect(await segmentFiles(dir)).toEqual(['log-000001.seg']);
    await log.close();
  });

  it('recovers the hard state and every synced entry, sorted by slot', async () => {
    const first = await openDurableLog(dir);
    first.log.append({ promised: { round: 3, ordinal: 1 } }, [entry(2, 3, 1), entry(1, 3, 1)]);
    first.log.append(undefined, [
      entry(3, 3, 1, ''),
      { slot: 2 ** 40 + 7, ballot: { round: 2 ** 32 - 1, ordinal: 6 }, value: Buffer.alloc(1000, 0xab) },
    ]);
    await first.log.sync();
    // The first sync wrote the new segment's header when the log opened.
    expect(first.log.stats()).toMatchObject({ syncs: 2, recordsWritten: 6, entriesPerSyncMax: 4, segments: 1 });
    await first.log.close();

    const second = await openDurableLog(dir);
    expect(second.recovered.hardState).toEqual({ promised: { round: 3, ordinal: 1 } });
    expect(second.recovered.tornTailBytes).toBe(0);
    expect(plain(second.recovered.entries)).toEqual(
      plain([
        entry(1, 3, 1),
        entry(2, 3, 1),
        entry(3, 3, 1, ''),
        { slot: 2 ** 40 + 7, ballot: { round: 2 ** 32 - 1, ordinal: 6 }, value: Buffer.alloc(1000, 0xab) },
      ]),
    );
    await second.log.close();
  });

  it('reports a clean shutdown only after close(): a copy of the files taken before it reads as a crash', async () => {
    const first = await openDurableLog(dir, { noSync: true });
    first.log.append({ promised: { round: 1, ordinal: 0 } }, [entry(1)]);
    await first.log.sync();
    const crashed = await makeTempDir('log-crashed');
    try {
      await writeFile(join(crashed, 'log-000001.seg'), await readFile(join(dir, 'log-000001.seg')));
      await first.log.close();
      const afterCrash = await openDurableLog(crashed, { noSync: true });
      expect(afterCrash.recovered.cleanShutdown).toBe(false);
      expect(plain(afterCrash.recovered.entries)).toEqual(plain([entry(1)]));
      await afterCrash.log.close();
    } finally {
      await removeDir(crashed);
    }
    const second = await openDurableLog(dir, { noSync: true });
    expect(second.recovered.cleanShutdown).toBe(true);
    // Written to again after the close record: a crash now is a crash again.
    second.log.append(undefined, [entry(2)]);
    await second.log.sync();
    await writeFile(join(dir, 'copy.bin'), await readFile(join(dir, 'log-000001.seg')));
    await second.log.close();
    const third = await openDurableLog(dir, { noSync: true });
    expect(third.recovered.cleanShutdown).toBe(true);
    expect(plain(third.recovered.entries)).toEqual(plain([entry(1), entry(2)]));
    await third.log.close();
    await writeFile(join(dir, 'log-000001.seg'), await readFile(join(dir, 'copy.bin')));
    const fourth = await openDurableLog(dir, { noSync: true });
    expect(fourth.recovered.cleanShutdown).toBe(false);
    expect(plain(fourth.recovered.entries)).toEqual(plain([entry(1), entry(2)]));
    await fourth.log.close();
  });

  it('copies values on append, so the caller may reuse its buffers', async () => {
    const { log } = await openDurableLog(dir, { noSync: true });
    const value = Buffer.from('original');
    log.append(undefined, [{ slot: 1, ballot: { round: 1, ordinal: 0 }, value }]);
    value.write('mutated!');
    await log.close();
    const reopened = await openDurableLog(dir, { noSync: true });
    expect(reopened.recovered.entries[0]!.value.toString()).toBe('original');
    await reopened.log.close();
  });

  it('a later record for the same slot supersedes the earlier one, across segments too', async () => {
    const first = await openDurableLog(dir, { segmentBytesMax: 4096 });
    first.log.append({ promised: { round: 1, ordinal: 0 } }, [entry(5, 1, 0, 'old'), entry(6, 1, 0, 'six')]);
    await first.log.sync();
    first.log.append({ promised: { round: 2, ordinal: 1 } }, [entry(5, 2, 1, 'new')]);
    await first.log.sync();
    for (let slot = 100; slot < 160; slot += 1) first.log.append(undefined, [entry(slot, 2, 1, 'x'.repeat(100))]);
    await first.log.sync();
    first.log.append(undefined, [entry(5, 4, 2, 'newest')]);
    await first.log.sync();
    await first.log.close();
    expect((await segmentFiles(dir)).length).toBeGreaterThan(1);

    const second = await openDurableLog(dir, { segmentBytesMax: 4096 });
    const bySlot = new Map(second.recovered.entries.map((stored) => [stored.slot, stored]));
    expect(bySlot.get(5)!.value.toString()).toBe('newest');
    expect(bySlot.get(5)!.ballot).toEqual({ round: 4, ordinal: 2 });
    expect(bySlot.get(6)!.value.toString()).toBe('six');
    expect(second.recovered.entries.length).toBe(62);
    await second.log.close();
  });

  it('refuses a promised ballot that goes backwards (a driver bug)', async () => {
    const { log } = await openDurableLog(dir, { noSync: true });
    log.append({ promised: { round: 5, ordinal: 2 } }, []);
    expect(() => log.append({ promised: { round: 5, ordinal: 1 } }, [])).toThrow(InvariantViolation);
    log.append({ promised: { round: 5, ordinal: 2 } }, []);
    await log.close();
  });

  it('refuses use after close', async () => {
    const { log } = await openDurableLog(dir, { noSync: true });
    await log.close();
    expect(() => log.append(undefined, [entry(1)])).toThrow(InvariantViolation);
  });
});

describe('durable log: segments and snapshots', () => {
  it('keeps the hard state through rollover, snapshot and deletion of old segments', async () => {
    const first = await openDurableLog(dir, { segmentBytesMax: 4096 });
    first.log.append({ promised: { round: 7, ordinal: 2 } }, []);
    await first.log.sync();
    for (let slot = 1; slot <= 400; slot += 1) {
      first.log.append(undefined, [entry(slot, 7, 2, `v${slot}-${'p'.repeat(60)}`)]);
      if (slot % 10 === 0) await first.log.sync();
    }
    const segmentsBefore = first.log.stats().segments;
    expect(segmentsBefore).toBeGreaterThan(5);
    expect(await segmentFiles(dir)).toHaveLength(segmentsBefore);

    await first.log.saveSnapshot({ index: 380, data: Buffer.from('image@380') });
    const segmentsAfter = first.log.stats().segments;
    expect(segmentsAfter).toBeLessThan(segmentsBefore);
    expect(await segmentFiles(dir)).toHaveLength(segmentsAfter);
    expect((await segmentFiles(dir))[0]).not.toBe('log-000001.seg');
    await first.log.close();

    const second = await openDurableLog(dir, { segmentBytesMax: 4096 });
    expect(second.recovered.hardState).toEqual({ promised: { round: 7, ordinal: 2 } });
    expect(second.recovered.snapshot).toEqual({ index: 380, data: Buffer.from('image@380') });
    expect(second.recovered.entries.map((stored) => stored.slot)).toEqual(
      Array.from({ length: 20 }, (_, i) => 381 + i),
    );
    await second.log.close();
  });

  it('snapshotting everything leaves only the active segment, which still holds the hard state', async () => {
    const first = await openDurableLog(dir, { segmentBytesMax: 4096 });
    first.log.append({ promised: { round: 9, ordinal: 0 } }, []);
    for (let slot = 1; slot <= 200; slot += 1) {
      first.log.append(undefined, [entry(slot, 9, 0, 'q'.repeat(80))]);
      await first.log.sync();
    }
    await first.log.saveSnapshot({ index: 150, data: Buffer.from('a') });
    await first.log.saveSnapshot({ index: 200, data: Buffer.from('b') });
    expect(first.log.stats().segments).toBe(1);
    const snapshots = (await readdir(dir)).filter((name) => name.includes('snapshot'));
    expect(snapshots).toEqual(['snapshot-00000000000000000200.snap']);
    await first.log.close();

    const second = await openDurableLog(dir, { segmentBytesMax: 4096 });
    expect(second.recovered.hardState).toEqual({ promised: { round: 9, ordinal: 0 } });
    expect(second.recovered.snapshot?.index).toBe(200);
    expect(second.recovered.entries).toEqual([]);
    second.log.append(undefined, [entry(201, 9, 0)]);
    await second.log.close();
    const third = await openDurableLog(dir);
    expect(plain(third.recovered.entries)).toEqual(plain([entry(201, 9, 0)]));
    await third.log.close();
  });

  it('does not delete a segment that still holds a slot above the snapshot', async () => {
    const { log } = await openDurableLog(dir, { segmentBytesMax: 4096, noSync: true });
    log.append(undefined, [entry(1000, 1, 0, 'late slot in the first segment')]);
    await log.sync();
    for (let slot = 1; slot <= 100; slot += 1) {
      log.append(undefined, [entry(slot, 1, 0, 'r'.repeat(100))]);
      await log.sync();
    }
    await log.saveSnapshot({ index: 100, data: Buffer.alloc(0) });
    expect(await segmentFiles(dir)).toContain('log-000001.seg');
    await log.close();
    const reopened = await openDurableLog(dir, { noSync: true });
    expect(reopened.recovered.entries.map((stored) => stored.slot)).toEqual([1000]);
    await reopened.log.close();
  });

  it('rolls over at segmentBytesMax', async () => {
    const { log } = await openDurableLog(dir, { segmentBytesMax: 8192, noSync: true });
    for (let slot = 1; slot <= 300; slot += 1) {
      log.append(undefined, [entry(slot, 1, 0, 's'.repeat(200))]);
      await log.sync();
    }
    await log.close();
    const files = await segmentFiles(dir);
    expect(files.length).toBeGreaterThan(5);
    for (const name of files) expect((await stat(join(dir, name))).size).toBeLessThanOrEqual(8192);
  });
});

describe('durable log: preallocated segments', () => {
  const segmentBytesMax = 8192;
  const options = { segmentBytesMax, preallocateSegments: true };
  const slotsOf = (entries: readonly StoredEntry[]) => entries.map((stored) => stored.slot);
  const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

  async function writeSlots(
    log: Awaited<ReturnType<typeof openDurableLog>>['log'],
    from: number,
    to: number,
  ): Promise<void> {
    for (let slot = from; slot <= to; slot += 1) {
      log.append(undefined, [entry(slot, 1, 0, 'p'.repeat(200))]);
      await log.sync();
    }
  }

  it('writes into a zero-filled file of segmentBytesMax; a reopen continues after the records, truncating nothing', async () => {
    const first = await openDurableLog(dir, options);
    first.log.append({ promised: { round: 3, ordinal: 1 } }, []);
    await writeSlots(first.log, 1, 10);
    expect((await stat(join(dir, 'log-000001.seg'))).size).toBe(segmentBytesMax);
    await first.log.close();
    // The next segment was prepared in the background, zero-filled as well.
    expect((await stat(join(dir, 'log-000002.seg.tmp'))).size).toBe(segmentBytesMax);

    const second = await openDurableLog(dir, options);
    expect(second.recovered.tornTailBytes).toBe(0);
    expect(slotsOf(second.recovered.entries)).toEqual(range(1, 10));
    expect(second.recovered.hardState).toEqual({ promised: { round: 3, ordinal: 1 } });
    await writeSlots(second.log, 11, 20);
    await second.log.close();
    expect((await stat(join(dir, 'log-000001.seg'))).size).toBe(segmentBytesMax);

    const third = await openDurableLog(dir, options);
    expect(slotsOf(third.recovered.entries)).toEqual(range(1, 20));
    await third.log.close();
  });

  it('rolls over into the prepared files; every segment keeps its size and every slot is recovered', async () => {
    const { log } = await openDurableLog(dir, options);
    log.append({ promised: { round: 1, ordinal: 0 } }, []);
    await writeSlots(log, 1, 200);
    await log.close();
    const files = await segmentFiles(dir);
    expect(files.length).toBeGreaterThan(4);
    for (const name of files) expect((await stat(join(dir, name))).size).toBe(segmentBytesMax);
    const reopened = await openDurableLog(dir, options);
    expect(slotsOf(reopened.recovered.entries)).toEqual(range(1, 200));
    expect(reopened.recovered.hardState).toEqual({ promised: { round: 1, ordinal: 0 } });
    await reopened.log.close();
  });

  it('a log written append-only is continued with preallocation and back, losing nothing', async () => {
    const plainLog = await openDurableLog(dir, { segmentBytesMax });
    await writeSlots(plainLog.log, 1, 60);
    await plainLog.log.close();
    const preallocated = await openDurableLog(dir, options);
    expect(slotsOf(preallocated.recovered.entries)).toEqual(range(1, 60));
    await writeSlots(preallocated.log, 61, 120);
    await preallocated.log.close();
    const again = await openDurableLog(dir, { segmentBytesMax });
    expect(slotsOf(again.recovered.entries)).toEqual(range(1, 120));
    // The leftover prepared segment was removed by recovery.
    expect((await readdir(dir)).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    await again.log.close();
  });

  it('a crash right after the prepared segment was linked into place (no record in it yet) recovers and continues', async () => {
    const first = await openDurableLog(dir, options);
    first.log.append({ promised: { round: 2, ordinal: 0 } }, []);
    await writeSlots(first.log, 1, 10);
    await first.log.close();
    // The roll-over's link happened, its unlink of the .tmp and its first write did not.
    await link(join(dir, 'log-000002.seg.tmp'), join(dir, 'log-000002.seg'));
    const second = await openDurableLog(dir, options);
    expect(slotsOf(second.recovered.entries)).toEqual(range(1, 10));
    expect(second.recovered.hardState).toEqual({ promised: { round: 2, ordinal: 0 } });
    await writeSlots(second.log, 11, 15);
    await second.log.close();
    const third = await openDurableLog(dir, options);
    expect(slotsOf(third.recovered.entries)).toEqual(range(1, 15));
    expect(third.recovered.hardState).toEqual({ promised: { round: 2, ordinal: 0 } });
    await third.log.close();
  });

  it('refuses a non-last segment whose last records were lost to zeros (its successor records its length)', async () => {
    const { log } = await openDurableLog(dir, options);
    await writeSlots(log, 1, 100);
    await log.close();
    const files = await segmentFiles(dir);
    expect(files.length).toBeGreaterThan(2);
    // Zero the last record of the first segment, as a lost write would leave it.
    const path = join(dir, files[0]!);
    const bytes = await readFile(path);
    let end = bytes.length;
    while (end > 0 && bytes[end - 1] === 0) end -= 1;
    const recordBytes = 9 + 20 + 200;
    bytes.fill(0, end - recordBytes, end);
    await writeFile(path, bytes);
    await expect(openDurableLog(dir, options)).rejects.toThrow(/acknowledged data is lost/);
  });
});

describe('durable log: group commit', () => {
  it('shares fsyncs between concurrent sync() calls issued without waiting', async () => {
    const { log } = await openDurableLog(dir);
    const syncsAtOpen = log.stats().syncs;
    const calls = 200;
    const synced: Array<Promise<void>> = [];
    for (let slot = 1; slot <= calls; slot += 1) {
      log.append(undefined, [entry(slot)]);
      synced.push(log.sync());
    }
    await Promise.all(synced);
    const syncs = log.stats().syncs - syncsAtOpen;
    expect(syncs).toBeLessThan(calls);
    // The first call starts a flush of slot 1; the other 199 wait and share the second flush.
    expect(syncs).toBeLessThanOrEqual(2);
    await log.close();
    const reopened = await openDurableLog(dir);
    expect(reopened.recovered.entries).toHaveLength(calls);
    await reopened.log.close();
  });

  it('concurrent writers that each append and await sync() get far fewer fsyncs than calls', async () => {
    const { log } = await openDurableLog(dir);
    const writers = 16;
    const rounds = 25;
    let nextSlot = 1;
    const writer = async (): Promise<StoredEntry[]> => {
      const mine: StoredEntry[] = [];
      for (let round = 0; round < rounds; round += 1) {
        const stored = entry(nextSlot++);
        log.append(undefined, [stored]);
        await log.sync();
        mine.push(stored);
      }
      return mine;
    };
    const results = await Promise.all(Array.from({ length: writers }, writer));
    const stats = log.stats();
    expect(stats.syncs).toBeLessThan(writers * rounds);
    expect(stats.entriesPerSyncMax).toBeGreaterThan(1);
    await log.close();
    const reopened = await openDurableLog(dir);
    expect(reopened.recovered.entries).toHaveLength(results.flat().length);
    await reopened.log.close();
  });

  it('resolves each sync() only after the records queued before it are written', async () => {
    const { log } = await openDurableLog(dir, { noSync: true });
    const order: string[] = [];
    log.append(undefined, [entry(1)]);
    const first = log.sync().then(() => order.push(`first:${log.stats().recordsWritten}`));
    log.append(undefined, [entry(2)]);
    const second = log.sync().then(() => order.push(`second:${log.stats().recordsWritten}`));
    await Promise.all([first, second]);
    // Records: the segment header, then the two entries.
    expect(order[0]!.startsWith('first:')).toBe(true);
    expect(Number(order[1]!.split(':')[1])).toBe(3);
    await log.close();
  });

  it('sync() with nothing queued resolves at once', async () => {
    const { log } = await openDurableLog(dir, { noSync: true });
    const syncsBefore = log.stats().syncs;
    await log.sync();
    expect(log.stats().syncs).toBe(syncsBefore);
    await log.close();
  });
});

describe('durable log: syncNow (synchronous write)', () => {
  it('writes on the calling thread: durable when it returns true, recovered after a reopen', async () => {
    const { log } = await openDurableLog(dir);
    await log.sync(); // the new segment's header (a segment start always goes through sync())
    const syncsBefore = log.stats().syncs;
    log.append({ promised: { round: 4, ordinal: 2 } }, [entry(1, 4, 2), entry(2, 4, 2)]);
    expect(log.syncNow()).toBe(true);
    // Done before returning: no await happened.
    expect(log.stats().syncs).toBe(syncsBefore + 1);
    expect(log.syncNow()).toBe(true); // nothing queued: nothing to write
    expect(log.stats().syncs).toBe(syncsBefore + 1);
    await log.close();
    const reopened = await openDurableLog(dir);
    expect(reopened.recovered.hardState).toEqual({ promised: { round: 4, ordinal: 2 } });
    expect(plain(reopened.recovered.entries)).toEqual(plain([entry(1, 4, 2), entry(2, 4, 2)]));
    await reopened.log.close();
  });

  it('declines (writing nothing) while an asynchronous flush runs, so it never overtakes one', async () => {
    const { log } = await openDurableLog(dir, { noSync: true });
    await log.sync();
    log.append(undefined, [entry(1)]);
    const flushing = log.sync();
    log.append(undefined, [entry(2)]);
    const written = log.stats().recordsWritten;
    expect(log.syncNow()).toBe(false);
    expect(log.stats().recordsWritten).toBe(written);
    await flushing;
    expect(log.syncNow()).toBe(true);
    await log.close();
    const reopened = await openDurableLog(dir, { noSync: true });
    expect(reopened.recovered.entries.map((stored) => stored.slot)).toEqual([1, 2]);
    await reopened.log.close();
  });

  it('declines when the segment must roll over; sync() then rolls and writes', async () => {
    const { log } = await openDurableLog(dir, { segmentBytesMax: 4096, noSync: true });
    log.append(undefined, [entry(1, 1, 0, 'a'.repeat(3000))]);
    await log.sync();
    log.append(undefined, [entry(2, 1, 0, 'b'.repeat(3000))]);
    expect(log.syncNow()).toBe(false);
    expect(log.stats().segments).toBe(1);
    await log.sync();
    expect(log.stats().segments).toBe(2);
    await log.close();
    const reopened = await openDurableLog(dir, { noSync: true });
    expect(reopened.recovered.entries.map((stored) => stored.slot)).toEqual([1, 2]);
    await reopened.log.close();
  });
});

describe('durable log: I/O failure', () => {
  it('fails stop: after a failed flush every operation is refused with DurableLogFailedError', async () => {
    const { log } = await openDurableLog(dir, { segmentBytesMax: 4096, noSync: true });
    log.append(undefined, [entry(1, 1, 0, 'f'.repeat(3000))]);
    await log.sync();
    // The rollover must create log-000002.seg; a file already there makes the flush fail.
    await writeFile(join(dir, 'log-000002.seg'), 'in the way');
    log.append(undefined, [entry(2, 1, 0, 'g'.repeat(3000))]);
    const first = log.sync();
    const second = log.sync();
    await expect(first).rejects.toBeInstanceOf(DurableLogFailedError);
    await expect(second).rejects.toBeInstanceOf(DurableLogFailedError);
    expect(() => log.append(undefined, [entry(3)])).toThrow(DurableLogFailedError);
    await expect(log.sync()).rejects.toThrow(DurableLogFailedError);
    expect(() => log.syncNow()).toThrow(DurableLogFailedError);
    await expect(log.saveSnapshot({ index: 1, data: Buffer.alloc(0) })).rejects.toThrow(DurableLogFailedError);
    await log.close();
  });
});
