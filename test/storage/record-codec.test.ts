// The pure framing layer, fed byte by byte.
import { describe, expect, it } from 'vitest';

import { decodeFrameAt, encodeEntry, encodeHardState, encodeSegmentHeader, RecordType, sealBatch } from '../../node/storage/record-codec.js';
import { scanSegment } from '../../node/storage/segment-scanner.js';
import { CorruptLogError } from '../../node/storage/storage-errors.js';
import { InvariantViolation } from '../../node/util/assert.js';

function batchOf(...frames: Buffer[]): Buffer {
  const batch = Buffer.concat(frames);
  sealBatch(batch);
  return batch;
}

describe('record codec', () => {
  it('round-trips every record type, with u64 slots and u32 ballots', () => {
    const batch = batchOf(
      encodeSegmentHeader(3, 123_456_789),
      encodeHardState({ promised: { round: 0xffff_ffff, ordinal: 4 } }),
      encodeEntry({ slot: Number.MAX_SAFE_INTEGER, ballot: { round: 9, ordinal: 2 }, value: Buffer.from([0, 1, 2, 255]) }),
    );
    const records = [];
    for (let offset = 0; offset < batch.length; ) {
      const frame = decodeFrameAt(batch, offset);
      expect(frame.status).toBe('valid');
      if (frame.status !== 'valid') break;
      expect(frame.batchOffset).toBe(offset);
      records.push(frame.record);
      offset += frame.frameBytes;
    }
    expect(records).toEqual([
      { type: RecordType.segmentHeader, segmentSeq: 3, version: 2, previousSegmentBytes: 123_456_789 },
      { type: RecordType.hardState, hardState: { promised: { round: 0xffff_ffff, ordinal: 4 } } },
      { type: RecordType.entry, entry: { slot: Number.MAX_SAFE_INTEGER, ballot: { round: 9, ordinal: 2 }, value: Buffer.from([0, 1, 2, 255]) } },
    ]);
  });

  it('still reads a version 1 segment header (append-only segments, no previous length)', () => {
    // Version 1 layout: magic, version, sequence; no previous segment length.
    const v1 = Buffer.alloc(9 + 20);
    v1.writeUInt32LE(20, 0);
    v1.writeUInt8(RecordType.segmentHeader, 8);
    v1.writeUInt32LE(0x474c4253, 13);
    v1.writeUInt32LE(1, 17);
    v1.writeUInt32LE(7, 21);
    sealBatch(v1);
    const frame = decodeFrameAt(v1, 0);
    expect(frame.status === 'valid' && frame.record).toEqual({ type: RecordType.segmentHeader, segmentSeq: 7, version: 1, previousSegmentBytes: undefined });
    // A version 2 number on a version 1 length is refused, not misread.
    v1.writeUInt32LE(2, 17);
    sealBatch(v1);
    expect(decodeFrameAt(v1, 0).status).toBe('malformed');
  });

  it('reports every strict prefix of a frame as bad, never throwing', () => {
    const frame = batchOf(encodeEntry({ slot: 1, ballot: { round: 1, ordinal: 0 }, value: Buffer.from('abc') }));
    for (let length = 0; length < frame.length; length += 1) {
      expect(decodeFrameAt(frame.subarray(0, length), 0).status).toBe('bad');
    }
  });

  it('asserts its own invariants on encode', () => {
    expect(() => encodeEntry({ slot: -1, ballot: { round: 1, ordinal: 0 }, value: Buffer.alloc(0) })).toThrow(InvariantViolation);
    expect(() => encodeEntry({ slot: 1.5, ballot: { round: 1, ordinal: 0 }, value: Buffer.alloc(0) })).toThrow(InvariantViolation);
    expect(() => encodeHardState({ promised: { round: 2 ** 32, ordinal: 0 } })).toThrow(InvariantViolation);
  });
});

describe('segment scanner', () => {
  const context = { fileName: 'log-000001.seg', segmentSeq: 1, isLastSegment: true };
  const segment = Buffer.concat([
    batchOf(encodeSegmentHeader(1, 0), encodeHardState({ promised: { round: 1, ordinal: 0 } })),
    batchOf(encodeEntry({ slot: 1, ballot: { round: 1, ordinal: 0 }, value: Buffer.from('one') })),
    batchOf(encodeEntry({ slot: 2, ballot: { round: 1, ordinal: 0 }, value: Buffer.from('two') })),
  ]);

  it('pushes each good record into the sink, in order', () => {
    const types: number[] = [];
    const result = scanSegment(segment, context, (record) => types.push(record.type));
    expect(types).toEqual([RecordType.segmentHeader, RecordType.hardState, RecordType.entry, RecordType.entry]);
    expect(result).toEqual({ validBytes: segment.length, tornTailBytes: 0, zeroTailBytes: 0 });
  });

  it('ends the records at a zero-filled tail (a preallocated segment), in any segment, truncating nothing', () => {
    const preallocated = Buffer.concat([segment, Buffer.alloc(4096)]);
    for (const isLastSegment of [true, false]) {
      const types: number[] = [];
      const result = scanSegment(preallocated, { ...context, isLastSegment }, (record) => types.push(record.type));
      expect(result).toEqual({ validBytes: segment.length, tornTailBytes: 0, zeroTailBytes: 4096 });
      expect(types).toHaveLength(4);
    }
  });

  it('a torn record followed by zeros is a torn tail in the last segment and corruption elsewhere', () => {
    const torn = Buffer.concat([segment, Buffer.alloc(4096)]);
    torn[segment.length - 2] ^= 0xff;
    const result = scanSegment(torn, context, () => undefined);
    expect(result.tornTailBytes).toBe(torn.length - result.validBytes);
    expect(result.validBytes).toBeLessThan(segment.length);
    expect(result.zeroTailBytes).toBe(0);
    expect(() => scanSegment(torn, { ...context, isLastSegment: false }, () => undefined)).toThrow(CorruptLogError);
  });

  it('damage before later acknowledged batches is corruption even when zeros follow them', () => {
    const damaged = Buffer.concat([segment, Buffer.alloc(4096)]);
    // Flip a byte in the first entry: the second entry, a later batch, is still valid after it.
    const secondBatch = batchOf(encodeEntry({ slot: 2, ballot: { round: 1, ordinal: 0 }, value: Buffer.from('two') }));
    damaged[segment.length - secondBatch.length - 2] ^= 0xff;
    expect(() => scanSegment(damaged, context, () => undefined)).toThrow(/later write batch/);
  });

  it('treats the same damage as torn in the last segment and as corruption elsewhere', () => {
    const cut = segment.subarray(0, segment.length - 1);
    expect(scanSegment(cut, context, () => undefined).tornTailBytes).toBeGreaterThan(0);
    expect(() => scanSegment(cut, { ...context, isLastSegment: false }, () => undefined)).toThrow(CorruptLogError);
  });

  it('refuses a segment that does not start with its own header', () => {
    const headerless = segment.subarray(batchOf(encodeSegmentHeader(1, 0), encodeHardState({ promised: { round: 1, ordinal: 0 } })).length);
    expect(() => scanSegment(headerless, context, () => undefined)).toThrow(/does not start with a segment header/);
  });
});
