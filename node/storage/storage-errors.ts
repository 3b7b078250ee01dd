// Named failures of the durable log. Both are loud on purpose: a ledger must not carry on
// with acknowledged data it cannot vouch for.

/**
 * Data on disk that may have been acknowledged is damaged: a complete record with a bad
 * checksum (even the last one), a hole followed by a later batch (a lost write), a damaged
 * non-last segment, a missing segment, a damaged snapshot. `file` is the path, `offset` the
 * byte offset of the damaged record. Never repaired silently and no file is changed: an
 * operator decides, typically by rebuilding the replica from its peers.
 */
export class CorruptLogError extends Error {
  override name = 'CorruptLogError';
  readonly file: string;
  readonly offset: number;
  readonly reason: string;

  constructor(file: string, offset: number, reason: string, options?: { cause?: unknown }) {
    super(`corrupt durable log: ${file} at byte offset ${offset}: ${reason}`, options);
    this.file = file;
    this.offset = offset;
    this.reason = reason;
  }
}

/**
 * A write, fsync or file operation failed. After a failed fsync the kernel may have dropped
 * the dirty pages, so the log cannot know what reached the disk: it refuses every further
 * operation and the process must restart and recover from what is really on disk.
 */
export class DurableLogFailedError extends Error {
  override name = 'DurableLogFailedError';

  constructor(operation: string, cause: unknown) {
    super(`durable log failed during ${operation}; restart and recover from disk`, { cause });
  }
}
