// Binary framing of log records. Pure functions over Buffers: no file I/O here.
//
// Frame, little endian:
//   [payloadLength u32][crc32 u32][type u8][payload: batchOffset u32, then type-specific bytes]
// The checksum (zlib.crc32, the IEEE polynomial) covers the length, the type and the payload,
// so a damaged length field is caught like any other damaged byte.
//
// Version 4 binds each checksum to where the frame belongs: the crc32 starts from the
// segment's sequence number and the frame's byte offset in the segment (16 bytes that are
// not stored). A write the disk put at the wrong place (a misdirected write, over older
// records of this or another segment) then fails its checksums there even when it lands on
// a frame boundary, instead of reading as a valid batch that replaced acknowledged records.
// Versions 1-3 (no binding) are still read.
//
// `batchOffset` is the distance in bytes from the start of the write batch (one sync) that
// holds the record back to the record's own start. Recovery uses it to tell a torn final
// batch (pages of one unsynced write persisted out of order) from damage to earlier,
// acknowledged batches.
import { crc32 } from 'node:zlib';

import { assert, assertNever, invariantViolated } from '../util/assert.js';
import type { HardState, StoredEntry } from './durable-log-interface.js';

export const RecordType = { segmentHeader: 1, hardState: 2, entry: 3, logClosed: 4 } as const;
export type RecordType = (typeof RecordType)[keyof typeof RecordType];

export const frameHeaderBytes = 9;
const batchOffsetBytes = 4;
/** Version 1: magic, version, sequence. Version 2 adds the previous segment's length. */
const segmentHeaderV1PayloadBytes = batchOffsetBytes + 16;
const segmentHeaderPayloadBytes = batchOffsetBytes + 24;
const hardStatePayloadBytes = batchOffsetBytes + 8;
const entryPayloadBytesMin = batchOffsetBytes + 16;
/** A close record carries nothing but its batch offset. */
const logClosedPayloadBytes = batchOffsetBytes;

export const segmentMagic = 0x474c4253; // "SBLG" read as little endian bytes.
/**
 * Version 2 (preallocated segments): the header also records how many bytes of records the
 * previous segment holds, because a segment written into a zero-filled file ends in zeros and
 * its length alone no longer proves that none of its acknowledged records were lost. Version 3
 * (same header layout) adds the close record (type 4) that close() writes last, so recovery
 * can tell a clean stop from a crash and a lost final write before a clean stop is seen.
 * Versions 1 (append-only files) and 2 are still read, and close records are read in any
 * segment: a binary older than version 3 must not read a log a version 3 binary wrote.
 */
export const segmentFormatVersion = 4;
const segmentFormatVersions: readonly number[] = [1, 2, 3, 4];
/** From version 4 on, every frame's checksum covers its segment and offset (see the top of this file). */
export const firstPositionBoundVersion = 4;

/**
 * Where a frame is checked or sealed: its segment's sequence number (the checksum of a
 * version 4 segment covers it and the frame's offset), or undefined for a segment of version
 * 1-3, whose checksums cover the frame alone.
 */
export type ChecksumBinding = number | undefined;

/** The largest value one slot may hold; a batch of commands must fit in it. */
export const valueBytesMax = 16 * 1024 * 1024;
const payloadBytesMax = entryPayloadBytesMin + valueBytesMax;
const u32Max = 0xffff_ffff;

export type DecodedRecord =
  | {
      type: typeof RecordType.segmentHeader;
      segmentSeq: number;
      version: number;
      previousSegmentBytes: number | undefined;
    }
  | { type: typeof RecordType.hardState; hardState: HardState }
  | { type: typeof RecordType.entry; entry: StoredEntry }
  | { type: typeof RecordType.logClosed };

export type FrameResult =
  /** A checksummed, well-formed record. */
  | { status: 'valid'; record: DecodedRecord; frameBytes: number; batchOffset: number }
  /** Not a record: cut short, impossible length or type, or a checksum mismatch. */
  | { status: 'bad'; reason: string }
  /** The checksum matches but the contents break the format: a writer bug or a forged frame. */
  | { status: 'malformed'; reason: string };

