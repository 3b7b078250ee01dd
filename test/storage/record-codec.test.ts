// The pure framing layer, fed byte by byte.
import { describe, expect, it } from 'vitest';

import {
  decodeFrameAt,
  encodeEntry,
  encodeHardState,
  encodeSegmentHeader,
  RecordType,
  sealBatch,
} from '../../node/storage/record-codec.js';
import { scanSegment, sectorBytes } from '../../node/storage/segment-scanner.js';
import { CorruptLogError } from '../../node/storage/storage-errors.js';
import { InvariantViolation } from '../../node/util/assert.js';

/** One batch sealed for offset `position` of segment 1 (a frame's checksum covers its segment and offset). */
function batchAt(position: number, ...frames: Buffer[]): Buffer {
  const batch = Buffer.concat(frames);
  sealBatch(batch, 1, position);
  return batch;
}

/** A batch at the start of segment 1. */
function batchOf(...frames: Buffer[]): Buffer {
  return batchAt(0, ...frames);
}

/** Segment 1 made of these batches (each a list of frames), each sealed where it lands. */
function segmentOf(...batches: Buffer[][]): Buffer {
  let segment = Buffer.alloc(0);
  for (const frames of batches) segment = Buffer.concat([segment, batchAt(segment.length, ...frames)]);
  return segment;
}

