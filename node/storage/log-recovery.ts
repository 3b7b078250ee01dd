// Startup: reads the data directory back into a RecoveredState plus the layout the writer
// continues from. Torn tails (incomplete final writes, see segment-scanner.ts) are truncated
// here and listed in RecoveredState.truncated; damaged acknowledged data throws.
import { dirname, join } from 'node:path';

import { assert, invariantViolated } from '../util/assert.js';
import type { HardState, RecoveredState, StoredEntry, StoredSnapshot, TruncatedTail } from './durable-log-interface.js';
import type { FileSystem } from './file-system.js';
import { RecordType, type ChecksumBinding, type DecodedRecord } from './record-codec.js';
import { scanSegment } from './segment-scanner.js';
import { isSnapshotTempFileName, parseSnapshotFileName, readSnapshotFile } from './snapshot-file.js';
import { CorruptLogError } from './storage-errors.js';

const segmentNamePattern = /^log-(\d{6,})\.seg$/;
/** A segment being zero-filled in advance; linked to its segment name when it is needed. */
const preparedSegmentPattern = /^log-(\d{6,})\.seg\.tmp$/;

export function preparedSegmentFileName(segmentSeq: number): string {
  return `${segmentFileName(segmentSeq)}.tmp`;
}

export function segmentFileName(segmentSeq: number): string {
  if (!(Number.isSafeInteger(segmentSeq) && segmentSeq >= 1))
    invariantViolated(`segment sequence ${segmentSeq} must be >= 1`);
  return `log-${String(segmentSeq).padStart(6, '0')}.seg`;
}

function parseSegmentFileName(name: string): number | undefined {
  const match = segmentNamePattern.exec(name);
  if (match === null) return undefined;
  const segmentSeq = Number(match[1]);
  return Number.isSafeInteger(segmentSeq) && segmentSeq >= 1 ? segmentSeq : undefined;
}

/** What the writer needs to know about a segment file to decide when it may be deleted. */
export interface SegmentInfo {
  segmentSeq: number;
  /** Highest slot of any entry record in the segment; -1 when it holds none. */
  slotMax: number;
}

export interface RecoveredLayout {
  recovered: RecoveredState;
  /** Every segment file, oldest first; the last one is where appends continue. Empty for a new directory. */
  segments: SegmentInfo[];
  lastSegmentBytes: number;
  /** Bytes of records in the segment before the last (0 if none): its header records it. */
  previousSegmentBytes: number;
  lastSegmentHasHardState: boolean;
  /** How the last segment's checksums bind their place (record-codec.ts); appends continue alike. */
  lastSegmentBinding: ChecksumBinding;
  snapshotFile: string | undefined;
}

export async function recoverDirectory(fs: FileSystem, directory: string, noSync: boolean): Promise<RecoveredLayout> {
  const firstCreated = await fs.mkdirRecursive(directory);
  // A directory created here is only durable once its own parent's entry for it is.
  if (firstCreated !== undefined && !noSync) await fs.syncDirectory(dirname(firstCreated));
  const names = await fs.readdir(directory);
  // A zero-filled segment prepared in advance may be incomplete; a new one is made when needed.
  await removeLeftovers(
    fs,
    directory,
    names.filter((name) => isSnapshotTempFileName(name) || preparedSegmentPattern.test(name)),
    noSync,
  );
  const { snapshot, snapshotFile } = await recoverSnapshot(fs, directory, names, noSync);
  const segmentSeqs = listSegments(directory, names);
  if (segmentSeqs.length === 0 && snapshot !== undefined) {
    throw new CorruptLogError(directory, 0, 'a snapshot exists but no log segment does: the promised ballot is lost');
  }
  const snapshotIndex = snapshot?.index ?? -1;
  const latestBySlot = new Map<number, StoredEntry>();
  let hardState: HardState | undefined;
  let lastSegmentHasHardState = false;
  let lastSegmentBinding: ChecksumBinding;
  let lastRecordClosesLog = false;
  let lastSegmentBytes = 0;
  let previousSegmentBytes = 0;
  let previousZeroTailBytes = 0;
  const truncated: TruncatedTail[] = [];
  const segments: SegmentInfo[] = [];
  for (const [position, segmentSeq] of segmentSeqs.entries()) {
    const isLastSegment = position === segmentSeqs.length - 1;
    // The full path: a CorruptLogError must say exactly which file an operator has to look at.
    const fileName = join(directory, segmentFileName(segmentSeq));
    const bytes = await fs.readFile(fileName);
    const info: SegmentInfo = { segmentSeq, slotMax: -1 };
    let segmentHasHardState = false;
    let segmentEndsWithClose = false;
    const sink = (record: DecodedRecord): void => {
      segmentEndsWithClose = record.type === RecordType.logClosed;
      if (record.type === RecordType.segmentHeader && position > 0) {
        checkPreviousSegmentEnd(
          fileName,
          join(directory, segmentFileName(segmentSeqs[position - 1]!)),
          record,
          lastSegmentBytes,
          previousZeroTailBytes,
        );
      }
      if (record.type === RecordType.hardState) {
        hardState = record.hardState;
        segmentHasHardState = true;
      } else if (record.type === RecordType.entry) {
        info.slotMax = Math.max(info.slotMax, record.entry.slot);
        // A later record for a slot supersedes an earlier one: the acceptor accepted again.
        if (record.entry.slot > snapshotIndex) latestBySlot.set(record.entry.slot, record.entry);
      }
    };
    const scan = scanSegment(bytes, { fileName, segmentSeq, isLastSegment }, sink);
    assert(
      scan.validBytes + scan.tornTailBytes + scan.zeroTailBytes === bytes.length,
      `${fileName}: scan does not account for every byte`,
    );
    if (scan.tornTailBytes > 0) {
      assert(
        isLastSegment && scan.tornReason !== undefined,
        `${fileName}: a torn tail outside the last segment, or without a reason`,
      );
      await truncateTornTail(fs, fileName, scan.validBytes, noSync);
      truncated.push({ file: fileName, offset: scan.validBytes, bytes: scan.tornTailBytes, reason: scan.tornReason });
    }
    segments.push(info);
    previousSegmentBytes = position > 0 ? lastSegmentBytes : 0;
    lastSegmentBytes = scan.validBytes;
    previousZeroTailBytes = scan.zeroTailBytes;
    lastSegmentHasHardState = segmentHasHardState;
    lastSegmentBinding = scan.binding;
    lastRecordClosesLog = segmentEndsWithClose && scan.tornTailBytes === 0;
  }
  const entries = [...latestBySlot.values()].sort((left, right) => left.slot - right.slot);
  assert(
    entries.every((entry) => entry.slot > snapshotIndex),
    'recovered an entry at or below the snapshot index',
  );
  const tornTailBytes = truncated.reduce((sum, tail) => sum + tail.bytes, 0);
  const recovered: RecoveredState = {
    hardState,
    snapshot,
    entries,
    tornTailBytes,
    truncated,
    cleanShutdown: lastRecordClosesLog,
  };
  return {
    recovered,
    segments,
    lastSegmentBytes,
    previousSegmentBytes,
    lastSegmentHasHardState,
    // An empty last segment (its header lost) gets a new header: version 4, bound.
    lastSegmentBinding: lastSegmentBytes === 0 ? segments.at(-1)?.segmentSeq : lastSegmentBinding,
    snapshotFile,
  };
}

