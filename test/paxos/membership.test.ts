// The membership rules as a pure module (docs/ARCHITECTURE.md, "Membership"): one-voter steps,
// ids never reused, learners never in a quorum, the window α between a configuration's slot and
// the first slot it governs, the codec and the snapshot envelope.
import { describe, expect, it } from 'vitest';
import {
  applyChange,
  CONFIGURATION_WINDOW_SLOTS as ALPHA,
  ConfigurationHistory,
  configurationProblem,
  decodeConfigurationEntry,
  encodeConfigurationEntry,
  hasMajority,
  hasMajorityOfEach,
  initialConfiguration,
  isConfigurationEntry,
  successionProblem,
  unwrapSnapshot,
  wrapSnapshot,
  type Configuration,
} from '../../node/paxos/membership.js';
import { CommandBatch } from '../../node/gen/shardbank/v1/peer.js';

function step(configuration: Configuration, change: Parameters<typeof applyChange>[1]): Configuration {
  const result = applyChange(configuration, change);
  if (!result.ok) throw new Error(result.error);
  return result.configuration;
}

describe('configuration changes', () => {
  it('grows 3 -> 5 and back one voter at a time, each new member a new id', () => {
    let c = initialConfiguration(3);
    expect(c).toEqual({ voters: [0, 1, 2], learners: [], nextMemberId: 3 });
    c = step(c, { type: 'add-learner' });
    c = step(c, { type: 'add-learner' });
    expect(c).toEqual({ voters: [0, 1, 2], learners: [3, 4], nextMemberId: 5 });
    c = step(c, { type: 'promote', member: 3 });
    c = step(c, { type: 'promote', member: 4 });
    expect(c).toEqual({ voters: [0, 1, 2, 3, 4], learners: [], nextMemberId: 5 });
    c = step(c, { type: 'demote', member: 0 });
    c = step(c, { type: 'remove', member: 0 });
    c = step(c, { type: 'remove', member: 1 });
    expect(c).toEqual({ voters: [2, 3, 4], learners: [], nextMemberId: 5 });
    // The id of a removed member never comes back: a lost disk rejoins under a new id.
    expect(step(c, { type: 'add-learner' }).learners).toEqual([5]);
  });

  it('refuses impossible steps as values, naming what is wrong', () => {
    const c = initialConfiguration(3);
    expect(applyChange(c, { type: 'promote', member: 1 })).toEqual({ ok: false, error: 'member 1 is not a learner' });
    expect(applyChange(c, { type: 'demote', member: 7 })).toEqual({ ok: false, error: 'member 7 is not a voter' });
    const one = initialConfiguration(1);
    expect(applyChange(one, { type: 'remove', member: 0 })).toEqual({
      ok: false,
      error: 'voters: a configuration needs at least one voter',
    });
  });

  it('a succession changes at most one voter, never reuses an id, never makes a voter of a non-learner', () => {
    const c = initialConfiguration(3);
    const twoAtOnce = { voters: [0], learners: [], nextMemberId: 3 };
    expect(successionProblem(c, twoAtOnce)).toBe('voters: more than one voter changes in one step');
    const reused = { voters: [0, 1, 2], learners: [1], nextMemberId: 3 };
    expect(successionProblem(c, reused)).toBe('voters, learners: member 1 is both a voter and a learner');
    const removed = { voters: [0, 1], learners: [], nextMemberId: 3 };
    expect(successionProblem(c, removed)).toBeUndefined();
    expect(successionProblem(removed, c)).toMatch(/member 2: a former or never-added id/);
    const straightToVoter = { voters: [0, 1, 2, 3], learners: [], nextMemberId: 4 };
    expect(successionProblem(c, straightToVoter)).toBe(
      'voters: member 3 becomes a voter without having been a learner',
    );
    expect(successionProblem(c, { voters: [0, 1, 2], learners: [], nextMemberId: 2 })).toMatch(/nextMemberId/);
  });

  it('names the field of a malformed configuration', () => {
    expect(configurationProblem({ voters: [], learners: [], nextMemberId: 1 })).toMatch(/^voters:/);
    expect(configurationProblem({ voters: [2, 1], learners: [], nextMemberId: 3 })).toMatch(
      /^voters: ids must be sorted/,
    );
    expect(configurationProblem({ voters: [0], learners: [5], nextMemberId: 3 })).toMatch(/^learners: member id 5/);
    expect(configurationProblem({ voters: [0], learners: [], nextMemberId: 99 })).toMatch(/^nextMemberId:/);
  });
});

