// The acceptor's durable storage, as the consensus driver sees it. The implementation is
// `durable-log.ts`; this file holds only the contract so that tests and simulators can
// provide their own in-memory log behind the same interface.
import type { Ballot } from '../gen/shardbank/v1/peer.js';
import type { FileSystem } from './file-system.js';

export type { Ballot };

export interface HardState {
  promised: Ballot;
}

/** An accepted Paxos slot. */
export interface StoredEntry {
  slot: number;
  ballot: Ballot;
  value: Buffer;
}

/** A state machine image up to and including slot `index`. */
export interface StoredSnapshot {
  index: number;
  data: Buffer;
}

export interface RecoveredState {
  hardState: HardState | undefined;
  snapshot: StoredSnapshot | undefined;
  /** Latest record per slot, only slots > snapshot.index, sorted by slot. */
  entries: StoredEntry[];
  /** Bytes discarded from a torn or incomplete tail (0 normally): the sum over `truncated`. */
  tornTailBytes: number;
  /**
   * Every tail recovery cut off as an incomplete, never-acknowledged write (empty normally).
   * Recovery can tell a torn write from a complete damaged record, but not from a lost write
   * of an acknowledged batch (zeros where it was): a replica that finds anything here, or
   * that may have lost its final batch that way (see cleanShutdown), should re-learn its slots from a majority
   * before it votes again (node/storage/README.md, "Recovery").
   */
  truncated: TruncatedTail[];
  /**
   * The log's last record is the close record that close() writes after everything else was
   * durable, and nothing was truncated: its tail is complete. False after a crash (or a first
   * start): then the disk may have lost the final write(s) entirely (zeros where an
   * acknowledged batch was), which nothing in the log can show. A lost write before a clean
   * close is a hole before the close record and fails recovery with CorruptLogError.
   */
  cleanShutdown: boolean;
}

export interface TruncatedTail {
  /** The segment file's path. */
  file: string;
  /** Byte offset of the first discarded byte: the file's new length. */
  offset: number;
  bytes: number;
  /** What made it an incomplete write (the file ends inside the frame, a sector of zeros, ...). */
  reason: string;
}

export interface DurableLogStats {
  syncs: number;
  recordsWritten: number;
  bytesWritten: number;
  entriesPerSyncMax: number;
  segments: number;
}

export interface DurableLog {
  /** Queues records in memory; they become durable when a later sync() resolves. Order is preserved. */
  append(hardState: HardState | undefined, entries: readonly StoredEntry[]): void;
  /**
   * Group commit: writes everything queued so far and fdatasyncs. Concurrent callers share one
   * fsync: while one fsync runs, newly queued records wait and go out together in the next one.
   * Resolves when everything queued before the call is durable.
   */
  sync(): Promise<void>;
  /**
   * Writes everything queued now, on the calling thread, and returns true once it is durable;
   * false (nothing written) when that cannot be done synchronously (a flush is running, a
   * segment must be rolled or started): then sync() is the way. Throws, and the log fails,
   * on an I/O error.
   */
  syncNow(): boolean;
  /**
   * Atomically stores a snapshot (temp file, fsync, rename, fsync dir); afterwards log segments
   * holding only slots <= index may be deleted. The hard state survives the deletion.
   */
  saveSnapshot(snapshot: StoredSnapshot): Promise<void>;
  stats(): DurableLogStats;
  /** Makes everything queued durable, then releases the file descriptors. */
  close(): Promise<void>;
}

export interface DurableLogOptions {
  /** A segment rolls over once the next batch would take it past this size (default 64 MiB). */
  segmentBytesMax?: number;
  /** Skips fsync and fdatasync. For tests and development only: nothing is durable. */
  noSync?: boolean;
  /**
   * Writes every segment into a file zero-filled to segmentBytesMax in advance (the next one
   * is prepared in the background), so a durable write overwrites allocated blocks instead of
   * growing the file: no block allocation and no inode update per write (default false).
   */
  preallocateSegments?: boolean;
  /** Where the files live (default: node:fs). The simulator passes its in-memory one. */
  fileSystem?: FileSystem;
  /**
   * Observes each durable write (the replica's metrics): its duration in seconds, and whether
   * it was syncNow()'s synchronous write (else sync()'s flush on the thread pool).
   */
  onSync?: (seconds: number, synchronous: boolean) => void;
}
