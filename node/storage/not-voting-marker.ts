// The not-voting marker and the voter record: two files in the data dir that say whether a
// replica may vote (see VotingState in node/paxos/paxos-core.ts).
// - NOT_VOTING, present while a replica must not vote: it started with an empty log (a new
//   replica or one whose disk was lost) and has not yet learned that the shard never ran or
//   re-learned what it may have promised. Made durable before the replica starts. It holds the
//   replica's first-start identity, drawn when the marker is created, so a replica that
//   restarts during its shard's first start presents the same identity again (the peers that
//   counted it empty still recognise it), and a replica whose disk was lost (marker and all)
//   presents a new one.
// - VOTER, written (durably, all or nothing) when the core says the replica may vote, before
//   the marker is removed: this data dir votes from then on, whatever its log holds (every
//   vote it gives is durable in its log before it is sent, so an empty log here means it never
//   voted), and it lists the peers it counted empty when it decided on a first start, so it
//   answers them with counted_empty in every later life.
// Shared by the replica and the simulator.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

import type { VotingState } from '../paxos/paxos-core.js';
import type { RecoveredState } from './durable-log-interface.js';
import { nodeFileSystem, type FileSystem } from './file-system.js';

export const NOT_VOTING_MARKER = 'NOT_VOTING';
export const VOTER_RECORD = 'VOTER';

const MARKER_TEXT = 'this replica started with an empty data dir and does not vote until it is safe\n';
const VOTER_TEXT = 'this data dir votes (admitted at a first start or rebuilt); the peers it counted empty:\n';
const IDENTITY_MAX = 2 ** 52;

/** The durable first-start memory the Paxos core takes (PaxosConfig.firstStart). */
export interface FirstStartMemory {
  /** This replica's identity while its marker stands (absent for a voter). */
  identity?: number;
  /** Peer ordinal to the identity it was counted empty under. */
  countedEmpty: ReadonlyMap<number, number>;
}

export interface VotingDecision {
  votingState: VotingState;
  /** The recovered log is empty (a first start or a lost disk). */
  emptyLog: boolean;
  firstStart: FirstStartMemory;
}

/**
 * Voter when the data dir holds the voter record, when its log holds state and no marker says
 * otherwise (a data dir from before the record existed), or when the shard has one replica;
 * else probing, with the marker (and the identity in it) made durable. `random` draws a new
 * identity ([0, 1), like Math.random; the simulator passes its seeded stream): for a new marker,
 * or when the marker's is unreadable.
 */
export async function decideVotingState(
  dataDir: string,
  recovered: RecoveredState,
  replicasPerShard: number,
  fs: FileSystem = nodeFileSystem,
  random: () => number = cryptoRandom,
): Promise<VotingDecision> {
  const marker = join(dataDir, NOT_VOTING_MARKER);
  const emptyLog =
    recovered.hardState === undefined && recovered.snapshot === undefined && recovered.entries.length === 0;
  const markerPresent = await fs.exists(marker);
  const voter = await readVoterRecord(dataDir, fs);
  if (voter !== undefined) {
    // A crash between writing the record and removing the marker: finish the removal.
    if (markerPresent) await removeDurably(dataDir, NOT_VOTING_MARKER, fs);
    return { votingState: 'voter', emptyLog, firstStart: { countedEmpty: voter } };
  }
  if (replicasPerShard === 1 || (!emptyLog && !markerPresent))
    return { votingState: 'voter', emptyLog, firstStart: { countedEmpty: new Map() } };
  let identity = markerPresent ? parseIdentity(await fs.readFile(marker)) : undefined;
  if (identity === undefined) {
    // A new marker, or one whose identity did not survive (a write of an older version, or a
    // crash before it was durable, so never sent): a new identity is never one a peer counted.
    identity = 1 + Math.floor(random() * IDENTITY_MAX);
    await writeDurably(dataDir, NOT_VOTING_MARKER, `${MARKER_TEXT}identity ${identity}\n`, fs);
  } else {
    // Read back from the page cache: make sure it is on the media before it is sent.
    await syncFile(marker, fs);
    await fs.syncDirectory(dataDir);
  }
  return { votingState: 'probing', emptyLog, firstStart: { identity, countedEmpty: new Map() } };
}

/**
 * The core may vote (its voting-ready event): make that durable first, the voter record with
 * the peers counted empty written and then the marker removed (the caller then calls
 * core.startVoting()).
 */
export async function removeNotVotingMarker(
  dataDir: string,
  firstStart: FirstStartMemory,
  fs: FileSystem = nodeFileSystem,
): Promise<void> {
  const counted = [...firstStart.countedEmpty].map(([ordinal, identity]) => `counted ${ordinal} ${identity}\n`);
  await writeDurably(dataDir, VOTER_RECORD, `${VOTER_TEXT}${counted.join('')}`, fs);
  await removeDurably(dataDir, NOT_VOTING_MARKER, fs);
}

/** [0, 1) from the operating system's randomness (56 bits, of which an identity uses 52). */
function cryptoRandom(): number {
  const bytes = randomBytes(7);
  return (bytes.readUIntBE(0, 3) * 2 ** 32 + bytes.readUInt32BE(3)) / 2 ** 56;
}

function parseIdentity(bytes: Buffer): number | undefined {
  const match = /^identity ([1-9][0-9]{0,15})$/m.exec(bytes.toString('latin1'));
  const identity = match ? Number(match[1]) : NaN;
  return Number.isSafeInteger(identity) && identity >= 1 && identity <= IDENTITY_MAX ? identity : undefined;
}

/**
 * The voter record's list of peers counted empty, or undefined without a record. The record's
 * presence is what makes a voter (it is renamed into place once complete and synced); a list
 * that does not read back is forgotten, which costs peers a rebuild, never safety.
 */
async function readVoterRecord(dataDir: string, fs: FileSystem): Promise<ReadonlyMap<number, number> | undefined> {
  const path = join(dataDir, VOTER_RECORD);
  if (!(await fs.exists(path))) return undefined;
  const text = (await fs.readFile(path)).toString('latin1');
  const countedEmpty = new Map<number, number>();
  if (!text.startsWith(VOTER_TEXT) || !text.endsWith('\n')) return countedEmpty;
  for (const line of text.slice(VOTER_TEXT.length, -1).split('\n')) {
    if (line === '') continue;
    const match = /^counted ([0-9]{1,2}) ([1-9][0-9]{0,15})$/.exec(line);
    const identity = match ? Number(match[2]) : NaN;
    if (!match || !(identity <= IDENTITY_MAX)) return new Map();
    countedEmpty.set(Number(match[1]), identity);
  }
  return countedEmpty;
}

/** All or nothing across a crash: a synced temporary file renamed over `name`, then the directory synced. */
async function writeDurably(dataDir: string, name: string, text: string, fs: FileSystem): Promise<void> {
  const temporary = join(dataDir, `${name}.tmp`);
  await fs.remove(temporary);
  await fs.createFile(temporary, text);
  await syncFile(temporary, fs);
  await fs.rename(temporary, join(dataDir, name));
  await fs.syncDirectory(dataDir);
}

async function removeDurably(dataDir: string, name: string, fs: FileSystem): Promise<void> {
  await fs.remove(join(dataDir, name));
  await fs.syncDirectory(dataDir);
}

async function syncFile(path: string, fs: FileSystem): Promise<void> {
  const file = await fs.open(path, 'r');
  try {
    await file.sync();
  } finally {
    await file.close();
  }
}
