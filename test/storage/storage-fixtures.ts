// Shared helpers for the durable log tests: temporary directories and small entries.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { StoredEntry } from '../../node/storage/durable-log.js';

export async function makeTempDir(label: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `shardbank-storage-${label}-`));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

export function entry(slot: number, round = 1, ordinal = 0, value = `value-${slot}`): StoredEntry {
  return { slot, ballot: { round, ordinal }, value: Buffer.from(value) };
}

export async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.endsWith('.seg')).sort();
}

export function plain(
  entries: readonly StoredEntry[],
): Array<{ slot: number; round: number; ordinal: number; value: string }> {
  return entries.map((stored) => ({
    slot: stored.slot,
    round: stored.ballot.round,
    ordinal: stored.ballot.ordinal,
    value: stored.value.toString('latin1'),
  }));
}
