// The Paxos acceptor's durable log: an append-only, segmented, checksummed file log with group
// commit. See README.md in this directory for the format and the reasons for a purpose-built log.
//
// Directory layout: `log-000001.seg`, `log-000002.seg`, ... and at most one
// `snapshot-<index>.snap`. Every segment starts with a segment header and, when one exists,
// the latest hard state, so deleting older segments after a snapshot never loses the promised
// ballot.
import { join } from 'node:path';

import { assert, invariantViolated } from '../util/assert.js';
import type {
  Ballot,
  DurableLog,
  DurableLogOptions,
  DurableLogStats,
  HardState,
  RecoveredState,
  StoredEntry,
  StoredSnapshot,
} from './durable-log-interface.js';
import { writeAll, writeAllNow } from './file-io.js';
import { nodeFileSystem, OPEN_FLAGS as fsConstants, type FileSystem, type StorageFile } from './file-system.js';
import { preparedSegmentFileName, recoverDirectory, segmentFileName, type SegmentInfo } from './log-recovery.js';
import {
  type ChecksumBinding,
  encodeEntry,
  encodeHardState,
  encodeLogClosed,
  encodeSegmentHeader,
  sealBatch,
} from './record-codec.js';
import { snapshotBytesMax, writeSnapshotFile } from './snapshot-file.js';
import { DurableLogFailedError } from './storage-errors.js';

export type * from './durable-log-interface.js';
export { CorruptLogError, DurableLogFailedError } from './storage-errors.js';

export const segmentBytesMaxDefault = 64 * 1024 * 1024;
const segmentBytesMin = 4 * 1024;
const segmentBytesLimit = 1024 * 1024 * 1024;
/** Records appended but not yet written. The driver must sync long before this fills up. */
export const queuedBytesMax = 256 * 1024 * 1024;
/** sync() callers waiting at once; far above any sane number of concurrent proposals. */
const syncWaitersMax = 1_000_000;