function writeU64(buffer: Buffer, offset: number, value: number): void {
  if (!(Number.isSafeInteger(value) && value >= 0))
    invariantViolated(`u64 field must be a safe non-negative integer, got ${value}`);
  buffer.writeUInt32LE(value % 0x1_0000_0000, offset);
  buffer.writeUInt32LE(Math.floor(value / 0x1_0000_0000), offset + 4);
}

/** Returns undefined when the stored value is beyond Number.MAX_SAFE_INTEGER. */
function readU64(buffer: Buffer, offset: number): number | undefined {
  const low = buffer.readUInt32LE(offset);
  const high = buffer.readUInt32LE(offset + 4);
  if (high > 0x1f_ffff) return undefined;
  return high * 0x1_0000_0000 + low;
}

function assertBallot(round: number, ordinal: number): void {
  if (!(Number.isInteger(round) && round >= 0 && round <= u32Max))
    invariantViolated(`ballot round ${round} must be a u32`);
  if (!(Number.isInteger(ordinal) && ordinal >= 0 && ordinal <= u32Max))
    invariantViolated(`ballot ordinal ${ordinal} must be a u32`);
}

function allocateFrame(type: RecordType, payloadBytes: number): Buffer {
  assert(
    payloadBytes >= batchOffsetBytes && payloadBytes <= payloadBytesMax,
    `payload of ${payloadBytes} bytes out of range`,
  );
  const frame = Buffer.alloc(frameHeaderBytes + payloadBytes);
  frame.writeUInt32LE(payloadBytes, 0);
  frame.writeUInt8(type, 8);
  // The checksum and batchOffset are filled in by sealBatch once the batch is known.
  return frame;
}

/** `previousSegmentBytes`: the records' length in the previous segment (0 for the first). */
export function encodeSegmentHeader(segmentSeq: number, previousSegmentBytes: number): Buffer {
  if (!(Number.isSafeInteger(segmentSeq) && segmentSeq >= 1))
    invariantViolated(`segment sequence ${segmentSeq} must be >= 1`);
  const frame = allocateFrame(RecordType.segmentHeader, segmentHeaderPayloadBytes);
  frame.writeUInt32LE(segmentMagic, 13);
  frame.writeUInt32LE(segmentFormatVersion, 17);
  writeU64(frame, 21, segmentSeq);
  writeU64(frame, 29, previousSegmentBytes);
  return frame;
}

export function encodeHardState(hardState: HardState): Buffer {
  const { round, ordinal } = hardState.promised;
  assertBallot(round, ordinal);
  const frame = allocateFrame(RecordType.hardState, hardStatePayloadBytes);
  frame.writeUInt32LE(round, 13);
  frame.writeUInt32LE(ordinal, 17);
  return frame;
}

/** The last record close() writes: everything before it was durable when the log was closed. */
export function encodeLogClosed(): Buffer {
  return allocateFrame(RecordType.logClosed, logClosedPayloadBytes);
}

/** Copies the value, so the caller may reuse its buffer after append(). */
export function encodeEntry(entry: StoredEntry): Buffer {
  assertBallot(entry.ballot.round, entry.ballot.ordinal);
  if (!Buffer.isBuffer(entry.value)) invariantViolated(`slot ${entry.slot}: value must be a Buffer`);
  assert(
    entry.value.length <= valueBytesMax,
    `slot ${entry.slot}: value of ${entry.value.length} bytes exceeds ${valueBytesMax}`,
  );
  const frame = allocateFrame(RecordType.entry, entryPayloadBytesMin + entry.value.length);
  writeU64(frame, 13, entry.slot);
  frame.writeUInt32LE(entry.ballot.round, 21);
  frame.writeUInt32LE(entry.ballot.ordinal, 25);
  entry.value.copy(frame, 29);
  return frame;
}

/** The checksum's starting value: 0, or (version 4) the crc32 of the segment sequence and the frame's offset in it. */
const placement = Buffer.alloc(16); // reused: JavaScript runs one placementSeed at a time

function placementSeed(binding: ChecksumBinding, position: number): number {
  if (binding === undefined) return 0;
  writeU64(placement, 0, binding);
  writeU64(placement, 8, position);
  return crc32(placement);
}

/** `position`: the frame's offset in its segment (only used under a binding). */
function frameChecksum(
  bytes: Buffer,
  offset: number,
  payloadBytes: number,
  binding: ChecksumBinding,
  position: number,
): number {
  const lengthChecksum = crc32(bytes.subarray(offset, offset + 4), placementSeed(binding, position));
  return crc32(bytes.subarray(offset + 8, offset + frameHeaderBytes + payloadBytes), lengthChecksum);
}

