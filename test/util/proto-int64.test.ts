// The fast 64-bit integer paths must write the library's bytes and read back the library's
// values (or its errors) for every value, short varints and long ones alike.
import { describe, expect, it } from 'vitest';
import { BinaryReader, BinaryWriter } from '@bufbuild/protobuf/wire';
import { readInt64, readUint64, writeInt64, writeUint64 } from '../../node/util/proto-int64.js';
import { TransferRequest } from '../../node/gen/shardbank/v1/bank.js';

const UNSIGNED = [
  0,
  1,
  127,
  128,
  300,
  2 ** 14 - 1,
  2 ** 14,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 35 + 7,
  2 ** 42,
  2 ** 49 - 1,
  2 ** 49,
  2 ** 49 + 1,
  2 ** 52 + 3,
  Number.MAX_SAFE_INTEGER,
];
const SIGNED = [...UNSIGNED, -1, -2, -300, -(2 ** 31), -(2 ** 32), -(2 ** 49), Number.MIN_SAFE_INTEGER];

function bytes(write: (writer: BinaryWriter) => void): Uint8Array {
  const writer = new BinaryWriter();
  write(writer);
  return writer.finish();
}

describe('fast 64-bit integer fields', () => {
  it('writes the same bytes as the library for uint64 and int64', () => {
    for (const value of UNSIGNED)
      expect(bytes((w) => writeUint64(w.uint32(8), value))).toEqual(bytes((w) => w.uint32(8).uint64(value)));
    for (const value of SIGNED)
      expect(bytes((w) => writeInt64(w.uint32(8), value))).toEqual(bytes((w) => w.uint32(8).int64(value)));
  });

  it('reads back every value, then the next field, at the right position', () => {
    for (const value of UNSIGNED) {
      const reader = new BinaryReader(bytes((w) => w.uint64(value).uint32(77)));
      expect(readUint64(reader)).toBe(value);
      expect(reader.uint32()).toBe(77);
      expect(reader.pos).toBe(reader.len);
    }
    for (const value of SIGNED) {
      const reader = new BinaryReader(bytes((w) => w.int64(value).uint32(77)));
      expect(readInt64(reader)).toBe(value);
      expect(reader.uint32()).toBe(77);
    }
  });

  it('refuses what the library refuses: unsafe integers, negative uint64, fractions', () => {
    expect(() => readUint64(new BinaryReader(bytes((w) => w.uint64(2n ** 60n))))).toThrow(/MAX_SAFE_INTEGER/);
    expect(() => readInt64(new BinaryReader(bytes((w) => w.int64(-(2n ** 60n)))))).toThrow(/MIN_SAFE_INTEGER/);
    expect(() => writeUint64(new BinaryWriter(), -1)).toThrow();
    expect(() => writeUint64(new BinaryWriter(), 1.5)).toThrow();
    expect(() => writeInt64(new BinaryWriter(), 2.5)).toThrow();
  });

  it('stops at the end of a truncated buffer instead of reading past it', () => {
    const whole = bytes((w) => w.uint64(2 ** 40));
    expect(() => readUint64(new BinaryReader(whole.subarray(0, 3)))).toThrow();
  });

  it('is what the generated messages use: a round trip through TransferRequest', () => {
    const message = {
      cluster: 'c',
      clientId: 'x',
      requestId: 2 ** 40 + 5,
      from: 3,
      to: 2 ** 32,
      amount: 2 ** 31,
      acknowledgedBelow: 2 ** 53 - 1,
      sessionEpoch: 2 ** 33 + 1,
    };
    const decoded = TransferRequest.decode(TransferRequest.encode(message).finish());
    expect(decoded).toMatchObject(message);
  });
});
