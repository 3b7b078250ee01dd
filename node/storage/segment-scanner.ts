// Recovery's reading of one segment: a pure parser over the segment's bytes that pushes each
// good record into a sink and decides what a bad frame means. No file I/O here.
//
// Torn versus corrupt. The only tail that may be cut off is an *incomplete* final write: an
// O_DSYNC write that did not complete was never acknowledged. The fault model of a crash is
// that each aligned 512-byte sector of an unfinished write either holds its new bytes or
// keeps its old ones (sector writes are atomic), and the file may end anywhere inside it.
// The old contents of a sector at or after the end of the records are zeros: a preallocated
// segment is zero-filled, an append-only one reads zeros where it grew without its data, and
// every byte of a segment is written once. So a bad frame in the last segment is *incomplete*
// (torn: truncate it and everything after it) exactly when
//   - the file ends before the frame's claimed extent does (or inside its 9-byte header), or
//   - some aligned 512-byte sector that overlaps the claimed extent is all zeros from the
//     frame's start on (the part of the write that never landed),
// and no valid record of a later write batch follows it. The claimed extent is the length
// field when that length is possible for the frame's type (else the type's fixed length,
// else the header alone). A frame whose whole extent is present and in non-zero sectors, yet
// fails its checksum or has an impossible header, is a *complete* damaged frame: its write
// finished, so it may have been acknowledged: CorruptLogError with the file and offset. A
// single flipped bit in the length field that makes a complete frame claim more bytes than it
// has (into the zeros after it, or past the file's end) is recognised too: if one bit of the
// length field, flipped back, makes the checksum match, the frame is complete and corrupt.
//
// What this cannot see (README.md, "What recovery cannot see"): damage of two or more bits in
// a length field that points past the data, damage in a frame that also holds a whole zero
// sector of its own value, and a lost write (zeros where an acknowledged batch was) at the
// very end of the log after a crash, which reads as a clean end or a torn tail. Recovery
// reports every torn tail (RecoveredState.truncated) and whether the log was closed cleanly
// (cleanShutdown), so the replica can re-learn from its peers before it votes.
//
// Misdirected writes. From format version 4 a frame's checksum covers its segment's sequence
// number and its offset (record-codec.ts), so a batch the disk wrote to the wrong place fails
// there: where it landed over acknowledged records it is a complete damaged frame
// (CorruptLogError), and the place it belonged keeps its old bytes (zeros at the end of the
// records: the end of the log, as for any lost final write). Without the binding, a batch
// that landed on a frame boundary read as valid records that replaced acknowledged ones. The
// binding is chosen per segment from its header: a header of version 1-3 was written
// without it and so is the rest of that segment.
//
// A segment written into a preallocated, zero-filled file ends in zeros: a bad frame followed
// only by zero bytes is the end of the records, in any segment. (That a non-last segment's
// records really end there is checked by recovery against the next segment's header.)
import { invariantViolated } from '../util/assert.js';
import {
  type ChecksumBinding,
  claimedFrameBytes,
  decodeFrameAt,
  firstPositionBoundVersion,
  frameHeaderBytes,
  lengthBitFlipRepair,
  RecordType,
  type DecodedRecord,
} from './record-codec.js';
import { CorruptLogError } from './storage-errors.js';

export interface SegmentScanContext {
  fileName: string;
  segmentSeq: number;
  isLastSegment: boolean;
}

export interface SegmentScanResult {
  /** Length of the intact prefix; the file is truncated to it when there is a torn tail. */
  validBytes: number;
  tornTailBytes: number;
  /** Why the torn tail is taken for an incomplete, never-acknowledged write; set when tornTailBytes > 0. */
  tornReason?: string;
  /** Zero bytes after the records (the unused part of a preallocated segment). */
  zeroTailBytes: number;
  /** The segment's checksums bind their place (version 4 on): the writer continues the same way. */
  binding: ChecksumBinding;
}

export type RecordSink = (record: DecodedRecord, offset: number) => void;

export function scanSegment(bytes: Buffer, context: SegmentScanContext, sink: RecordSink): SegmentScanResult {
  const binding = segmentBinding(bytes, context);
  let offset = 0;
  let batchStart = 0;
  while (offset < bytes.length) {
    const frame = decodeFrameAt(bytes, offset, binding);
    if (frame.status === 'malformed') throw new CorruptLogError(context.fileName, offset, frame.reason);
    if (frame.status === 'bad') {
      const lastNonZero = lastNonZeroByte(bytes, offset);
      const zeroTail = { validBytes: offset, tornTailBytes: 0, zeroTailBytes: bytes.length - offset, binding };
      if (lastNonZero < offset) return zeroTail;
      return { ...classifyBadFrame(bytes, context, binding, offset, batchStart, frame.reason, lastNonZero), binding };
    }
    const recordBatchStart = offset - frame.batchOffset;
    checkPlacement(context, offset, frame.record, recordBatchStart, batchStart);
    sink(frame.record, offset);
    batchStart = recordBatchStart;
    offset += frame.frameBytes;
  }
  if (!(offset === bytes.length)) invariantViolated(`scan overran ${context.fileName}: ${offset} > ${bytes.length}`);
  return { validBytes: offset, tornTailBytes: 0, zeroTailBytes: 0, binding };
}