/**
 * Stamps every frame of a contiguous batch (the bytes one sync writes) with its batchOffset
 * and checksum. `binding` and `batchPosition` say where the batch is written: the segment
 * (undefined: a segment of version 1-3) and the batch's offset in it. Returns the number of
 * frames.
 */
export function sealBatch(batch: Buffer, binding: ChecksumBinding, batchPosition: number): number {
  if (!(Number.isSafeInteger(batchPosition) && batchPosition >= 0))
    invariantViolated(`batch position ${batchPosition} must be a safe non-negative integer`);
  let offset = 0;
  let frames = 0;
  while (offset < batch.length) {
    if (!(batch.length - offset >= frameHeaderBytes + batchOffsetBytes))
      invariantViolated(`batch frame at ${offset} is cut short`);
    const payloadBytes = batch.readUInt32LE(offset);
    assert(
      payloadBytes >= batchOffsetBytes && payloadBytes <= payloadBytesMax,
      `batch frame at ${offset} has length ${payloadBytes}`,
    );
    batch.writeUInt32LE(offset, offset + frameHeaderBytes);
    batch.writeUInt32LE(frameChecksum(batch, offset, payloadBytes, binding, batchPosition + offset), offset + 4);
    offset += frameHeaderBytes + payloadBytes;
    frames += 1;
  }
  if (!(offset === batch.length)) invariantViolated(`batch frames overrun the batch: ${offset} > ${batch.length}`);
  return frames;
}

function expectedPayloadBytes(type: number, payloadBytes: number): boolean {
  switch (type) {
    case RecordType.segmentHeader:
      return payloadBytes === segmentHeaderPayloadBytes || payloadBytes === segmentHeaderV1PayloadBytes;
    case RecordType.hardState:
      return payloadBytes === hardStatePayloadBytes;
    case RecordType.entry:
      return payloadBytes >= entryPayloadBytesMin && payloadBytes <= payloadBytesMax;
    case RecordType.logClosed:
      return payloadBytes === logClosedPayloadBytes;
    default:
      return false;
  }
}

/** The payload length a record of this type must have when only one length is allowed. */
function fixedPayloadBytes(type: number): number | undefined {
  if (type === RecordType.hardState) return hardStatePayloadBytes;
  if (type === RecordType.logClosed) return logClosedPayloadBytes;
  // A header is 20 or 28 bytes; the shorter is the least it covers.
  if (type === RecordType.segmentHeader) return segmentHeaderV1PayloadBytes;
  return undefined;
}

/**
 * The bytes a damaged frame at `offset` claims to span, for deciding whether all of it is on
 * disk: its length field when that length is possible for its type, else the fixed length of
 * its type, else only the frame header. At least the 9 header bytes; may run past the buffer.
 */
export function claimedFrameBytes(bytes: Buffer, offset: number): number {
  if (!(bytes.length - offset >= frameHeaderBytes)) invariantViolated(`frame header at ${offset} is cut short`);
  const payloadBytes = bytes.readUInt32LE(offset);
  const type = bytes.readUInt8(offset + 8);
  if (expectedPayloadBytes(type, payloadBytes)) return frameHeaderBytes + payloadBytes;
  return frameHeaderBytes + (fixedPayloadBytes(type) ?? 0);
}

/**
 * For a frame that fails its checks: the payload length, one flipped bit away from the stored
 * one, under which the whole frame lies in `bytes` and its checksum matches (a complete frame
 * whose length field took a bit flip), or undefined. At most 32 checksums, on damage only.
 */
export function lengthBitFlipRepair(bytes: Buffer, offset: number, binding: ChecksumBinding): number | undefined {
  if (!(bytes.length - offset >= frameHeaderBytes)) invariantViolated(`frame header at ${offset} is cut short`);
  const stored = bytes.readUInt32LE(offset);
  const type = bytes.readUInt8(offset + 8);
  const storedChecksum = bytes.readUInt32LE(offset + 4);
  for (let bit = 0; bit < 32; bit += 1) {
    const candidate = (stored ^ (1 << bit)) >>> 0;
    if (!expectedPayloadBytes(type, candidate) || bytes.length - offset < frameHeaderBytes + candidate) continue;
    const lengthField = Buffer.alloc(4);
    lengthField.writeUInt32LE(candidate, 0);
    const checksum = crc32(
      bytes.subarray(offset + 8, offset + frameHeaderBytes + candidate),
      crc32(lengthField, placementSeed(binding, offset)),
    );
    if (checksum === storedChecksum) return candidate;
  }
  return undefined;
}