interface SyncWaiter {
  /** Resolved once this many appended records are durable. */
  appendedRecords: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

interface ActiveSegment {
  segmentSeq: number;
  handle: StorageFile;
  /** Bytes of records written; the next write goes at this offset. */
  bytes: number;
  /** Batches written besides the prelude; a segment without any never rolls over. */
  payloadBatches: number;
  /** Bytes of records in the previous segment, for this segment's header. */
  previousSegmentBytes: number;
  /**
   * What its checksums bind (record-codec.ts): the sequence number in a segment this code
   * started; undefined when it continues a segment of format version 1-3.
   */
  binding: ChecksumBinding;
}

/** The next segment, being zero-filled in the background (preallocateSegments). */
interface PreparedSegment {
  segmentSeq: number;
  done: Promise<void>;
}

const zeroChunkBytes = 1024 * 1024;

/**
 * Creates segment `segmentSeq` for its first write: a new empty file, or (preallocateBytes >
 * 0) the zero-filled file prepared for it, linked into place. Its name is durable only after
 * the directory fsync that follows the first batch written into it.
 */
async function createSegmentFile(
  fs: FileSystem,
  directory: string,
  segmentSeq: number,
  preallocateBytes: number,
  noSync: boolean,
  prepared: Promise<void> | undefined,
): Promise<StorageFile> {
  const path = join(directory, segmentFileName(segmentSeq));
  if (preallocateBytes === 0) return fs.open(path, segmentOpenFlags(true, noSync));
  await (prepared ?? prepareSegmentFile(fs, directory, segmentSeq, preallocateBytes, noSync));
  // link + unlink rather than rename: like O_EXCL for a new file, it refuses to replace a
  // segment that should not exist. (A crash between the two leaves the .tmp, which recovery deletes.)
  const preparedPath = join(directory, preparedSegmentFileName(segmentSeq));
  await fs.link(preparedPath, path);
  await fs.unlink(preparedPath);
  return fs.open(path, segmentOpenFlags(false, noSync));
}

/**
 * Creates `log-<seq>.seg.tmp` filled with zeros up to `bytes` and makes it durable; rolling
 * over links it into place. Real zeros, not fallocate: an fallocated extent is "unwritten"
 * and its first write still changes metadata, which is the cost this avoids.
 */
async function prepareSegmentFile(
  fs: FileSystem,
  directory: string,
  segmentSeq: number,
  bytes: number,
  noSync: boolean,
): Promise<void> {
  const handle = await fs.open(
    join(directory, preparedSegmentFileName(segmentSeq)),
    fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC,
  );
  try {
    const zeros = Buffer.alloc(Math.min(zeroChunkBytes, bytes));
    for (let at = 0; at < bytes; at += zeros.length)
      await writeAll(handle, zeros.subarray(0, Math.min(zeros.length, bytes - at)), at);
    if (!noSync) await handle.datasync();
  } finally {
    await handle.close();
  }
}

/** Records a new active segment must start with before anything else. */
interface PreludeNeeded {
  header: boolean;
  hardState: boolean;
}

/**
 * Positional writes at the end of the records (a preallocated file is longer than that); a
 * new segment refuses to reuse an existing file; O_DSYNC unless durability is switched off
 * for tests.
 */
function segmentOpenFlags(isNewFile: boolean, noSync: boolean): number {
  const base = fsConstants.O_WRONLY | (isNewFile ? fsConstants.O_CREAT | fsConstants.O_EXCL : 0);
  return noSync ? base : base | fsConstants.O_DSYNC;
}

export function compareBallots(left: Ballot, right: Ballot): number {
  return left.round !== right.round ? left.round - right.round : left.ordinal - right.ordinal;
}

interface WriteBatch {
  bytes: Buffer;
  records: number;
  /** The appended-record count this batch makes durable. */
  appendedRecords: number;
  entries: number;
  slotMax: number;
  hardState: HardState | undefined;
  hasPayload: boolean;
  preludeFrames: number;
  startsSegment: boolean;
}

class SegmentedDurableLog implements DurableLog {
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private queuedEntries = 0;
  private queuedSlotMax = -1;
  private queuedHardState: HardState | undefined;
  private appendedHardState: HardState | undefined;
  private writtenHardState: HardState | undefined;
  private appendedRecords = 0;
  private durableRecords = 0;
  private waiters: SyncWaiter[] = [];
  private flushing = false;
  private failure: DurableLogFailedError | undefined;
  private closed = false;
  private preludeNeeded: PreludeNeeded;
  /** Segments older than this one may be deleted: this one durably holds the latest hard state. */
  private preludeDurableSegmentSeq: number;
  private snapshotIndex: number | undefined;
  private snapshotFile: string | undefined;
  private snapshotQueue: Promise<void> = Promise.resolve();
  private prepared: PreparedSegment | undefined;
  private readonly counters = { syncs: 0, recordsWritten: 0, bytesWritten: 0, entriesPerSyncMax: 0 };

  constructor(
    private readonly fs: FileSystem,
    private readonly directory: string,
    private readonly segmentBytesMax: number,
    private readonly noSync: boolean,
    private readonly preallocate: boolean,
    private active: ActiveSegment,
    private readonly segments: SegmentInfo[],
    recovered: RecoveredState,
    preludeNeeded: PreludeNeeded,
    snapshotFile: string | undefined,
    private readonly onSync: ((seconds: number, synchronous: boolean) => void) | undefined,
  ) {
    assert(segments.at(-1)?.segmentSeq === active.segmentSeq, 'the active segment must be the last segment');
    this.appendedHardState = recovered.hardState;
    this.writtenHardState = recovered.hardState;
    this.preludeNeeded = preludeNeeded;
    this.preludeDurableSegmentSeq = preludeNeeded.header || preludeNeeded.hardState ? 0 : active.segmentSeq;
    this.snapshotIndex = recovered.snapshot?.index;
    this.snapshotFile = snapshotFile;
  }

