// Recovery's reading of one segment: a pure parser over the segment's bytes that pushes each
// good record into a sink and decides what a bad frame means. No file I/O here.
//
// A bad frame in the last segment is a torn tail (an unsynced write cut short by a crash)
// when nothing valid follows it, or when everything valid that follows belongs to the same
// write batch as the damage: a crash may persist the pages of one unsynced write in any
// order. Anything else is damage to acknowledged data and throws CorruptLogError.
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
}

export type RecordSink = (record: DecodedRecord, offset: number) => void;

export function scanSegment(bytes: Buffer, context: SegmentScanContext, sink: RecordSink): SegmentScanResult {
  let offset = 0;
  let batchStart = 0;
  while (offset < bytes.length) {
    const frame = decodeFrameAt(bytes, offset);
    if (frame.status === 'malformed') throw new CorruptLogError(context.fileName, offset, frame.reason);
    if (frame.status === 'bad') return classifyBadFrame(bytes, context, offset, batchStart, frame.reason);
    const recordBatchStart = offset - frame.batchOffset;
    checkPlacement(context, offset, frame.record, recordBatchStart, batchStart);
    sink(frame.record, offset);
    batchStart = recordBatchStart;
    offset += frame.frameBytes;
  }
  assert(offset === bytes.length, `scan overran ${context.fileName}: ${offset} > ${bytes.length}`);
  return { validBytes: offset, tornTailBytes: 0 };
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
): SegmentScanResult {
  if (!context.isLastSegment) {
    throw new CorruptLogError(context.fileName, badOffset, `${reason} in a segment that is not the last one`);
  }
  let tornBatchStart: number | undefined;
  let cursor = badOffset + 1;
  for (;;) {
    const found = nextValidFrame(bytes, cursor);
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
  return { validBytes: badOffset, tornTailBytes: bytes.length - badOffset };
}

/** Byte-by-byte search for the next checksummed frame; only runs on a damaged tail. */
function nextValidFrame(bytes: Buffer, from: number): { offset: number; batchOffset: number; frameBytes: number } | undefined {
  for (let offset = from; offset + frameHeaderBytes <= bytes.length; offset += 1) {
    // Cheap filter before the checksum: a real frame's batch offset never points before the
    // file start. Without it, random bytes make this search spend seconds on checksums.
    const batchOffsetAt = offset + frameHeaderBytes;
    if (batchOffsetAt + 4 <= bytes.length && bytes.readUInt32LE(batchOffsetAt) > offset) continue;
    const frame = decodeFrameAt(bytes, offset);
    if (frame.status === 'valid') return { offset, batchOffset: frame.batchOffset, frameBytes: frame.frameBytes };
  }
  return undefined;
}
