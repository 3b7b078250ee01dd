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
      encodeSegmentHeader(3),
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
      { type: RecordType.segmentHeader, segmentSeq: 3 },
      { type: RecordType.hardState, hardState: { promised: { round: 0xffff_ffff, ordinal: 4 } } },
      { type: RecordType.entry, entry: { slot: Number.MAX_SAFE_INTEGER, ballot: { round: 9, ordinal: 2 }, value: Buffer.from([0, 1, 2, 255]) } },
    ]);
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
    batchOf(encodeSegmentHeader(1), encodeHardState({ promised: { round: 1, ordinal: 0 } })),
    batchOf(encodeEntry({ slot: 1, ballot: { round: 1, ordinal: 0 }, value: Buffer.from('one') })),
    batchOf(encodeEntry({ slot: 2, ballot: { round: 1, ordinal: 0 }, value: Buffer.from('two') })),
  ]);

  it('pushes each good record into the sink, in order', () => {
    const types: number[] = [];
    const result = scanSegment(segment, context, (record) => types.push(record.type));
    expect(types).toEqual([RecordType.segmentHeader, RecordType.hardState, RecordType.entry, RecordType.entry]);
    expect(result).toEqual({ validBytes: segment.length, tornTailBytes: 0 });
  });

  it('treats the same damage as torn in the last segment and as corruption elsewhere', () => {
    const cut = segment.subarray(0, segment.length - 1);
    expect(scanSegment(cut, context, () => undefined).tornTailBytes).toBeGreaterThan(0);
    expect(() => scanSegment(cut, { ...context, isLastSegment: false }, () => undefined)).toThrow(CorruptLogError);
  });

  it('refuses a segment that does not start with its own header', () => {
    const headerless = segment.subarray(batchOf(encodeSegmentHeader(1), encodeHardState({ promised: { round: 1, ordinal: 0 } })).length);
    expect(() => scanSegment(headerless, context, () => undefined)).toThrow(/does not start with a segment header/);
  });
});
