// Snapshot files: `snapshot-<index, 20 digits>.snap`, written to a `.tmp` name, fsynced,
// renamed into place and made durable with an fsync of the directory.
//
// Layout, little endian: [magic u32][format version u32][index u64][data length u64]
// [crc32 u32 of the preceding 24 bytes and the data][data].
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

import { assert, invariantViolated } from '../util/assert.js';
import type { StoredSnapshot } from './durable-log-interface.js';
import { writeAll } from './file-io.js';
import type { FileSystem } from './file-system.js';
import { CorruptLogError } from './storage-errors.js';

const snapshotMagic = 0x4e534253; // "SBSN" read as little endian bytes.
const snapshotFormatVersion = 1;
const snapshotHeaderBytes = 28;
/** Node Buffers top out near 4 GiB; a snapshot must stay well below that. */
export const snapshotBytesMax = 1024 * 1024 * 1024;

const snapshotNamePattern = /^snapshot-(\d{20})\.snap$/;

export function snapshotFileName(index: number): string {
  if (!(Number.isSafeInteger(index) && index >= 0))
    invariantViolated(`snapshot index ${index} must be a safe non-negative integer`);
  return `snapshot-${String(index).padStart(20, '0')}.snap`;
}

/** Returns the index a snapshot file name carries, or undefined for other names. */
export function parseSnapshotFileName(name: string): number | undefined {
  const match = snapshotNamePattern.exec(name);
  if (match === null) return undefined;
  const index = Number(match[1]);
  return Number.isSafeInteger(index) ? index : undefined;
}

export function isSnapshotTempFileName(name: string): boolean {
  return name.startsWith('snapshot-') && name.endsWith('.snap.tmp');
}

function headerChecksum(header: Buffer, data: Buffer): number {
  return crc32(data, crc32(header.subarray(0, 24)));
}

function encodeSnapshotHeader(snapshot: StoredSnapshot): Buffer {
  assert(
    snapshot.data.length <= snapshotBytesMax,
    `snapshot of ${snapshot.data.length} bytes exceeds ${snapshotBytesMax}`,
  );
  const header = Buffer.alloc(snapshotHeaderBytes);
  header.writeUInt32LE(snapshotMagic, 0);
  header.writeUInt32LE(snapshotFormatVersion, 4);
  header.writeUInt32LE(snapshot.index % 0x1_0000_0000, 8);
  header.writeUInt32LE(Math.floor(snapshot.index / 0x1_0000_0000), 12);
  header.writeUInt32LE(snapshot.data.length, 16);
  header.writeUInt32LE(0, 20);
  header.writeUInt32LE(headerChecksum(header, snapshot.data), 24);
  return header;
}

/** Writes, fsyncs and renames the snapshot into place; returns its file name. */
export async function writeSnapshotFile(
  fs: FileSystem,
  directory: string,
  snapshot: StoredSnapshot,
  noSync: boolean,
): Promise<string> {
  const name = snapshotFileName(snapshot.index);
  const temporaryPath = join(directory, `${name}.tmp`);
  const header = encodeSnapshotHeader(snapshot);
  const file = await fs.open(temporaryPath, 'w');
  try {
    await writeAll(file, header, 0);
    await writeAll(file, snapshot.data, header.length);
    if (!noSync) await file.sync();
  } finally {
    await file.close();
  }
  await fs.rename(temporaryPath, join(directory, name));
  if (!noSync) await fs.syncDirectory(directory);
  return name;
}

export async function readSnapshotFile(fs: FileSystem, directory: string, name: string): Promise<StoredSnapshot> {
  const expectedIndex = parseSnapshotFileName(name);
  if (!(expectedIndex !== undefined)) invariantViolated(`${name} is not a snapshot file name`);
  const bytes = await fs.readFile(join(directory, name));
  const corrupt = (offset: number, reason: string): CorruptLogError => new CorruptLogError(name, offset, reason);
  if (bytes.length < snapshotHeaderBytes)
    throw corrupt(0, `snapshot file of ${bytes.length} bytes is shorter than its header`);
  if (bytes.readUInt32LE(0) !== snapshotMagic) throw corrupt(0, 'snapshot has the wrong magic number');
  if (bytes.readUInt32LE(4) !== snapshotFormatVersion)
    throw corrupt(4, `unsupported snapshot format version ${bytes.readUInt32LE(4)}`);
  const index = bytes.readUInt32LE(12) * 0x1_0000_0000 + bytes.readUInt32LE(8);
  if (index !== expectedIndex) throw corrupt(8, `snapshot header says index ${index}, file name says ${expectedIndex}`);
  const dataBytes = bytes.readUInt32LE(16);
  if (bytes.readUInt32LE(20) !== 0 || dataBytes !== bytes.length - snapshotHeaderBytes) {
    throw corrupt(16, `snapshot data length field disagrees with the file size ${bytes.length}`);
  }
  const data = bytes.subarray(snapshotHeaderBytes);
  if (bytes.readUInt32LE(24) !== headerChecksum(bytes, data)) throw corrupt(24, 'snapshot checksum mismatch');
  assert(data.length === dataBytes, 'snapshot data length changed after the check');
  return { index, data };
}
