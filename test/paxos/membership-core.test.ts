// The membership rules in the Paxos core (docs/ARCHITECTURE.md, "Membership"): a learner gets
// the log and never counts, a promotion only once caught up, one change in flight, a change in
// force 256 slots after its entry, a removed replica never counts, the leader never removes
// itself, phase 1 needs a majority of every configuration a promise reveals, snapshots carry
// the configuration.
import { describe, expect, it } from 'vitest';
import { Harness } from './paxos-harness.js';
import type { PaxosCore } from '../../node/paxos/paxos-core.js';
import { CONFIGURATION_WINDOW_SLOTS } from '../../node/paxos/membership.js';

/** Three voters (0, 1, 2) and a fourth replica (id 3) that is not a member yet. */
function shardWithSpare(): Harness {
  const h = new Harness([0.0, 0.5, 0.9, 0.7], { replicaCount: 3 });
  h.tick(25);
  return h;
}

function leaderOf(h: Harness): PaxosCore {
  const leader = h.leader();
  if (!leader) throw new Error('no single ready leader');
  return leader;
}

function propose(h: Harness, leader: PaxosCore, values: string[]): void {
  for (const value of values) expect(leader.propose(Buffer.from(value))).toBeDefined();
  h.pump();
}

/** Proposes one change and runs until it is in force (the leader pads the window with no-ops). */
function change(h: Harness, change: Parameters<PaxosCore['proposeConfigurationChange']>[0]): void {
  const leader = leaderOf(h);
  const result = leader.proposeConfigurationChange(change);
  if (!result.ok) throw new Error(result.error);
  for (let i = 0; i < 40 && leader.configurationChangeInFlight; i += 1) h.tick(1);
  expect(leader.configurationChangeInFlight).toBe(false);
  expect(leader.configuration).toEqual(result.configuration);
}

function values(h: Harness, ordinal: number): string[] {
  return [...h.applied[ordinal]!.entries()]
    .filter(([, v]) => v !== '' && !v.startsWith('\x07'))
    .sort((a, b) => a[0] - b[0])
    .map(([, v]) => v);
}