  append(hardState: HardState | undefined, entries: readonly StoredEntry[]): void {
    this.checkUsable();
    const previous = this.appendedHardState;
    assert(
      hardState === undefined || previous === undefined || compareBallots(hardState.promised, previous.promised) >= 0,
      'the promised ballot must never decrease',
    );
    // Encode everything before queueing anything, so a rejected entry leaves no partial append.
    const hardStateFrame = hardState === undefined ? undefined : encodeHardState(hardState);
    const entryFrames = entries.map((entry) => encodeEntry(entry));
    if (hardState !== undefined && hardStateFrame !== undefined) {
      this.enqueue(hardStateFrame);
      // A copy: the prelude of a later segment re-encodes it, whatever the caller does with its object.
      const copy = { promised: { round: hardState.promised.round, ordinal: hardState.promised.ordinal } };
      this.appendedHardState = copy;
      this.queuedHardState = copy;
    }
    for (const [position, frame] of entryFrames.entries()) {
      this.enqueue(frame);
      this.queuedEntries += 1;
      this.queuedSlotMax = Math.max(this.queuedSlotMax, entries[position]!.slot);
    }
  }

  private enqueue(frame: Buffer): void {
    this.queue.push(frame);
    this.queuedBytes += frame.length;
    this.appendedRecords += 1;
    assert(
      this.queuedBytes <= queuedBytesMax,
      `${this.queuedBytes} bytes queued without sync(), limit ${queuedBytesMax}`,
    );
  }

  sync(): Promise<void> {
    assert(!this.closed, 'durable log used after close()');
    return this.syncQueued();
  }

  private syncQueued(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.durableRecords === this.appendedRecords) return Promise.resolve();
    if (!(this.waiters.length < syncWaitersMax))
      invariantViolated(`more than ${syncWaitersMax} concurrent sync() calls`);
    const appendedRecords = this.appendedRecords;
    const promise = new Promise<void>((resolve, reject) => this.waiters.push({ appendedRecords, resolve, reject }));
    if (!this.flushing) void this.runFlushes();
    return promise;
  }

  /** One flush at a time; callers that arrive during a flush share the next one. */
  private async runFlushes(): Promise<void> {
    assert(!this.flushing, 'two flush loops at once');
    this.flushing = true;
    try {
      while (this.waiters.length > 0) {
        // Let every writer that is ready in this turn of the event loop (resolved sync()
        // continuations, incoming messages) append first, so they share this fsync instead of
        // the first one going out alone and the rest waiting for the next.
        await this.fs.nextTurn();
        await this.flushQueued();
        const satisfied = this.waiters.findIndex((waiter) => waiter.appendedRecords > this.durableRecords);
        const resolved = this.waiters.splice(0, satisfied === -1 ? this.waiters.length : satisfied);
        for (const waiter of resolved) waiter.resolve();
      }
    } catch (error) {
      const failure = this.fail('sync', error);
      for (const waiter of this.waiters.splice(0)) waiter.reject(failure);
    } finally {
      this.flushing = false;
    }
  }

  /** Writes everything queued (after the prelude a fresh segment needs) with one O_DSYNC write. */
  private async flushQueued(): Promise<void> {
    if (this.queueOverflowsSegment()) await this.rollSegment();
    const batch = this.takeBatch();
    const started = this.onSync ? performance.now() : 0;
    // Segments are opened with O_DSYNC: a write returns once its data (and the file size) is
    // on stable storage, the guarantee of write + fdatasync in one system call and one trip
    // through the thread pool, which matters on a loaded machine.
    await writeAll(this.active.handle, batch.bytes, this.active.bytes);
    // A new segment file is only durable once its directory entry is.
    if (batch.startsSegment && !this.noSync) await this.fs.syncDirectory(this.directory);
    if (this.onSync) this.onSync((performance.now() - started) / 1000, false);
    this.batchWritten(batch);
  }

