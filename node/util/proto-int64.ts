// Fast paths for the 64-bit integer fields of the generated protobuf code (ts-proto with
// forceLong=number over @bufbuild/protobuf's wire format).
//
// Why: the library reads every uint64/int64 as a BigInt, and ts-proto turns that into a
// number through `Number(bigint.toString())`; writing one builds a BigInt and a {lo, hi}
// object. Every request id, item, amount and log index goes through this, several times per
// transfer in every process: profiles showed the conversions and the garbage they leave.
// Almost every value here is a small non-negative integer, whose varint is the same bytes
// whether written as uint32, uint64 or int64, so:
// - writing: a value in [0, 2^32) goes through the library's uint32 varint writer; anything
//   else (larger, negative, not an integer) takes the library's own path, errors included;
// - reading: a varint that ends within 7 bytes (< 2^49, a safe integer, non-negative for
//   int64 too) is summed directly from the buffer; a longer one is re-read by the library's
//   path from the same position, with ts-proto's MAX_SAFE_INTEGER checks.
// The bytes on the wire and in the log are unchanged. scripts/fast-int64.mjs rewrites the
// generated code to call these (test/util/proto-int64.test.ts compares both paths).
import type { BinaryReader, BinaryWriter } from '@bufbuild/protobuf/wire';

/** The reader's fields this module reads; present at run time, private in the typings. */
interface ReaderInternals {
  buf: Uint8Array;
  pos: number;
  len: number;
}

const FAST_VARINT_BYTES_MAX = 7;

function readShortVarint(reader: BinaryReader): number {
  const raw = reader as unknown as ReaderInternals;
  const buf = raw.buf;
  let pos = raw.pos;
  let value = 0;
  let scale = 1;
  for (let i = 0; i < FAST_VARINT_BYTES_MAX && pos < raw.len; i += 1) {
    const byte = buf[pos++]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) {
      raw.pos = pos;
      return value;
    }
    scale *= 128;
  }
  return -1;
}

function toSafeNumber(value: { toString(): string }): number {
  const num = Number(value.toString());
  if (num > Number.MAX_SAFE_INTEGER) throw new Error('Value is larger than Number.MAX_SAFE_INTEGER');
  if (num < Number.MIN_SAFE_INTEGER) throw new Error('Value is smaller than Number.MIN_SAFE_INTEGER');
  return num;
}

export function readUint64(reader: BinaryReader): number {
  const value = readShortVarint(reader);
  return value >= 0 ? value : toSafeNumber(reader.uint64());
}

export function readInt64(reader: BinaryReader): number {
  const value = readShortVarint(reader);
  return value >= 0 ? value : toSafeNumber(reader.int64());
}

export function writeUint64(writer: BinaryWriter, value: number): BinaryWriter {
  return value >>> 0 === value ? writer.uint32(value) : writer.uint64(value);
}

export function writeInt64(writer: BinaryWriter, value: number): BinaryWriter {
  return value >>> 0 === value ? writer.uint32(value) : writer.int64(value);
}
