// Small file-system helpers shared by the segment and snapshot writers.
import { invariantViolated } from '../util/assert.js';
import { nodeFileSystem, type FileSystem, type StorageFile } from './file-system.js';

/** A write may be partial (signals, full disks); loop until every byte is in the file, from `position` on. */
export async function writeAll(file: StorageFile, bytes: Buffer, position: number): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    const bytesWritten = await file.write(bytes, written, bytes.length - written, position + written);
    if (!(bytesWritten > 0)) invariantViolated(`write made no progress at byte ${written} of ${bytes.length}`);
    written += bytesWritten;
  }
  if (!(written === bytes.length)) invariantViolated(`wrote ${written} bytes, expected ${bytes.length}`);
}

/** writeAll on the calling thread (a synchronous system call). */
export function writeAllNow(file: StorageFile, bytes: Buffer, position: number): void {
  let written = 0;
  while (written < bytes.length) {
    const bytesWritten = file.writeNow(bytes, written, bytes.length - written, position + written);
    if (!(bytesWritten > 0)) invariantViolated(`write made no progress at byte ${written} of ${bytes.length}`);
    written += bytesWritten;
  }
}

/** Makes creations, renames and deletions in `directory` durable. */
export function fsyncDirectory(directory: string, fs: FileSystem = nodeFileSystem): Promise<void> {
  return fs.syncDirectory(directory);
}
