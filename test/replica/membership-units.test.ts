// Issue 19, the replica's side of membership: how a replica on an empty data dir learns its
// member id (decideJoin), that a new member never takes itself for a voter of the founding
// configuration, the Membership service's request validation, and topology.json's rules.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { MemberView, MembershipReply } from '../../node/gen/shardbank/v1/bank.js';
import {
  applyChange,
  decodeConfigurationEntry,
  encodeConfigurationEntry,
  initialConfiguration,
  type Configuration,
} from '../../node/paxos/membership.js';
import { decideJoin } from '../../node/replica/membership-join.js';
import { changeOfRequest } from '../../node/replica/membership-service.js';
import { checkTopology } from '../../node/replica/replica.js';
import { parseReplicaConfig } from '../../node/replica/replica-config.js';
import { DEFAULT_TIMING, ShardNode } from '../../node/shard/shard-node.js';

const SELF = '10.0.0.4:50051';

function member(id: number, address: string, voter: boolean): MemberView {
  return { id, address, voter, caughtUp: false, commitIndex: 0 };
}

function reply(members: MemberView[], configurationSlot: number, fromLeader = false): MembershipReply {
  return {
    ok: true,
    error: '',
    leaderId: 0,
    leaderAddress: '',
    members,
    nextMemberId: Math.max(...members.map((m) => m.id)) + 1,
    configurationSlot,
    changeInFlight: false,
    commitIndex: 0,
    proposedSlot: 0,
    fromLeader,
  };
}

const founding = [
  member(0, '10.0.0.1:50051', true),
  member(1, '10.0.0.2:50051', true),
  member(2, '10.0.0.3:50051', true),
];

describe('decideJoin: the member id of a replica on an empty data dir', () => {
  it('no peer answers: a founding slot starts as today, a later slot waits to be added', () => {
    expect(decideJoin('10.0.0.2:50051', 1, 3, [undefined, undefined])).toEqual({
      decided: { kind: 'founding', member: 1 },
    });
    expect(decideJoin(SELF, 3, 3, [undefined, undefined])).toHaveProperty('wait');
  });

  it('a founding voter at its address (a lost disk): the disk-loss path as that member', () => {
    const at2 = reply(founding, 0, true);
    expect(decideJoin('10.0.0.3:50051', 2, 3, [at2, undefined])).toEqual({
      decided: { kind: 'rejoin-voter', member: 2 },
    });
  });

  it('no member at its address: not a member yet, it waits (never takes a founding id)', () => {
    const verdict = decideJoin(SELF, 3, 3, [reply(founding, 0, true), reply(founding, 0)]);
    expect(verdict).toHaveProperty('wait');
    expect(String((verdict as { wait: string }).wait)).toContain('not a member of the shard yet');
    // Even on a founding slot: peers answered, and none has a member at this address.
    expect(decideJoin('10.0.0.9:50051', 0, 3, [reply(founding, 0, true)])).toHaveProperty('wait');
  });

  it("a learner at its address, on the leader's word: that learner (the highest id at the address)", () => {
    const members = [...founding, member(3, SELF, false), member(5, SELF, false)];
    expect(decideJoin(SELF, 3, 3, [reply(members, 700, true), reply(founding, 0)])).toEqual({
      decided: { kind: 'learner', member: 5 },
    });
  });

  it('a learner view without the leader, or a stale leader view, waits', () => {
    const members = [...founding, member(3, SELF, false)];
    expect(decideJoin(SELF, 3, 3, [reply(members, 700)])).toHaveProperty('wait');
    expect(decideJoin(SELF, 3, 3, [reply(members, 700), reply(founding, 0, true)])).toHaveProperty('wait');
  });

  it('a peer that already knows the learner was promoted makes it the disk-loss path', () => {
    const asLearner = [...founding, member(3, SELF, false)];
    const asVoter = [...founding, member(3, SELF, true)];
    expect(decideJoin(SELF, 3, 3, [reply(asLearner, 700, true), reply(asVoter, 700)])).toEqual({
      decided: { kind: 'rejoin-voter', member: 3 },
    });
  });
});