  /**
   * The same write as sync(), done now on the calling thread, when nothing else is in the way
   * (no flush running, no segment to roll or to start). A follower does this: its event loop
   * has nothing better to do while its disk write runs, and a synchronous write saves the two
   * thread hand-offs of the thread pool on every slot. False: use sync().
   */
  syncNow(): boolean {
    this.checkUsable();
    if (this.flushing || this.waiters.length > 0 || this.failure !== undefined) return false;
    if (this.durableRecords === this.appendedRecords) return true;
    if (this.preludeNeeded.header) return false;
    if (this.queueOverflowsSegment()) return false;
    const batch = this.takeBatch();
    const started = this.onSync ? performance.now() : 0;
    try {
      writeAllNow(this.active.handle, batch.bytes, this.active.bytes);
    } catch (error) {
      throw this.fail('sync', error);
    }
    if (this.onSync) this.onSync((performance.now() - started) / 1000, true);
    this.batchWritten(batch);
    return true;
  }

  /** The queued records would push a segment that already holds payload past its size: roll first. */
  private queueOverflowsSegment(): boolean {
    return this.active.payloadBatches > 0 && this.active.bytes + this.queuedBytes > this.segmentBytesMax;
  }

  private takeBatch(): WriteBatch {
    const chunks = this.queue;
    const appendedRecords = this.appendedRecords;
    const entries = this.queuedEntries;
    const slotMax = this.queuedSlotMax;
    const hardState = this.queuedHardState;
    this.queue = [];
    this.queuedBytes = 0;
    this.queuedEntries = 0;
    this.queuedSlotMax = -1;
    this.queuedHardState = undefined;
    const prelude = this.takePrelude();
    const bytes = Buffer.concat([...prelude.frames, ...chunks]);
    // Sealed for the place it is written to: takeBatch is always followed by the write at active.bytes.
    const records = sealBatch(bytes, this.active.binding, this.active.bytes);
    assert(records === prelude.frames.length + chunks.length, 'sealed record count differs from the queue');
    return {
      bytes,
      records,
      appendedRecords,
      entries,
      slotMax,
      hardState,
      hasPayload: chunks.length > 0,
      preludeFrames: prelude.frames.length,
      startsSegment: prelude.startsSegment,
    };
  }

  /** Bookkeeping once a batch is durable. */
  private batchWritten(batch: WriteBatch): void {
    this.active.bytes += batch.bytes.length;
    if (batch.hasPayload) this.active.payloadBatches += 1;
    const activeInfo = this.segments.at(-1)!;
    assert(activeInfo.segmentSeq === this.active.segmentSeq, 'segment list out of step with the active segment');
    activeInfo.slotMax = Math.max(activeInfo.slotMax, batch.slotMax);
    if (batch.hardState !== undefined) this.writtenHardState = batch.hardState;
    if (batch.preludeFrames > 0) this.preludeDurableSegmentSeq = this.active.segmentSeq;
    this.durableRecords = batch.appendedRecords;
    this.counters.syncs += 1;
    this.counters.recordsWritten += batch.records;
    this.counters.bytesWritten += batch.bytes.length;
    this.counters.entriesPerSyncMax = Math.max(this.counters.entriesPerSyncMax, batch.entries);
  }

  private takePrelude(): { frames: Buffer[]; startsSegment: boolean } {
    const frames: Buffer[] = [];
    const startsSegment = this.preludeNeeded.header;
    if (this.preludeNeeded.header)
      frames.push(encodeSegmentHeader(this.active.segmentSeq, this.active.previousSegmentBytes));
    if (this.preludeNeeded.hardState && this.writtenHardState !== undefined)
      frames.push(encodeHardState(this.writtenHardState));
    assert(this.active.bytes > 0 || startsSegment, 'an empty segment must start with its header');
    this.preludeNeeded = { header: false, hardState: false };
    return { frames, startsSegment };
  }