/**
 * Whether this segment's checksums bind their place (version 4 on): its header, checked both
 * ways, says which. A header that is valid under neither is left to the scan as a bad frame
 * (bound: what this code writes).
 */
function segmentBinding(bytes: Buffer, context: SegmentScanContext): ChecksumBinding {
  const bound = decodeFrameAt(bytes, 0, context.segmentSeq);
  if (bound.status !== 'bad') return context.segmentSeq;
  const unbound = decodeFrameAt(bytes, 0, undefined);
  if (
    unbound.status === 'valid' &&
    unbound.record.type === RecordType.segmentHeader &&
    unbound.record.version < firstPositionBoundVersion
  )
    return undefined;
  // A version 4 header sealed for another segment: a renamed or misplaced file, said as such.
  // The header's sequence field: frame header (9), batch offset (4), magic (4), version (4).
  const headerSeqAt = 21;
  if (bytes.length >= headerSeqAt + 16) {
    const claimedSeq = bytes.readUInt32LE(headerSeqAt) + bytes.readUInt32LE(headerSeqAt + 4) * 0x1_0000_0000;
    if (Number.isSafeInteger(claimedSeq) && claimedSeq >= 1 && claimedSeq !== context.segmentSeq) {
      const other = decodeFrameAt(bytes, 0, claimedSeq);
      if (other.status === 'valid' && other.record.type === RecordType.segmentHeader) {
        throw new CorruptLogError(
          context.fileName,
          0,
          `segment header says segment ${other.record.segmentSeq}, file name says ${context.segmentSeq}`,
        );
      }
    }
  }
  return context.segmentSeq;
}

/** Index of the last non-zero byte at or after `from`, or from - 1 when there is none. */
function lastNonZeroByte(bytes: Buffer, from: number): number {
  let index = bytes.length - 1;
  while (index >= from && bytes[index] === 0) index -= 1;
  return index;
}

/** A segment starts with its own header, and a record either continues the batch or starts one. */
function checkPlacement(
  context: SegmentScanContext,
  offset: number,
  record: DecodedRecord,
  recordBatchStart: number,
  previousBatchStart: number,
): void {
  const isHeader = record.type === RecordType.segmentHeader;
  if (offset === 0 && !isHeader)
    throw new CorruptLogError(context.fileName, 0, 'segment does not start with a segment header');
  if (offset > 0 && isHeader)
    throw new CorruptLogError(context.fileName, offset, 'segment header in the middle of a segment');
  if (isHeader && record.segmentSeq !== context.segmentSeq) {
    throw new CorruptLogError(
      context.fileName,
      0,
      `segment header says segment ${record.segmentSeq}, file name says ${context.segmentSeq}`,
    );
  }
  if (recordBatchStart !== previousBatchStart && recordBatchStart !== offset) {
    throw new CorruptLogError(
      context.fileName,
      offset,
      `record claims a batch starting at ${recordBatchStart}, which is not a batch boundary`,
    );
  }
}

/** Atomic unit of a disk write: a crash leaves each aligned sector all old or all new. */
export const sectorBytes = 512;

function classifyBadFrame(
  bytes: Buffer,
  context: SegmentScanContext,
  binding: ChecksumBinding,
  badOffset: number,
  lastBatchStart: number,
  reason: string,
  lastNonZero: number,
): Omit<SegmentScanResult, 'binding'> {
  if (!context.isLastSegment) {
    throw new CorruptLogError(context.fileName, badOffset, `${reason} in a segment that is not the last one`);
  }
  const incomplete = incompleteWriteEvidence(bytes, badOffset, binding);
  if (typeof incomplete !== 'string') {
    // One line: scripts/mutants.json edits it (storage-complete-damaged-frame-truncated).
    // prettier-ignore
    throw new CorruptLogError(context.fileName, badOffset, `${reason} in a complete frame (${incomplete.complete}): acknowledged data is damaged`);
  }
  checkNothingLaterFollows(bytes, context, binding, badOffset, lastBatchStart, reason, lastNonZero);
  return {
    validBytes: badOffset,
    tornTailBytes: bytes.length - badOffset,
    zeroTailBytes: 0,
    tornReason: `${reason}: ${incomplete}`,
  };
}