/**
 * A segment's header records how many bytes of records the previous segment holds (version
 * 2). A preallocated segment ends in zeros, so this is what proves that no acknowledged record
 * at its end was lost; a version 1 header (append-only files) allows no zero tail at all.
 */
function checkPreviousSegmentEnd(
  fileName: string,
  previousFileName: string,
  header: Extract<DecodedRecord, { type: typeof RecordType.segmentHeader }>,
  previousValidBytes: number,
  previousZeroTailBytes: number,
): void {
  if (header.previousSegmentBytes === undefined) {
    if (previousZeroTailBytes > 0) {
      throw new CorruptLogError(
        previousFileName,
        previousValidBytes,
        `zero bytes after the records of a segment followed by a version ${header.version} segment`,
      );
    }
    return;
  }
  if (header.previousSegmentBytes !== previousValidBytes) {
    throw new CorruptLogError(
      previousFileName,
      previousValidBytes,
      `its records end at byte ${previousValidBytes} but ${fileName} says ${header.previousSegmentBytes}: acknowledged data is lost`,
    );
  }
}

/** Segment sequence numbers in order; a gap means a segment file went missing. */
function listSegments(directory: string, names: readonly string[]): number[] {
  const segmentSeqs = names
    .map(parseSegmentFileName)
    .filter((segmentSeq): segmentSeq is number => segmentSeq !== undefined)
    .sort((left, right) => left - right);
  for (let position = 1; position < segmentSeqs.length; position += 1) {
    const expected = segmentSeqs[position - 1]! + 1;
    if (segmentSeqs[position] !== expected) {
      throw new CorruptLogError(
        join(directory, segmentFileName(expected)),
        0,
        'log segment is missing between its neighbours',
      );
    }
  }
  return segmentSeqs;
}

/**
 * Loads the newest snapshot. Older ones are leftovers of a crash between the rename of a new
 * snapshot and the deletion of the previous one, and are removed.
 */
async function recoverSnapshot(
  fs: FileSystem,
  directory: string,
  names: readonly string[],
  noSync: boolean,
): Promise<{ snapshot: StoredSnapshot | undefined; snapshotFile: string | undefined }> {
  const snapshotNames = names
    .filter((name) => parseSnapshotFileName(name) !== undefined)
    .sort((left, right) => parseSnapshotFileName(left)! - parseSnapshotFileName(right)!);
  const snapshotFile = snapshotNames.at(-1);
  if (snapshotFile === undefined) return { snapshot: undefined, snapshotFile: undefined };
  const snapshot = await readSnapshotFile(fs, directory, snapshotFile);
  await removeLeftovers(fs, directory, snapshotNames.slice(0, -1), noSync);
  return { snapshot, snapshotFile };
}

async function removeLeftovers(
  fs: FileSystem,
  directory: string,
  names: readonly string[],
  noSync: boolean,
): Promise<void> {
  for (const name of names) await fs.unlink(join(directory, name));
  if (names.length > 0 && !noSync) await fs.syncDirectory(directory);
}

/** The torn bytes were never acknowledged (their fsync never completed); cut them off for good. */
async function truncateTornTail(fs: FileSystem, path: string, validBytes: number, noSync: boolean): Promise<void> {
  const file = await fs.open(path, 'r+');
  try {
    await file.truncate(validBytes);
    if (!noSync) await file.sync();
    const size = await file.size();
    if (!(size === validBytes)) invariantViolated(`${path}: truncated to ${size} bytes, expected ${validBytes}`);
  } finally {
    await file.close();
  }
}