describe('quorums', () => {
  it('learners never count: two voters of three plus any learners, not one voter and learners', () => {
    const c: Configuration = { voters: [0, 1, 2], learners: [3, 4], nextMemberId: 5 };
    expect(hasMajority(c, (id) => [0, 1].includes(id))).toBe(true);
    expect(hasMajority(c, (id) => [0, 3, 4].includes(id))).toBe(false);
    expect(hasMajority(c, (id) => [3, 4].includes(id))).toBe(false);
  });

  it('a majority of each configuration when several could have chosen', () => {
    const a = initialConfiguration(3);
    const b: Configuration = { voters: [0, 1, 2, 3], learners: [], nextMemberId: 4 };
    // {0, 1} is a majority of a, not of b (needs 3 of 4).
    expect(hasMajorityOfEach([a, b], (id) => [0, 1].includes(id))).toBe(false);
    expect(hasMajorityOfEach([a, b], (id) => [0, 1, 3].includes(id))).toBe(true);
  });
});

describe('codec', () => {
  it('a configuration entry round-trips and is told apart from every command batch', () => {
    const c: Configuration = { voters: [0, 2, 3], learners: [5], nextMemberId: 6 };
    const entry = encodeConfigurationEntry(c);
    expect(isConfigurationEntry(entry)).toBe(true);
    expect(decodeConfigurationEntry(entry)).toEqual(c);
    const batch = Buffer.from(CommandBatch.encode({ commands: [{ body: { $case: 'noop', noop: {} } }] }).finish());
    expect(isConfigurationEntry(batch)).toBe(false);
    expect(isConfigurationEntry(Buffer.alloc(0))).toBe(false);
  });

  it('refuses a damaged entry naming the field', () => {
    const entry = encodeConfigurationEntry(initialConfiguration(3));
    const text = entry.subarray(3).toString('utf8').replace('"voters":[0,1,2]', '"voters":[0,1,9]');
    const bad = Buffer.concat([entry.subarray(0, 3), Buffer.from(text)]);
    expect(() => decodeConfigurationEntry(bad)).toThrow(/configuration entry: voters: member id 9/);
  });

  it('the snapshot envelope carries the configurations and leaves the data untouched; old snapshots have none', () => {
    const data = Buffer.from('bank state');
    const epochs = [
      { fromSlot: 1, configuration: initialConfiguration(3) },
      { fromSlot: 900, configuration: { voters: [0, 1, 2], learners: [3], nextMemberId: 4 } },
    ];
    const wrapped = unwrapSnapshot(wrapSnapshot(epochs, data));
    expect(wrapped.epochs).toEqual(epochs);
    expect(wrapped.data.equals(data)).toBe(true);
    expect(unwrapSnapshot(data)).toEqual({ epochs: undefined, data });
  });
});

describe('configuration history: in force from slot c + α, never before it is chosen', () => {
  it('a slot is governed by the configuration chosen at least α slots before it', () => {
    const history = ConfigurationHistory.initial(3);
    const grown = step(initialConfiguration(3), { type: 'add-learner' });
    history.recordChosen(10, grown);
    expect(history.inForceAt(10 + ALPHA - 1)).toEqual(initialConfiguration(3));
    expect(history.inForceAt(10 + ALPHA)).toEqual(grown);
    expect(history.changePendingAfter(10)).toBe(true);
    expect(history.changePendingAfter(10 + ALPHA - 1)).toBe(false);
    expect(history.inForceBetween(11, 11 + ALPHA)).toEqual([initialConfiguration(3), grown]);
  });

  it('a change chosen while another comes into force, or of two voters at once, is void on every replica', () => {
    const history = ConfigurationHistory.initial(3);
    const grown = step(initialConfiguration(3), { type: 'add-learner' });
    expect(history.recordChosen(10, grown)).toBe(true);
    const again = step(grown, { type: 'add-learner' });
    // Two leaders' proposals chosen side by side by a later leader's recovery: the second is void.
    expect(history.recordChosen(10 + ALPHA - 1, again)).toBe(false);
    expect(history.latest).toEqual(grown);
    expect(history.inForceAt(10 + ALPHA + ALPHA)).toEqual(grown);
    expect(history.recordChosen(10 + ALPHA, again)).toBe(true);
    const h2 = ConfigurationHistory.initial(3);
    expect(h2.recordChosen(5, { voters: [0], learners: [], nextMemberId: 3 })).toBe(false);
    expect(h2.latest).toEqual(initialConfiguration(3));
    expect(() => h2.recordChosen(4, grown)).toThrow(/out of order/);
  });

  it('a snapshot keeps what governs the slots after it', () => {
    const history = ConfigurationHistory.initial(3);
    const grown = step(initialConfiguration(3), { type: 'add-learner' });
    history.recordChosen(10, grown);
    expect(history.epochsAfter(20)).toEqual([
      { fromSlot: 1, configuration: initialConfiguration(3) },
      { fromSlot: 10 + ALPHA, configuration: grown },
    ]);
    expect(history.epochsAfter(10 + ALPHA)).toEqual([{ fromSlot: 10 + ALPHA, configuration: grown }]);
    history.trim(10 + ALPHA);
    expect(history.epochList).toEqual([{ fromSlot: 10 + ALPHA, configuration: grown }]);
    expect(history.inForceAt(10 + ALPHA + 1)).toEqual(grown);
  });
});