/**
 * Why the bad frame at `offset` is an incomplete write (a string), or why it is complete.
 * Incomplete: the file ends inside its claimed extent, or a sector overlapping that extent
 * is all zeros from the frame's start on. See the comment at the top of this file.
 */
function incompleteWriteEvidence(
  bytes: Buffer,
  offset: number,
  binding: ChecksumBinding,
): string | { complete: string } {
  const presentBytes = bytes.length - offset;
  if (presentBytes < frameHeaderBytes) return `the file ends ${presentBytes} bytes into the frame header`;
  const repairedPayloadBytes = lengthBitFlipRepair(bytes, offset, binding);
  if (repairedPayloadBytes !== undefined) {
    return {
      complete: `its length field reads ${bytes.readUInt32LE(offset)}, one bit away from ${repairedPayloadBytes}, under which its checksum matches`,
    };
  }
  const claimedEnd = offset + claimedFrameBytes(bytes, offset);
  if (claimedEnd > bytes.length)
    return `the file ends at byte ${bytes.length}, inside the frame's ${claimedEnd - offset} bytes`;
  const zeroFrom = unwrittenSectorStart(bytes, offset, claimedEnd);
  if (zeroFrom !== undefined)
    return `the ${sectorBytes}-byte sector holding byte ${zeroFrom} is all zeros from there on: that part of the write never landed`;
  return { complete: `all ${claimedEnd - offset} bytes it claims are present, in sectors that are not zero` };
}

/**
 * The first byte of an aligned sector overlapping [from, claimedEnd) whose bytes from `from`
 * on (to the sector's end or the file's) are all zero, or undefined. The part of a sector
 * before `from` belongs to earlier records and is ignored: a lost sector keeps those bytes.
 */
function unwrittenSectorStart(bytes: Buffer, from: number, claimedEnd: number): number | undefined {
  if (!(claimedEnd > from && claimedEnd <= bytes.length))
    invariantViolated(`claimed extent ${from}..${claimedEnd} outside the segment`);
  for (let sectorStart = from - (from % sectorBytes); sectorStart < claimedEnd; sectorStart += sectorBytes) {
    const start = Math.max(sectorStart, from);
    const end = Math.min(sectorStart + sectorBytes, bytes.length);
    if (isAllZero(bytes, start, end)) return start;
  }
  return undefined;
}

function isAllZero(bytes: Buffer, start: number, end: number): boolean {
  for (let index = start; index < end; index += 1) if (bytes[index] !== 0) return false;
  return true;
}

/**
 * A torn write may have landed pages after its damage (the pages of one write persist in any
 * order), so valid records of the damaged batch may follow. A valid record of a later batch
 * may not: that batch was written only after this one's write completed.
 */
function checkNothingLaterFollows(
  bytes: Buffer,
  context: SegmentScanContext,
  binding: ChecksumBinding,
  badOffset: number,
  lastBatchStart: number,
  reason: string,
  lastNonZero: number,
): void {
  let tornBatchStart: number | undefined;
  let cursor = badOffset + 1;
  for (;;) {
    const found = nextValidFrame(bytes, cursor, lastNonZero, binding);
    if (found === undefined) return;
    const foundBatchStart = found.offset - found.batchOffset;
    const sameBatchAsDamage = foundBatchStart === badOffset || foundBatchStart === lastBatchStart;
    if (!sameBatchAsDamage || (tornBatchStart !== undefined && foundBatchStart !== tornBatchStart)) {
      throw new CorruptLogError(
        context.fileName,
        badOffset,
        `${reason}, but a valid record of a later write batch follows at offset ${found.offset}: acknowledged data is damaged`,
      );
    }
    tornBatchStart = foundBatchStart;
    cursor = found.offset + found.frameBytes;
  }
}

/**
 * Byte-by-byte search for the next checksummed frame; only runs on a damaged tail. A frame's
 * length field is never zero, so no frame starts after the last non-zero byte: the zeros of
 * a preallocated segment are not searched.
 */
function nextValidFrame(
  bytes: Buffer,
  from: number,
  lastNonZero: number,
  binding: ChecksumBinding,
): { offset: number; batchOffset: number; frameBytes: number } | undefined {
  for (let offset = from; offset <= lastNonZero && offset + frameHeaderBytes <= bytes.length; offset += 1) {
    // Cheap filter before the checksum: a real frame's batch offset never points before the
    // file start. Without it, random bytes make this search spend seconds on checksums.
    const batchOffsetAt = offset + frameHeaderBytes;
    if (batchOffsetAt + 4 <= bytes.length && bytes.readUInt32LE(batchOffsetAt) > offset) continue;
    const frame = decodeFrameAt(bytes, offset, binding);
    if (frame.status === 'valid') return { offset, batchOffset: frame.batchOffset, frameBytes: frame.frameBytes };
  }
  return undefined;
}
