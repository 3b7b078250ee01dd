// The not-voting marker: a file in the data dir, present while a replica must not vote (it
// started with an empty log, a new replica or one whose disk was lost, and has not yet
// learned that the shard never ran or re-learned what it may have promised; see VotingState
// in node/paxos/paxos-core.ts). Made durable before the replica starts, removed (durably)
// only once the core says it may vote. Shared by the replica and the simulator.
import { join } from 'node:path';

import type { VotingState } from '../paxos/paxos-core.js';
import type { RecoveredState } from './durable-log-interface.js';
import { nodeFileSystem, type FileSystem } from './file-system.js';

export const NOT_VOTING_MARKER = 'NOT_VOTING';

export interface VotingDecision {
  votingState: VotingState;
  /** The recovered log is empty (a first start or a lost disk). */
  emptyLog: boolean;
}

/** Voter when the log holds state and no marker says otherwise (or the shard has one replica); else probing, with the marker made durable. */
export async function decideVotingState(
  dataDir: string,
  recovered: RecoveredState,
  replicasPerShard: number,
  fs: FileSystem = nodeFileSystem,
): Promise<VotingDecision> {
  const marker = join(dataDir, NOT_VOTING_MARKER);
  const emptyLog =
    recovered.hardState === undefined && recovered.snapshot === undefined && recovered.entries.length === 0;
  const markerPresent = await fs.exists(marker);
  if (replicasPerShard === 1 || (!emptyLog && !markerPresent)) return { votingState: 'voter', emptyLog };
  if (!markerPresent) {
    await fs.createFile(marker, 'this replica started with an empty data dir and does not vote until it is safe\n');
    const file = await fs.open(marker, 'r');
    try {
      await file.sync();
    } finally {
      await file.close();
    }
    await fs.syncDirectory(dataDir);
  }
  return { votingState: 'probing', emptyLog };
}

/** The core may vote: make that durable first (the caller then calls core.startVoting()). */
export async function removeNotVotingMarker(dataDir: string, fs: FileSystem = nodeFileSystem): Promise<void> {
  await fs.remove(join(dataDir, NOT_VOTING_MARKER));
  await fs.syncDirectory(dataDir);
}