describe('record codec', () => {
  it('round-trips every record type, with u64 slots and u32 ballots', () => {
    const batch = batchOf(
      encodeSegmentHeader(3, 123_456_789),
      encodeHardState({ promised: { round: 0xffff_ffff, ordinal: 4 } }),
      encodeEntry({
        slot: Number.MAX_SAFE_INTEGER,
        ballot: { round: 9, ordinal: 2 },
        value: Buffer.from([0, 1, 2, 255]),
      }),
    );
    const records = [];
    for (let offset = 0; offset < batch.length;) {
      const frame = decodeFrameAt(batch, offset, 1);
      expect(frame.status).toBe('valid');
      if (frame.status !== 'valid') break;
      expect(frame.batchOffset).toBe(offset);
      records.push(frame.record);
      offset += frame.frameBytes;
    }
    expect(records).toEqual([
      { type: RecordType.segmentHeader, segmentSeq: 3, version: 4, previousSegmentBytes: 123_456_789 },
      { type: RecordType.hardState, hardState: { promised: { round: 0xffff_ffff, ordinal: 4 } } },
      {
        type: RecordType.entry,
        entry: { slot: Number.MAX_SAFE_INTEGER, ballot: { round: 9, ordinal: 2 }, value: Buffer.from([0, 1, 2, 255]) },
      },
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
    sealBatch(v1, undefined, 0);
    const frame = decodeFrameAt(v1, 0, undefined);
    expect(frame.status === 'valid' && frame.record).toEqual({
      type: RecordType.segmentHeader,
      segmentSeq: 7,
      version: 1,
      previousSegmentBytes: undefined,
    });
    // A version 2 number on a version 1 length is refused, not misread.
    v1.writeUInt32LE(2, 17);
    sealBatch(v1, undefined, 0);
    expect(decodeFrameAt(v1, 0, undefined).status).toBe('malformed');
  });

  it('reports every strict prefix of a frame as bad, never throwing', () => {
    const frame = batchOf(encodeEntry({ slot: 1, ballot: { round: 1, ordinal: 0 }, value: Buffer.from('abc') }));
    for (let length = 0; length < frame.length; length += 1) {
      expect(decodeFrameAt(frame.subarray(0, length), 0, 1).status).toBe('bad');
    }
  });

  it('binds a checksum to its segment and offset (version 4): the same bytes elsewhere are a bad frame', () => {
    const frames = [
      encodeHardState({ promised: { round: 2, ordinal: 1 } }),
      encodeEntry({ slot: 33, ballot: { round: 2, ordinal: 1 }, value: Buffer.from('abc') }),
    ];
    const batchBytes = Buffer.concat(frames).length;
    const at600 = Buffer.alloc(600 + batchBytes);
    Buffer.concat(frames).copy(at600, 600);
    sealBatch(at600.subarray(600), 1, 600);
    expect(decodeFrameAt(at600, 600, 1).status).toBe('valid');
    // Segment 2, or 512 bytes earlier (a misdirected write on a frame boundary): no longer valid.
    expect(decodeFrameAt(at600, 600, 2)).toEqual({ status: 'bad', reason: 'checksum mismatch' });
    const moved = Buffer.alloc(88 + batchBytes);
    at600.copy(moved, 88, 600);
    expect(decodeFrameAt(moved, 88, 1)).toEqual({ status: 'bad', reason: 'checksum mismatch' });
    // A segment of version 1-3 (no binding) is read as before.
    const legacy = Buffer.concat(frames);
    sealBatch(legacy, undefined, 0);
    expect(decodeFrameAt(legacy, 0, undefined).status).toBe('valid');
    expect(decodeFrameAt(legacy, 0, 1).status).toBe('bad');
  });

  it('asserts its own invariants on encode', () => {
    expect(() => encodeEntry({ slot: -1, ballot: { round: 1, ordinal: 0 }, value: Buffer.alloc(0) })).toThrow(
      InvariantViolation,
    );
    expect(() => encodeEntry({ slot: 1.5, ballot: { round: 1, ordinal: 0 }, value: Buffer.alloc(0) })).toThrow(
      InvariantViolation,
    );
    expect(() => encodeHardState({ promised: { round: 2 ** 32, ordinal: 0 } })).toThrow(InvariantViolation);
  });
});

describe('segment scanner', () => {
  const context = { fileName: 'log-000001.seg', segmentSeq: 1, isLastSegment: true };
  const segment = segmentOf(
    [encodeSegmentHeader(1, 0), encodeHardState({ promised: { round: 1, ordinal: 0 } })],
    [encodeEntry({ slot: 1, ballot: { round: 1, ordinal: 0 }, value: Buffer.from('one') })],
    [encodeEntry({ slot: 2, ballot: { round: 1, ordinal: 0 }, value: Buffer.from('two') })],
  );

  it('pushes each good record into the sink, in order', () => {
    const types: number[] = [];
    const result = scanSegment(segment, context, (record) => types.push(record.type));
    expect(types).toEqual([RecordType.segmentHeader, RecordType.hardState, RecordType.entry, RecordType.entry]);
    expect(result).toEqual({ validBytes: segment.length, tornTailBytes: 0, zeroTailBytes: 0, binding: 1 });
  });

  it('ends the records at a zero-filled tail (a preallocated segment), in any segment, truncating nothing', () => {
    const preallocated = Buffer.concat([segment, Buffer.alloc(4096)]);
    for (const isLastSegment of [true, false]) {
      const types: number[] = [];
      const result = scanSegment(preallocated, { ...context, isLastSegment }, (record) => types.push(record.type));
      expect(result).toEqual({ validBytes: segment.length, tornTailBytes: 0, zeroTailBytes: 4096, binding: 1 });
      expect(types).toHaveLength(4);
    }
  });

  it('a flipped bit in the complete final record is corruption, zeros after it or not, in any segment', () => {
    const lastRecordStart =
      segment.length -
      batchOf(encodeEntry({ slot: 2, ballot: { round: 1, ordinal: 0 }, value: Buffer.from('two') })).length;
    for (const zeroTail of [0, 4096]) {
      for (let offset = lastRecordStart; offset < segment.length; offset += 1) {
        for (let bit = 0; bit < 8; bit += 1) {
          const damaged = Buffer.concat([segment, Buffer.alloc(zeroTail)]);
          damaged[offset] ^= 1 << bit;
          for (const isLastSegment of [true, false]) {
            const scan = (): unknown => scanSegment(damaged, { ...context, isLastSegment }, () => undefined);
            expect(scan, `bit ${bit} of byte ${offset}, zero tail ${zeroTail}`).toThrow(CorruptLogError);
            expect(scan).toThrow(expect.objectContaining({ file: context.fileName, offset: lastRecordStart }));
          }
        }
      }
    }
  });

  it('a flipped bit in the length field is caught even when the frame then claims bytes past the data', () => {
    const big = batchAt(
      segment.length,
      encodeEntry({ slot: 3, ballot: { round: 1, ordinal: 0 }, value: Buffer.alloc(3000, 7) }),
    );
    const withBig = Buffer.concat([segment, big]);
    for (const zeroTail of [0, 70_000]) {
      for (let bit = 0; bit < 32; bit += 1) {
        const damaged = Buffer.concat([withBig, Buffer.alloc(zeroTail)]);
        damaged.writeUInt32LE((damaged.readUInt32LE(segment.length) ^ (1 << bit)) >>> 0, segment.length);
        expect(
          () => scanSegment(damaged, context, () => undefined),
          `length bit ${bit}, zero tail ${zeroTail}`,
        ).toThrow(expect.objectContaining({ name: 'CorruptLogError', offset: segment.length }));
      }
    }
  });

  it('a final record cut at any sector boundary (the rest zeros or gone) is a torn tail in the last segment only', () => {
    const big = batchAt(
      segment.length,
      encodeEntry({ slot: 3, ballot: { round: 1, ordinal: 0 }, value: Buffer.alloc(3000, 7) }),
    );
    const whole = Buffer.concat([segment, big]);
    for (
      let cut = Math.ceil((segment.length + 1) / sectorBytes) * sectorBytes;
      cut < whole.length;
      cut += sectorBytes
    ) {
      const preallocated = Buffer.concat([whole.subarray(0, cut), Buffer.alloc(8192)]);
      const appendOnly = whole.subarray(0, cut);
      for (const [mode, torn] of [
        ['preallocated', preallocated],
        ['append-only', appendOnly],
      ] as const) {
        const result = scanSegment(torn, context, () => undefined);
        expect(result, `${mode} cut at ${cut}`).toMatchObject({
          validBytes: segment.length,
          tornTailBytes: torn.length - segment.length,
          zeroTailBytes: 0,
        });
        expect(result.tornReason).toMatch(
          mode === 'preallocated' ? /sector holding byte \d+ is all zeros/ : /file ends at byte/,
        );
        expect(() => scanSegment(torn, { ...context, isLastSegment: false }, () => undefined)).toThrow(CorruptLogError);
      }
    }
  });

  it('documented limit: a flipped bit in a record whose value holds a whole zero sector reads as torn', () => {
    const zeroValue = batchAt(
      segment.length,
      encodeEntry({ slot: 3, ballot: { round: 1, ordinal: 0 }, value: Buffer.alloc(2 * sectorBytes) }),
    );
    const damaged = Buffer.concat([segment, zeroValue]);
    damaged[segment.length + 20] ^= 0x01; // the ballot, outside the zeros
    expect(scanSegment(damaged, context, () => undefined)).toMatchObject({
      validBytes: segment.length,
      tornTailBytes: zeroValue.length,
    });
  });

  it('damage before later acknowledged batches is corruption even when zeros follow them', () => {
    const damaged = Buffer.concat([segment, Buffer.alloc(4096)]);
    // Flip a byte in the first entry: the second entry, a later batch, is still valid after it.
    const secondBatch = batchOf(encodeEntry({ slot: 2, ballot: { round: 1, ordinal: 0 }, value: Buffer.from('two') }));
    const firstEntryStart = segment.length - 2 * secondBatch.length; // 'one' and 'two' have equal lengths
    damaged[segment.length - secondBatch.length - 2] ^= 0xff;
    expect(() => scanSegment(damaged, context, () => undefined)).toThrow(
      expect.objectContaining({ name: 'CorruptLogError', offset: firstEntryStart }),
    );
  });

  it('treats the same damage as torn in the last segment and as corruption elsewhere', () => {
    const cut = segment.subarray(0, segment.length - 1);
    expect(scanSegment(cut, context, () => undefined).tornTailBytes).toBeGreaterThan(0);
    expect(() => scanSegment(cut, { ...context, isLastSegment: false }, () => undefined)).toThrow(CorruptLogError);
  });

  it('refuses a segment that does not start with its own header', () => {
    const headerless = segmentOf([encodeHardState({ promised: { round: 1, ordinal: 0 } })]);
    expect(() => scanSegment(headerless, context, () => undefined)).toThrow(/does not start with a segment header/);
  });
});