describe('a new member never takes itself for a founding voter', () => {
  function newMember(foundingReplicas: number | undefined): ShardNode {
    return new ShardNode({
      topology: { shards: 1, replicasPerShard: 5, itemsPerShard: 10, initialBalance: 10 },
      shard: 0,
      ordinal: 3,
      member: 3,
      ...(foundingReplicas !== undefined ? { foundingReplicas } : {}),
      paxos: {
        electionTimeoutTicksMin: 2,
        electionTimeoutTicksMax: 3,
        heartbeatTicks: 1,
        retransmitTicks: 4,
        inflightSlotsMax: 1,
        entriesPerMessageMax: 64,
      },
      timing: DEFAULT_TIMING,
      commandsPerSlotMax: 64,
      snapshotEverySlots: 100,
      random: () => 0.5,
    });
  }

  it('member 3 of a shard founded with 3, now asked to be 5, with an empty log: not a voter, never campaigns', () => {
    const node = newMember(3);
    expect(node.core.config.replicaCount).toBe(3);
    expect(node.core.latestConfiguration.voters).toEqual([0, 1, 2]);
    let prepares = 0;
    for (let tick = 0; tick < 200; tick += 1) {
      node.tick();
      const ready = node.ready();
      prepares += ready.messages.filter((m) => m.body?.$case === 'prepare').length;
      if (ready.persist) node.persisted(ready.persist.id);
    }
    expect(prepares).toBe(0);
    expect(node.core.role).toBe('follower');
  });
});

describe('configuration entries with addresses', () => {
  it('add-learner records the address, remove drops it, and the entry round-trips (version 2)', () => {
    let c: Configuration = initialConfiguration(3);
    const added = applyChange(c, { type: 'add-learner', address: '10.0.0.4:50051' });
    expect(added.ok).toBe(true);
    c = (added as { configuration: Configuration }).configuration;
    expect(c.addresses).toEqual({ 3: '10.0.0.4:50051' });
    const entry = encodeConfigurationEntry(c);
    expect(entry[2]).toBe(2);
    expect(decodeConfigurationEntry(entry)).toEqual(c);
    const removed = applyChange(c, { type: 'remove', member: 3 });
    expect((removed as { configuration: Configuration }).configuration.addresses).toBeUndefined();
    // A configuration without addresses is still a version-1 entry (the simulator's bytes).
    expect(encodeConfigurationEntry(initialConfiguration(3))[2]).toBe(1);
    expect(applyChange(initialConfiguration(3), { type: 'add-learner', address: 'no port' })).toEqual({
      ok: false,
      error: 'address: "no port" is not host:port',
    });
  });
});

describe('ChangeMembership request validation names the field', () => {
  const base = { cluster: 'bank', shard: 0, expectedConfigurationSlot: 0 };
  it.each([
    [{ ...base, change: undefined }, 'change: one of add_learner, promote, demote, remove is required'],
    [{ ...base, change: { $case: 'addLearner' as const, addLearner: { address: '' } } }, 'add_learner.address'],
    [{ ...base, change: { $case: 'promote' as const, promote: 40 } }, 'promote: member id 40'],
  ])('%#', (request, says) => {
    const result = changeOfRequest(request);
    expect(result.ok).toBe(false);
    expect((result as { error: string }).error).toContain(says);
  });
});

describe('topology.json: the founding size stays, the current size may change', () => {
  const argv = (dir: string, extra: string[]) => [
    ...['--cluster', 'bank', '--shard', '0', '--ordinal', '1', '--shards', '1', '--insecure'],
    ...['--peers', '10.0.0.1:1,10.0.0.2:1,10.0.0.3:1,10.0.0.4:1,10.0.0.5:1', '--data-dir', dir],
    ...extra,
  ];

  it('accepts a changed --replicas-per-shard, refuses a changed founding size, reads old files as member = slot', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'topology-'));
    try {
      await writeFile(
        path.join(dir, 'topology.json'),
        JSON.stringify({
          cluster: 'bank',
          shard: 0,
          ordinal: 1,
          shards: 1,
          replicasPerShard: 3,
          itemsPerShard: 3000,
          initialBalance: 10,
        }),
      );
      const grown = parseReplicaConfig(argv(dir, ['--replicas-per-shard', '5', '--founding-replicas', '3']), {});
      expect(await checkTopology(grown)).toBe(1);
      const record = JSON.parse(await readFile(path.join(dir, 'topology.json'), 'utf8'));
      expect(record).toMatchObject({ replicasPerShard: 5, foundingReplicas: 3, member: 1 });
      const refounded = parseReplicaConfig(argv(dir, ['--replicas-per-shard', '5']), {});
      await expect(checkTopology(refounded)).rejects.toThrow(/founded with 3 replicas, --founding-replicas is 5/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
