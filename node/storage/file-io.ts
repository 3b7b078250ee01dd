// Small file-system helpers shared by the segment and snapshot writers.
import { writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

import { assert } from '../util/assert.js';

/**
 * A write may be partial (signals, full disks); loop until every byte is in the file.
 * `position`: where the first byte goes (positional writes); null: the file position.
 */
export async function writeAll(handle: FileHandle, bytes: Buffer, position: number | null = null): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, written, bytes.length - written, position === null ? null : position + written);
    assert(bytesWritten > 0, `write made no progress at byte ${written} of ${bytes.length}`);
    written += bytesWritten;
  }
  assert(written === bytes.length, `wrote ${written} bytes, expected ${bytes.length}`);
}

/** writeAll on the calling thread (a synchronous system call). */
export function writeAllNow(fd: number, bytes: Buffer, position: number | null = null): void {
  let written = 0;
  while (written < bytes.length) {
    const bytesWritten = writeSync(fd, bytes, written, bytes.length - written, position === null ? null : position + written);
    assert(bytesWritten > 0, `write made no progress at byte ${written} of ${bytes.length}`);
    written += bytesWritten;
  }
}

/** Makes creations, renames and deletions in `directory` durable. */
export async function fsyncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
