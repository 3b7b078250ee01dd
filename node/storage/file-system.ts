// The narrow file-system interface the storage uses (the durable log, its recovery, snapshot
// files, the not-voting marker): exactly the calls they make, no more. Production passes
// nodeFileSystem (node:fs, one thin object per open file); the simulator passes an in-memory
// file system with torn writes, bit flips, lost and misdirected writes, I/O errors and
// latency (test/sim/sim-file-system.ts), so the real DurableLog runs under its faults.
import { constants as fsConstants, writeSync } from 'node:fs';
import {
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  stat,
  unlink,
  writeFile,
  type FileHandle,
} from 'node:fs/promises';

export const OPEN_FLAGS = fsConstants;

/** An open file. Writes are positional: every caller knows where its bytes go. */
export interface StorageFile {
  /** Writes up to `length` bytes of `bytes` from `offset` at file position `position`; resolves with the count written. */
  write(bytes: Buffer, offset: number, length: number, position: number): Promise<number>;
  /** The same write on the calling thread (a synchronous system call). */
  writeNow(bytes: Buffer, offset: number, length: number, position: number): number;
  /** fsync: data and metadata durable. */
  sync(): Promise<void>;
  /** fdatasync: data (and the size) durable. */
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  size(): Promise<number>;
  close(): Promise<void>;
}

export interface FileSystem {
  /** mkdir -p; resolves with the first directory created, undefined when it existed. */
  mkdirRecursive(path: string): Promise<string | undefined>;
  readdir(path: string): Promise<string[]>;
  readFile(path: string): Promise<Buffer>;
  /** `flags`: node:fs open flags (OPEN_FLAGS.O_WRONLY | O_CREAT | ...) or 'r', 'r+', 'w'. */
  open(path: string, flags: number | 'r' | 'r+' | 'w'): Promise<StorageFile>;
  /** Creates `path` with `data`; fails with EEXIST when it exists. Not durable until synced. */
  createFile(path: string, data: string): Promise<void>;
  exists(path: string): Promise<boolean>;
  link(existingPath: string, newPath: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** unlink that ignores a missing file. */
  remove(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  /** Makes creations, renames and deletions in `directory` durable. */
  syncDirectory(directory: string): Promise<void>;
  /**
   * Lets every writer that is ready in this turn go first (the group commit's gather step).
   * setImmediate in production; a microtask in the simulator, whose writers all run in one
   * event anyway.
   */
  nextTurn(): Promise<void>;
}

class NodeStorageFile implements StorageFile {
  constructor(private readonly handle: FileHandle) {}

  async write(bytes: Buffer, offset: number, length: number, position: number): Promise<number> {
    return (await this.handle.write(bytes, offset, length, position)).bytesWritten;
  }

  writeNow(bytes: Buffer, offset: number, length: number, position: number): number {
    return writeSync(this.handle.fd, bytes, offset, length, position);
  }

  sync(): Promise<void> {
    return this.handle.sync();
  }

  datasync(): Promise<void> {
    return this.handle.datasync();
  }

  truncate(length: number): Promise<void> {
    return this.handle.truncate(length);
  }

  async size(): Promise<number> {
    return (await this.handle.stat()).size;
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

/** The real file system (node:fs). */
export const nodeFileSystem: FileSystem = {
  mkdirRecursive: (path) => mkdir(path, { recursive: true }),
  readdir: (path) => readdir(path),
  readFile: (path) => readFile(path),
  open: async (path, flags) => new NodeStorageFile(await open(path, flags)),
  createFile: (path, data) => writeFile(path, data, { flag: 'wx' }),
  exists: (path) =>
    stat(path).then(
      () => true,
      () => false,
    ),
  link: (existingPath, newPath) => link(existingPath, newPath),
  unlink: (path) => unlink(path),
  remove: (path) =>
    unlink(path).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }),
  rename: (from, to) => rename(from, to),
  syncDirectory: async (directory) => {
    const handle = await open(directory, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
  nextTurn: () => new Promise<void>((resolve) => setImmediate(resolve)),
};