  /** Only called between batches, so the old segment is complete and durable. */
  private async rollSegment(): Promise<void> {
    const segmentSeq = this.active.segmentSeq + 1;
    const handle = await this.openNewSegment(segmentSeq);
    const previous = this.active.handle;
    this.active = {
      segmentSeq,
      handle,
      bytes: 0,
      payloadBatches: 0,
      previousSegmentBytes: this.active.bytes,
      binding: segmentSeq,
    };
    this.segments.push({ segmentSeq, slotMax: -1 });
    this.preludeNeeded = { header: true, hardState: true };
    await previous.close();
    this.prepareNextSegment();
  }

  /**
   * Opens segment `segmentSeq` for its first write: the zero-filled file prepared for it
   * (linked into place) or a new empty one. Either way its name is durable only after the
   * directory fsync that follows the first batch written into it.
   */
  private async openNewSegment(segmentSeq: number): Promise<StorageFile> {
    const prepared = this.prepared;
    this.prepared = undefined;
    assert(prepared === undefined || prepared.segmentSeq === segmentSeq, 'the prepared segment is not the next one');
    return createSegmentFile(
      this.fs,
      this.directory,
      segmentSeq,
      this.preallocate ? this.segmentBytesMax : 0,
      this.noSync,
      prepared?.done,
    );
  }

  /** Zero-fills the segment after the active one in the background (preallocateSegments). */
  prepareNextSegment(): void {
    if (!this.preallocate || this.closed || this.failure !== undefined) return;
    const segmentSeq = this.active.segmentSeq + 1;
    if (this.prepared?.segmentSeq === segmentSeq) return;
    const done = prepareSegmentFile(this.fs, this.directory, segmentSeq, this.segmentBytesMax, this.noSync);
    // A failure surfaces when the roll-over awaits it (and fails the log there), not here.
    done.catch(() => undefined);
    this.prepared = { segmentSeq, done };
  }

  /** Writes the prelude a recovered log still needs (a segment header, the hard state) before first use. */
  async writePendingPrelude(): Promise<void> {
    if (!this.preludeNeeded.header && !this.preludeNeeded.hardState) return;
    assert(!this.flushing && this.queue.length === 0, 'the opening prelude must be written before any append');
    try {
      await this.flushQueued();
    } catch (error) {
      throw this.fail('open', error);
    }
  }

  saveSnapshot(snapshot: StoredSnapshot): Promise<void> {
    assert(!this.closed, 'durable log used after close()');
    if (this.failure !== undefined) return Promise.reject(this.failure);
    assert(
      Number.isSafeInteger(snapshot.index) && snapshot.index >= 0,
      `snapshot index ${snapshot.index} must be a safe non-negative integer`,
    );
    assert(
      Buffer.isBuffer(snapshot.data) && snapshot.data.length <= snapshotBytesMax,
      `snapshot data must be a Buffer of at most ${snapshotBytesMax} bytes`,
    );
    const saved = this.snapshotQueue.then(() => this.saveSnapshotNow(snapshot));
    this.snapshotQueue = saved.catch(() => undefined);
    return saved;
  }

