// Recovery's reading of one segment: a pure parser over the segment's bytes that pushes each
// good record into a sink and decides what a bad frame means. No file I/O here.
//
// A bad frame in the last segment is a torn tail (an unsynced write cut short by a crash)
// when nothing valid follows it, or when everything valid that follows belongs to the same
// write batch as the damage: a crash may persist the pages of one unsynced write in any
// order. Anything else is damage to acknowledged data and throws CorruptLogError.
//
// A segment written into a preallocated, zero-filled file ends in zeros: a bad frame followed
// only by zero bytes is the end of the records, in any segment. (That a non-last segment's
// records really end there is checked by recovery against the next segment's header.)
import { assert } from '../util/assert.js';
import { decodeFrameAt, frameHeaderBytes, RecordType, type DecodedRecord } from './record-codec.js';
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
  /** Zero bytes after the records (the unused part of a preallocated segment). */
  zeroTailBytes: number;
}

export type RecordSink = (record: DecodedRecord, offset: number) => void;

export function scanSegment(bytes: Buffer, context: SegmentScanContext, sink: RecordSink): SegmentScanResult {
  let offset = 0;
  let batchStart = 0;
  while (offset < bytes.length) {
    const frame = decodeFrameAt(bytes, offset);
    if (frame.status === 'malformed') throw new CorruptLogError(context.fileName, offset, frame.reason);
    if (frame.status === 'bad') {
      const lastNonZero = lastNonZeroByte(bytes, offset);
      if (lastNonZero < offset) return { validBytes: offset, tornTailBytes: 0, zeroTailBytes: bytes.length - offset };
      return classifyBadFrame(bytes, context, offset, batchStart, frame.reason, lastNonZero);
    }
    const recordBatchStart = offset - frame.batchOffset;
    checkPlacement(context, offset, frame.record, recordBatchStart, batchStart);
    sink(frame.record, offset);
    batchStart = recordBatchStart;
    offset += frame.frameBytes;
  }
  assert(offset === bytes.length, `scan overran ${context.fileName}: ${offset} > ${bytes.length}`);
  return { validBytes: offset, tornTailBytes: 0, zeroTailBytes: 0 };
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
  if (offset === 0 && !isHeader) throw new CorruptLogError(context.fileName, 0, 'segment does not start with a segment header');
  if (offset > 0 && isHeader) throw new CorruptLogError(context.fileName, offset, 'segment header in the middle of a segment');
  if (isHeader && record.segmentSeq !== context.segmentSeq) {
    throw new CorruptLogError(context.fileName, 0, `segment header says segment ${record.segmentSeq}, file name says ${context.segmentSeq}`);
  }
  if (recordBatchStart !== previousBatchStart && recordBatchStart !== offset) {
    throw new CorruptLogError(context.fileName, offset, `record claims a batch starting at ${recordBatchStart}, which is not a batch boundary`);
  }
}

function classifyBadFrame(
  bytes: Buffer,
  context: SegmentScanContext,
  badOffset: number,
  lastBatchStart: number,
  reason: string,
  lastNonZero: number,
): SegmentScanResult {
  if (!context.isLastSegment) {
    throw new CorruptLogError(context.fileName, badOffset, `${reason} in a segment that is not the last one`);
  }
  let tornBatchStart: number | undefined;
  let cursor = badOffset + 1;
  for (;;) {
    const found = nextValidFrame(bytes, cursor, lastNonZero);
    if (found === undefined) break;
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
  return { validBytes: badOffset, tornTailBytes: bytes.length - badOffset, zeroTailBytes: 0 };
}

/**
 * Byte-by-byte search for the next checksummed frame; only runs on a damaged tail. A frame's
 * length field is never zero, so no frame starts after the last non-zero byte: the zeros of
 * a preallocated segment are not searched.
 */
function nextValidFrame(bytes: Buffer, from: number, lastNonZero: number): { offset: number; batchOffset: number; frameBytes: number } | undefined {
  for (let offset = from; offset <= lastNonZero && offset + frameHeaderBytes <= bytes.length; offset += 1) {
    // Cheap filter before the checksum: a real frame's batch offset never points before the
    // file start. Without it, random bytes make this search spend seconds on checksums.
    const batchOffsetAt = offset + frameHeaderBytes;
    if (batchOffsetAt + 4 <= bytes.length && bytes.readUInt32LE(batchOffsetAt) > offset) continue;
    const frame = decodeFrameAt(bytes, offset);
    if (frame.status === 'valid') return { offset, batchOffset: frame.batchOffset, frameBytes: frame.frameBytes };
  }
  return undefined;
}