/**
 * Reads the frame that starts at `offset` of a segment's bytes (`bytes` starts at the
 * segment's first byte: under a binding the checksum covers `offset`). Never throws on bad input.
 */
export function decodeFrameAt(bytes: Buffer, offset: number, binding: ChecksumBinding): FrameResult {
  if (!(Number.isSafeInteger(offset) && offset >= 0 && offset <= bytes.length))
    invariantViolated(`decode offset ${offset} out of range`);
  if (bytes.length - offset < frameHeaderBytes) return { status: 'bad', reason: 'frame header cut short' };
  const payloadBytes = bytes.readUInt32LE(offset);
  const type = bytes.readUInt8(offset + 8);
  if (!expectedPayloadBytes(type, payloadBytes)) {
    return { status: 'bad', reason: `impossible frame: type ${type} with payload length ${payloadBytes}` };
  }
  const frameBytes = frameHeaderBytes + payloadBytes;
  if (bytes.length - offset < frameBytes) return { status: 'bad', reason: 'frame cut short' };
  if (bytes.readUInt32LE(offset + 4) !== frameChecksum(bytes, offset, payloadBytes, binding, offset)) {
    return { status: 'bad', reason: 'checksum mismatch' };
  }
  const batchOffset = bytes.readUInt32LE(offset + frameHeaderBytes);
  if (batchOffset > offset)
    return { status: 'malformed', reason: `batch offset ${batchOffset} points before the file start` };
  const decoded = decodePayload(
    bytes,
    offset + frameHeaderBytes + batchOffsetBytes,
    offset + frameBytes,
    type as RecordType,
  );
  if (typeof decoded === 'string') return { status: 'malformed', reason: decoded };
  return { status: 'valid', record: decoded, frameBytes, batchOffset };
}

/** Returns the record, or a string saying why the checksummed payload is unusable. */
function decodePayload(bytes: Buffer, start: number, end: number, type: RecordType): DecodedRecord | string {
  switch (type) {
    case RecordType.segmentHeader: {
      if (bytes.readUInt32LE(start) !== segmentMagic) return 'segment header has the wrong magic number';
      const version = bytes.readUInt32LE(start + 4);
      if (!segmentFormatVersions.includes(version)) return `unsupported segment format version ${version}`;
      const payloadBytes = version === 1 ? segmentHeaderV1PayloadBytes : segmentHeaderPayloadBytes;
      if (end - start !== payloadBytes - batchOffsetBytes)
        return `segment header of version ${version} has the wrong length`;
      const segmentSeq = readU64(bytes, start + 8);
      if (segmentSeq === undefined || segmentSeq < 1) return 'segment header has an impossible sequence number';
      if (version === 1) return { type, segmentSeq, version, previousSegmentBytes: undefined };
      const previousSegmentBytes = readU64(bytes, start + 16);
      if (previousSegmentBytes === undefined) return 'segment header has an impossible previous segment length';
      return { type, segmentSeq, version, previousSegmentBytes };
    }
    case RecordType.hardState: {
      const promised = { round: bytes.readUInt32LE(start), ordinal: bytes.readUInt32LE(start + 4) };
      return { type, hardState: { promised } };
    }
    case RecordType.entry: {
      const slot = readU64(bytes, start);
      if (slot === undefined) return 'entry slot beyond the safe integer range';
      const ballot = { round: bytes.readUInt32LE(start + 8), ordinal: bytes.readUInt32LE(start + 12) };
      // Copy: recovered values must not pin the whole segment buffer in memory.
      const value = Buffer.from(bytes.subarray(start + 16, end));
      assert(value.length === end - start - 16, 'decoded value length disagrees with the frame');
      return { type, entry: { slot, ballot, value } };
    }
    case RecordType.logClosed:
      return { type };
    default:
      return assertNever(type, 'record type');
  }
}