describe('membership in the core', () => {
  it('a replica that is no member stays silent: it never stands for election', () => {
    const h = shardWithSpare();
    expect(leaderOf(h).ordinal).toBe(0);
    expect(h.cores[3]!.role).toBe('follower');
    expect(h.cores[3]!.electionsStarted).toBe(0);
  });

  it('a learner receives the log and applies it, and never counts in a quorum', () => {
    const h = shardWithSpare();
    const leader = leaderOf(h);
    propose(h, leader, ['a', 'b']);
    change(h, { type: 'add-learner' });
    expect(leader.configuration).toEqual({ voters: [0, 1, 2], learners: [3], nextMemberId: 4 });
    propose(h, leader, ['c']);
    h.tick(3); // the learner knows 'c' is chosen from the next heartbeat
    expect(values(h, 3)).toEqual(['a', 'b', 'c']);
    // With both other voters down, the leader and the learner are no majority: nothing is chosen.
    h.down.add(1).add(2);
    const commit = leader.commitIndex;
    propose(h, leader, ['d']);
    h.tick(3);
    expect(leader.commitIndex).toBe(commit);
    expect(values(h, 3)).toEqual(['a', 'b', 'c']);
    h.tick(30); // check-quorum: a learner does not keep a leader in office either
    expect(leader.role).not.toBe('leader');
    expect(h.cores[3]!.electionsStarted).toBe(0);
  });

  it('a learner is promoted only once caught up; then the shard needs 3 of 4', () => {
    const h = shardWithSpare();
    const leader = leaderOf(h);
    change(h, { type: 'add-learner' });
    h.down.add(3);
    propose(h, leader, ['a', 'b', 'c']);
    h.tick(10);
    expect(leader.proposeConfigurationChange({ type: 'promote', member: 3 })).toEqual({
      ok: false,
      error: 'member 3 is not caught up',
    });
    h.down.delete(3);
    h.tick(10);
    change(h, { type: 'promote', member: 3 });
    expect(leader.configuration.voters).toEqual([0, 1, 2, 3]);
    // 0 and 1 were a majority of three; of four they are not.
    h.down.add(2).add(3);
    const commit = leader.commitIndex;
    propose(h, leader, ['x']);
    h.tick(2);
    expect(leader.commitIndex).toBe(commit);
    h.down.delete(3);
    h.tick(6);
    expect(leader.commitIndex).toBeGreaterThan(commit);
    expect(values(h, 3)).toEqual(['a', 'b', 'c', 'x']);
  });

  it('one change in flight: a second is refused until the first is in force', () => {
    const h = shardWithSpare();
    const leader = leaderOf(h);
    const first = leader.proposeConfigurationChange({ type: 'add-learner' });
    expect(first.ok).toBe(true);
    expect(leader.proposeConfigurationChange({ type: 'add-learner' })).toEqual({
      ok: false,
      error: 'a configuration change is in flight',
    });
    // The entry is chosen, but the slots after it are held back: in force only from its slot + 256.
    h.drop = (m) => m.body?.$case === 'accept' && m.body.accept.entries.some((e) => e.slot > first.slot! + 2);
    h.tick(5);
    expect(leader.commitIndex).toBeGreaterThanOrEqual(first.slot!);
    expect(leader.latestConfiguration.learners).toEqual([3]);
    expect(leader.configuration.learners).toEqual([]);
    expect(leader.configurationChangeInFlight).toBe(true);
    expect(leader.proposeConfigurationChange({ type: 'add-learner' }).ok).toBe(false);
    h.drop = () => false;
    for (let i = 0; i < 40 && leader.configurationChangeInFlight; i += 1) h.tick(1);
    expect(leader.configuration.learners).toEqual([3]);
    expect(leader.commitIndex).toBeGreaterThanOrEqual(first.slot! + CONFIGURATION_WINDOW_SLOTS - 1);
    expect(leader.proposeConfigurationChange({ type: 'add-learner' }).ok).toBe(true);
  });

  it('the leader never removes itself; after a hand-over the new leader removes it, and it never counts again', () => {
    const h = shardWithSpare();
    const leader = leaderOf(h);
    propose(h, leader, ['a']);
    expect(leader.proposeConfigurationChange({ type: 'remove', member: 0 })).toEqual({
      ok: false,
      error: 'the leader cannot remove itself: hand leadership over first',
    });
    leader.transferLeadership(1);
    h.tick(5);
    const next = leaderOf(h);
    expect(next.ordinal).toBe(1);
    change(h, { type: 'remove', member: 0 });
    expect(next.configuration).toEqual({ voters: [1, 2], learners: [], nextMemberId: 3 });
    // 0 is removed: with 2 down, 1 and 0 are no majority of {1, 2}.
    h.down.add(2);
    const commit = next.commitIndex;
    propose(h, next, ['b']);
    h.tick(2);
    expect(next.commitIndex).toBe(commit);
    // And 0 never stands for election again, though it hears no leader.
    h.down.add(1);
    const elections = h.cores[0]!.electionsStarted;
    h.tick(60);
    expect(h.cores[0]!.electionsStarted).toBe(elections);
  });

  it('phase 1: a candidate with a stale prefix needs a majority of the configuration a promise reveals', () => {
    const h = shardWithSpare();
    const leader = leaderOf(h);
    // 2 is down through the whole change: its history knows only {0, 1, 2}.
    h.down.add(2);
    change(h, { type: 'add-learner' });
    change(h, { type: 'promote', member: 3 });
    propose(h, leader, ['a']);
    expect(leader.configuration.voters).toEqual([0, 1, 2, 3]);
    // Leader and 3 go down; 2 comes back. 1 and 2 are a majority of {0, 1, 2}, not of {0, 1, 2, 3}.
    h.down.add(0).add(3);
    h.down.delete(2);
    // 1 times out first and its Prepares would keep resetting 2's timer: hold them, so 2 stands
    // and 1 promises it. Without the rule 2 would win with {1, 2} (and step down at check-quorum).
    h.drop = (m) => m.from === 1 && m.to === 2 && m.body?.$case === 'prepare';
    for (let tick = 0; tick < 80; tick += 1) {
      h.tick(1);
      expect(h.cores.filter((core, id) => !h.down.has(id) && core.role === 'leader')).toHaveLength(0);
    }
    expect(h.cores[2]!.role).toBe('candidate');
    h.drop = () => false;
    expect(h.cores[2]!.electionsStarted + h.cores[1]!.electionsStarted).toBeGreaterThan(0);
    // With 3 back there are three of four: a leader, which has everything.
    h.down.delete(3);
    h.tick(80);
    const next = leaderOf(h);
    propose(h, next, ['b']);
    h.tick(5);
    expect(values(h, 2)).toEqual(['a', 'b']);
    expect(h.cores[2]!.configuration.voters).toEqual([0, 1, 2, 3]);
  });

  it('a snapshot carries the configuration: a learner caught up from one knows it', () => {
    const h = shardWithSpare();
    const leader = leaderOf(h);
    h.down.add(3);
    change(h, { type: 'add-learner' });
    propose(h, leader, ['a', 'b']);
    // Every live replica compacts its applied prefix; the learner, down, must get the snapshot.
    for (const id of [0, 1, 2]) h.cores[id]!.compact(h.cores[id]!.appliedIndex, Buffer.from('state'));
    h.pump();
    h.down.delete(3);
    h.tick(30);
    const learner = h.cores[3]!;
    expect(learner.snapshotIndex).toBeGreaterThan(0);
    expect(learner.latestConfiguration).toEqual({ voters: [0, 1, 2], learners: [3], nextMemberId: 4 });
    expect(learner.commitIndex).toBe(leader.commitIndex);
  });
});