  private async saveSnapshotNow(snapshot: StoredSnapshot): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    assert(
      this.snapshotIndex === undefined || snapshot.index >= this.snapshotIndex,
      `snapshot index ${snapshot.index} is older than the stored ${this.snapshotIndex}`,
    );
    try {
      const name = await writeSnapshotFile(this.fs, this.directory, snapshot, this.noSync);
      const previous = this.snapshotFile;
      this.snapshotFile = name;
      this.snapshotIndex = snapshot.index;
      if (previous !== undefined && previous !== name) await this.fs.unlink(join(this.directory, previous));
      await this.deleteObsoleteSegments(snapshot.index);
    } catch (error) {
      throw this.fail('saveSnapshot', error);
    }
  }

  /**
   * Deletes the oldest segments while they hold no slot above the snapshot and a newer segment
   * durably repeats the hard state. One directory fsync per deletion keeps the survivors a
   * contiguous run of sequence numbers even across a crash.
   */
  private async deleteObsoleteSegments(snapshotIndex: number): Promise<void> {
    while (this.segments.length > 1) {
      const oldest = this.segments[0]!;
      if (oldest.segmentSeq >= this.preludeDurableSegmentSeq || oldest.slotMax > snapshotIndex) return;
      assert(oldest.segmentSeq < this.active.segmentSeq, 'never delete the active segment');
      this.segments.shift();
      await this.fs.unlink(join(this.directory, segmentFileName(oldest.segmentSeq)));
      if (!this.noSync) await this.fs.syncDirectory(this.directory);
    }
  }

  stats(): DurableLogStats {
    return { ...this.counters, segments: this.segments.length };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.failure === undefined) {
        await this.syncQueued();
        await this.snapshotQueue;
      }
      // Last, in a write of its own after every acknowledged one completed: recovery then
      // knows the tail is complete, and a lost earlier write shows as a hole before it.
      if (this.failure === undefined) {
        this.enqueue(encodeLogClosed());
        await this.syncQueued();
      }
    } finally {
      await this.prepared?.done.catch(() => undefined);
      await this.active.handle.close();
    }
  }

  private checkUsable(): void {
    assert(!this.closed, 'durable log used after close()');
    if (this.failure !== undefined) throw this.failure;
  }

  private fail(operation: string, error: unknown): DurableLogFailedError {
    this.failure ??= error instanceof DurableLogFailedError ? error : new DurableLogFailedError(operation, error);
    return this.failure;
  }
}

export async function openDurableLog(
  dir: string,
  options: DurableLogOptions = {},
): Promise<{ log: DurableLog; recovered: RecoveredState }> {
  const segmentBytesMax = options.segmentBytesMax ?? segmentBytesMaxDefault;
  const noSync = options.noSync ?? false;
  const preallocate = options.preallocateSegments ?? false;
  const fs = options.fileSystem ?? nodeFileSystem;
  assert(
    Number.isSafeInteger(segmentBytesMax) && segmentBytesMax >= segmentBytesMin && segmentBytesMax <= segmentBytesLimit,
    `segmentBytesMax ${segmentBytesMax} must be between ${segmentBytesMin} and ${segmentBytesLimit}`,
  );
  const layout = await recoverDirectory(fs, dir, noSync);
  const segments = layout.segments.length > 0 ? layout.segments : [{ segmentSeq: 1, slotMax: -1 }];
  const segmentSeq = segments.at(-1)!.segmentSeq;
  const isNewFile = layout.segments.length === 0;
  const handle = isNewFile
    ? await createSegmentFile(fs, dir, segmentSeq, preallocate ? segmentBytesMax : 0, noSync, undefined)
    : await fs.open(join(dir, segmentFileName(segmentSeq)), segmentOpenFlags(false, noSync));
  const bytes = layout.lastSegmentBytes;
  const active: ActiveSegment = {
    segmentSeq,
    handle,
    bytes,
    payloadBatches: bytes > 0 ? 1 : 0,
    previousSegmentBytes: layout.previousSegmentBytes,
    binding: isNewFile ? segmentSeq : layout.lastSegmentBinding,
  };
  const hasHardState = layout.recovered.hardState !== undefined;
  const preludeNeeded = { header: bytes === 0, hardState: hasHardState && !layout.lastSegmentHasHardState };
  const log = new SegmentedDurableLog(
    fs,
    dir,
    segmentBytesMax,
    noSync,
    preallocate,
    active,
    segments,
    layout.recovered,
    preludeNeeded,
    layout.snapshotFile,
    options.onSync,
  );
  try {
    await log.writePendingPrelude();
  } catch (error) {
    await handle.close();
    throw error;
  }
  log.prepareNextSegment();
  return { log, recovered: layout.recovered };
}
