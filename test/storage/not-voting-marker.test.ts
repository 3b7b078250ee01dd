// The not-voting marker and the voter record on a real file system: the first-start identity
// survives restarts while the marker stands, a wiped data dir draws a new one, and the voter
// record (with the peers counted empty) makes a voter of every later start.
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { RecoveredState } from '../../node/storage/durable-log-interface.js';
import {
  decideVotingState,
  NOT_VOTING_MARKER,
  removeNotVotingMarker,
  VOTER_RECORD,
} from '../../node/storage/not-voting-marker.js';
import { nodeFileSystem } from '../../node/storage/file-system.js';
import { entry, makeTempDir, removeDir } from './storage-fixtures.js';

const EMPTY: RecoveredState = {
  hardState: undefined,
  snapshot: undefined,
  entries: [],
  tornTailBytes: 0,
  truncated: [],
  cleanShutdown: false,
};
const WITH_STATE: RecoveredState = { ...EMPTY, hardState: { promised: { round: 3, ordinal: 1 } }, entries: [entry(1)] };

let root: string;
let caseNumber = 0;

beforeAll(async () => {
  root = await makeTempDir('marker');
});
afterAll(async () => {
  await removeDir(root);
});

async function freshDir(): Promise<string> {
  caseNumber += 1;
  const dir = join(root, `case-${caseNumber}`);
  await mkdir(dir);
  return dir;
}

/** A sequence of draws, so each new identity is known. */
function draws(...values: number[]): () => number {
  return () => {
    const value = values.shift();
    if (value === undefined) throw new Error('test: no more random draws');
    return value;
  };
}

const decide = (dir: string, recovered: RecoveredState, random: () => number, replicas = 3) =>
  decideVotingState(dir, recovered, replicas, nodeFileSystem, random);

describe('not-voting marker and voter record', () => {
  it('an empty data dir probes under an identity written into its marker; a restart presents the same one', async () => {
    const dir = await freshDir();
    const first = await decide(dir, EMPTY, draws(0.25));
    expect(first.votingState).toBe('probing');
    expect(first.emptyLog).toBe(true);
    expect(first.firstStart.identity).toBe(1 + 0.25 * 2 ** 52);
    expect(await readFile(join(dir, NOT_VOTING_MARKER), 'latin1')).toContain(`identity ${first.firstStart.identity}\n`);
    // Restarts (no draw allowed: the marker's identity is reused), with or without learned state.
    for (const recovered of [EMPTY, WITH_STATE]) {
      const again = await decide(dir, recovered, draws());
      expect(again.votingState).toBe('probing');
      expect(again.firstStart.identity).toBe(first.firstStart.identity);
    }
  });

  it('a wiped data dir (marker gone with it) probes under a new identity', async () => {
    const dir = await freshDir();
    const before = await decide(dir, EMPTY, draws(0.25));
    await rm(dir, { recursive: true });
    await mkdir(dir);
    const after = await decide(dir, EMPTY, draws(0.75));
    expect(after.votingState).toBe('probing');
    expect(after.firstStart.identity).not.toBe(before.firstStart.identity);
  });

  it('a marker without a readable identity (an older version, a torn write) gets a new one, kept from then on', async () => {
    const dir = await freshDir();
    await writeFile(join(dir, NOT_VOTING_MARKER), 'this replica started with an empty data dir\n');
    const first = await decide(dir, WITH_STATE, draws(0.5));
    expect(first.votingState).toBe('probing');
    expect(first.firstStart.identity).toBe(1 + 0.5 * 2 ** 52);
    expect((await decide(dir, EMPTY, draws())).firstStart.identity).toBe(first.firstStart.identity);
    expect((await readdir(dir)).sort()).toEqual([NOT_VOTING_MARKER]);
  });

  it('once it may vote: the voter record (with the peers counted empty) replaces the marker, and every later start votes, even with an empty log', async () => {
    const dir = await freshDir();
    const probing = await decide(dir, EMPTY, draws(0.25));
    const countedEmpty = new Map([
      [0, 17],
      [2, 2 ** 52],
    ]);
    await removeNotVotingMarker(dir, { identity: probing.firstStart.identity!, countedEmpty }, nodeFileSystem);
    expect((await readdir(dir)).sort()).toEqual([VOTER_RECORD]);
    for (const recovered of [EMPTY, WITH_STATE]) {
      const later = await decide(dir, recovered, draws());
      expect(later.votingState).toBe('voter');
      expect(later.firstStart.identity).toBeUndefined();
      expect([...later.firstStart.countedEmpty]).toEqual([...countedEmpty]);
    }
  });

  it('a crash between the voter record and the marker removal: a voter, and the marker goes', async () => {
    const dir = await freshDir();
    await decide(dir, EMPTY, draws(0.25));
    await writeFile(join(dir, VOTER_RECORD), (await voterRecordText(new Map([[1, 5]]))).toString());
    const decision = await decide(dir, EMPTY, draws());
    expect(decision.votingState).toBe('voter');
    expect([...decision.firstStart.countedEmpty]).toEqual([[1, 5]]);
    expect((await readdir(dir)).sort()).toEqual([VOTER_RECORD]);
  });

  it('a voter record whose list does not read back still makes a voter, and the list is forgotten', async () => {
    const dir = await freshDir();
    const text = await voterRecordText(new Map([[1, 5]]));
    await writeFile(join(dir, VOTER_RECORD), text.toString().replace('counted 1 5', 'counted 1 x'));
    const decision = await decide(dir, EMPTY, draws());
    expect(decision.votingState).toBe('voter');
    expect(decision.firstStart.countedEmpty.size).toBe(0);
  });

  it('a log with state and no marker votes (a data dir from before the record); one replica always votes', async () => {
    expect((await decide(await freshDir(), WITH_STATE, draws())).votingState).toBe('voter');
    const single = await freshDir();
    expect((await decide(single, EMPTY, draws(), 1)).votingState).toBe('voter');
    expect(await readdir(single)).toEqual([]);
  });
});

/** The bytes removeNotVotingMarker writes for `countedEmpty` (made in a scratch dir). */
async function voterRecordText(countedEmpty: ReadonlyMap<number, number>): Promise<Buffer> {
  const scratch = await freshDir();
  await removeNotVotingMarker(scratch, { countedEmpty }, nodeFileSystem);
  return readFile(join(scratch, VOTER_RECORD));
}
