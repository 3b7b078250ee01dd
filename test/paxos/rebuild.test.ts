// Protocol-aware recovery in the Paxos core: a replica that starts with an empty data dir
// votes in no promise or accept quorum until it knows the shard never ran (first start) or has
// re-learned what it may have promised or accepted (Paxos Made Live's non-voting rebuild).
import { describe, expect, it } from 'vitest';
import { PaxosCore, type Ready } from '../../node/paxos/paxos-core.js';
import type { PaxosMessage } from '../../node/gen/shardbank/v1/peer.js';
import { Harness, base } from './paxos-harness.js';

/** Every Accepted / Promised a replica sent that could count as a vote. */
function votesFrom(messages: PaxosMessage[], ordinal: number): PaxosMessage[] {
  return messages.filter(
    (m) =>
      m.from === ordinal &&
      ((m.body?.$case === 'accepted' && (m.body.accepted.slots.length > 0 || m.body.accepted.readSeq > 0)) ||
        m.body?.$case === 'promised'),
  );
}

/** Ticks the harness while recording every message on the wire. */
function tickRecording(h: Harness, ticks: number): PaxosMessage[] {
  const seen: PaxosMessage[] = [];
  const push = h.inbox.push.bind(h.inbox);
  h.inbox.push = (...messages: PaxosMessage[]) => {
    seen.push(...messages);
    return push(...messages);
  };
  h.tick(ticks);
  h.inbox.push = push;
  return seen;
}

describe('protocol-aware recovery of an empty replica', () => {
  it("a new cluster's replicas, all empty, find it is the first start and elect a leader", () => {
    const h = new Harness();
    for (const ordinal of [0, 1, 2]) h.wipe(ordinal, [0.0, 0.5, 0.9][ordinal]);
    expect(h.cores.every((core) => core.votingState === 'probing')).toBe(true);
    h.tick(60);
    expect(h.cores.every((core) => core.votingState === 'voter')).toBe(true);
    expect(h.leader()).toBeDefined();
  });

  it('a wiped follower rebuilds without voting, then votes once it applied the prefix of a leader elected without it', () => {
    const h = new Harness();
    h.tick(25);
    const leader = h.leader()!;
    for (const text of ['a', 'b', 'c']) leader.propose(Buffer.from(text));
    h.tick(5);
    const wiped = (leader.ordinal + 2) % 3;
    h.wipe(wiped);
    const seen = tickRecording(h, 3);
    expect(h.cores[wiped]!.votingState).not.toBe('voter');
    expect(votesFrom(seen, wiped)).toEqual([]);
    // It ends up voting, with the chosen values, and the shard keeps choosing.
    h.tick(80);
    expect(h.cores[wiped]!.votingState).toBe('voter');
    leader.propose(Buffer.from('d'));
    h.tick(6);
    expect([...h.applied[wiped]!.values()].filter((v) => v !== '')).toEqual(['a', 'b', 'c', 'd']);
    expect(h.cores[wiped]!.commitIndex).toBe(h.leader()!.commitIndex);
  });

  it('a rebuilding replica is no help for a quorum: with the other follower down nothing is chosen', () => {
    const h = new Harness();
    h.tick(25);
    const leader = h.leader()!;
    const wiped = (leader.ordinal + 1) % 3;
    const other = (leader.ordinal + 2) % 3;
    h.down.add(other);
    h.wipe(wiped);
    const before = leader.commitIndex;
    leader.propose(Buffer.from('x'));
    const seen = tickRecording(h, 40);
    expect(votesFrom(seen, wiped)).toEqual([]);
    expect(h.cores[wiped]!.votingState).toBe('rebuilding');
    expect(leader.commitIndex).toBe(before);
    // The other follower returns: 'x' is chosen and the wiped replica rebuilds.
    h.down.delete(other);
    h.tick(120);
    expect(h.leader()).toBeDefined();
    expect(h.cores[wiped]!.votingState).toBe('voter');
  });

  it('when the leader counted the lost promise it runs a new election, which the rebuilt replica does not vote in', () => {
    const h = new Harness();
    h.tick(25);
    const leader = h.leader()!;
    // The leader was elected with the promises of both followers; wiping one of them leaves a
    // leader whose election counted a promise that no longer exists on disk.
    const wiped = (leader.ordinal + 1) % 3;
    h.wipe(wiped);
    const seen = tickRecording(h, 150);
    expect(h.cores[wiped]!.votingState).toBe('voter');
    // A new election ran (the old leader's counted the lost promise), and the rebuilding
    // replica gave no promise in it.
    expect(seen.filter((m) => m.body?.$case === 'prepare' && m.to === wiped).length).toBeGreaterThan(0);
    expect(seen.filter((m) => m.from === wiped && m.body?.$case === 'promised')).toEqual([]);
    expect(votesFrom(seen, wiped)).toEqual([]);
    // Now it votes.
    h.leader()!.propose(Buffer.from('z'));
    const after = tickRecording(h, 3);
    expect(
      after.filter((m) => m.from === wiped && m.body?.$case === 'accepted' && m.body.accepted.slots.length > 0).length,
    ).toBeGreaterThan(0);
  });

  it('five replicas: no vote until a leader is elected by every other replica (a stale promise may sit anywhere)', () => {
    const h = new Harness([0.0, 0.2, 0.4, 0.6, 0.8]);
    h.tick(25);
    const leader = h.leader()!;
    const wiped = (leader.ordinal + 3) % 5;
    const away = (leader.ordinal + 4) % 5;
    h.down.add(away);
    h.wipe(wiped);
    const seen = tickRecording(h, 120);
    // Three voters still choose, but the wiped replica cannot know that no candidate holds its
    // old promise until a leader is elected by all four others: it keeps learning, not voting.
    expect(h.cores[wiped]!.votingState).toBe('rebuilding');
    expect(votesFrom(seen, wiped)).toEqual([]);
    expect(h.cores[wiped]!.commitIndex).toBe(h.leader()!.commitIndex);
    h.down.delete(away);
    h.tick(150);
    expect(h.cores[wiped]!.votingState).toBe('voter');
    expect(h.leader()).toBeDefined();
  });

  it('no vote before the recovered prefix of the qualifying leader is applied', () => {
    const h = new Harness();
    h.tick(25);
    const leader = h.leader()!;
    for (const text of ['a', 'b']) leader.propose(Buffer.from(text));
    h.tick(5);
    const wiped = (leader.ordinal + 1) % 3;
    h.wipe(wiped);
    // Only heartbeats reach the wiped replica: it hears a qualifying leader (after the
    // re-election) but can never learn the chosen slots.
    h.drop = (m) =>
      m.to === wiped &&
      ((m.body?.$case === 'accept' && m.body.accept.entries.length > 0) || m.body?.$case === 'installSnapshot');
    h.tick(150);
    expect(h.cores[wiped]!.votingState).toBe('rebuilding');
    h.drop = () => false;
    h.tick(60);
    expect(h.cores[wiped]!.votingState).toBe('voter');
  });

  it('no vote before it has what the leader had proposed when it answered the probe (slots its lost disk may have helped choose)', () => {
    const h = new Harness([0.0, 0.5, 0.9], { thriftyAccepts: true, entriesPerMessageMax: 1 });
    // Replica 1 is down during the first election: the leader is elected by 0 and 2, which
    // qualifies for 1. Then 1 is the quick follower and helps choose 'a' and 'b' alone with the
    // leader (2 never gets them), and its disk is lost.
    h.down.add(1);
    h.tick(25);
    const leader = h.leader()!;
    expect(leader.ordinal).toBe(0);
    h.down.delete(1);
    h.tick(5);
    const readySlot = leader.commitIndex;
    h.drop = (m) => m.to === 2 && m.body?.$case === 'accept' && m.body.accept.entries.length > 0;
    for (const text of ['a', 'b']) leader.propose(Buffer.from(text));
    h.tick(2);
    expect(leader.commitIndex).toBe(readySlot + 2);
    h.wipe(1);
    // The rebuilding replica learns the prefix but not the slots of 'a' and 'b'.
    h.drop = (m) => m.body?.$case === 'accept' && m.body.accept.entries.some((e) => e.slot > readySlot) && m.to !== 0;
    h.tick(120);
    expect(h.cores[1]!.votingState).toBe('rebuilding');
    h.drop = () => false;
    h.tick(60);
    expect(h.cores[1]!.votingState).toBe('voter');
    expect([...h.applied[1]!.values()].filter((v) => v !== '')).toEqual(['a', 'b']);
  });

  it("an earlier leader's answer to the probe does not count: no vote before the prefix of the leader it rebuilds under", () => {
    // r2 leads first (ballot B1, its no-op at slot 1). It pauses (a process pause: it keeps its
    // volatile state) and r0 is elected by r0 and r1 (B0); they choose 'x' together. r1's disk
    // is lost. r2 wakes for a moment, cut off but for probes, still believing it leads at B1,
    // and answers r1's probe with its own lastSlot (1). Then r0 re-runs its election for r1
    // (B2, by r0 and r2: it qualifies) and recovers 'x' in its prefix, but r1 and r2 get none
    // of the slots from 'x' on, and r1 hears no later answer to its probes. Had r1 taken r2's
    // stale answer for its target it would vote with the prefix it has (below 'x'), and once r0
    // crashes, r1 and r2 would elect a leader that fills 'x''s slot with a no-op.
    const h = new Harness([0.5, 0.9, 0.0]);
    h.tick(25);
    expect(h.leader()?.ordinal).toBe(2);
    h.down.add(2);
    h.tick(40);
    const leader = h.leader()!;
    expect(leader.ordinal).toBe(0);
    const xSlot = leader.propose(Buffer.from('x'))!;
    h.tick(3);
    expect(leader.commitIndex).toBe(xSlot);
    expect(xSlot).toBeGreaterThan(1);
    h.wipe(1);
    // From now on, nothing of r0's from slot xSlot on reaches r1 or r2.
    const push = h.inbox.push.bind(h.inbox);
    h.inbox.push = (...messages: PaxosMessage[]) =>
      push(
        ...messages.map((m) =>
          m.body?.$case === 'accept' && m.from === 0
            ? {
                ...m,
                body: {
                  ...m.body,
                  accept: { ...m.body.accept, entries: m.body.accept.entries.filter((e) => e.slot < xSlot) },
                },
              }
            : m,
        ),
      );
    h.drop = (m) =>
      ((m.from === 2 || m.to === 2) && m.body?.$case !== 'probe' && m.body?.$case !== 'probeReply') ||
      (m.body?.$case === 'probeReply' && m.to === 1 && m.from !== 2);
    h.down.delete(2);
    const stale = tickRecording(h, 4);
    expect(
      stale.some((m) => m.from === 2 && m.to === 1 && m.body?.$case === 'probeReply' && m.body.probeReply.leader),
    ).toBe(true);
    h.down.add(2);
    h.tick(2);
    // r2 wakes for good, and learns it no longer leads. No further answer to its probes
    // reaches r1.
    h.down.delete(2);
    h.drop = (m) => m.body?.$case === 'probeReply' && m.to === 1;
    const seen = tickRecording(h, 120);
    // r0 re-ran its election and leads, qualifying for r1 (elected by r0 and r2); it cannot
    // choose its new no-op, which r2 never gets.
    expect(h.cores.map((core) => core.role)).toEqual(['leader', 'follower', 'follower']);
    expect(seen.some((m) => m.from === 0 && m.to === 2 && m.body?.$case === 'prepare')).toBe(true);
    expect(h.cores[1]!.commitIndex).toBeLessThan(xSlot);
    expect(h.cores[1]!.votingState).toBe('rebuilding');
    expect(votesFrom(seen, 1)).toEqual([]);
    // r0 crashes: r1 and r2 hold nothing from 'x' on, and must not choose without it.
    // (With the ballot test dropped from checkRebuilt, r1 votes above, and without those two
    // assertions r1 and r2 apply a no-op here at the slot where 'x' was chosen.)
    h.down.add(0);
    h.tick(80);
    for (const ordinal of [1, 2]) expect(h.applied[ordinal]!.get(xSlot) ?? 'x').toBe('x');
    // r0 returns, and everything reaches everyone: r1 rebuilds, and 'x' is at its slot everywhere.
    h.inbox.push = push;
    h.drop = () => false;
    h.down.delete(0);
    h.tick(150);
    expect(h.cores[1]!.votingState).toBe('voter');
    for (const ordinal of [0, 1, 2]) expect(h.applied[ordinal]!.get(xSlot)).toBe('x');
  });

  it('staggered first start: a replica that probes after the first one voted is told it was counted empty, and votes', () => {
    // The Kubernetes run: all three start probing; r0's probes are answered first, r0 decides on
    // a first start and campaigns (it promised itself: it now reports has_state). Only then are
    // r1's and r2's probes answered. Before the fix they rebuilt, waiting for a leader elected
    // by every other replica, which never came with r0 the only voter.
    const h = new Harness();
    for (const ordinal of [0, 1, 2]) h.wipe(ordinal, [0.1, 0.5, 0.9][ordinal]);
    h.drop = (m) => m.body?.$case === 'probeReply' && m.to !== 0;
    h.tick(4);
    expect(h.cores[0]!.votingState).toBe('voter');
    expect(h.cores[1]!.votingState).toBe('probing');
    expect(h.cores[2]!.votingState).toBe('probing');
    const seen = tickRecording(h, 40);
    expect(seen.some((m) => m.from === 0 && m.body?.$case === 'prepare')).toBe(true);
    expect(h.cores[0]!.role).toBe('candidate');
    h.drop = () => false;
    h.tick(80);
    expect(h.cores.map((core) => core.votingState)).toEqual(['voter', 'voter', 'voter']);
    const leader = h.leader();
    expect(leader).toBeDefined();
    leader!.propose(Buffer.from('a'));
    h.tick(6);
    for (const ordinal of [0, 1, 2]) expect([...h.applied[ordinal]!.values()].filter((v) => v !== '')).toEqual(['a']);
  });

  it('staggered first start: a replica still rebuilding when it hears counted_empty votes too', () => {
    // r1 first hears r0's has_state reply, from before r0 remembered anything for it (it is
    // told counted_empty only by a later reply): it is rebuilding, and must leave it.
    const h = new Harness();
    for (const ordinal of [0, 1, 2]) h.wipe(ordinal, [0.1, 0.5, 0.9][ordinal]);
    h.drop = (m) => m.body?.$case === 'probeReply' && m.to !== 0;
    h.tick(30);
    expect(h.cores[0]!.votingState).toBe('voter');
    // r0's replies reach r1 without counted_empty (as from a replica that never counted it).
    h.drop = (m) => m.body?.$case === 'probeReply' && m.to === 2;
    const strip = h.inbox.push.bind(h.inbox);
    h.inbox.push = (...messages: PaxosMessage[]) =>
      strip(
        ...messages.map((m) =>
          m.body?.$case === 'probeReply' && m.to === 1
            ? { ...m, body: { ...m.body, probeReply: { ...m.body.probeReply, countedEmpty: false } } }
            : m,
        ),
      );
    h.tick(6);
    expect(h.cores[1]!.votingState).toBe('rebuilding');
    h.inbox.push = strip;
    h.drop = () => false;
    h.tick(80);
    expect(h.cores.map((core) => core.votingState)).toEqual(['voter', 'voter', 'voter']);
    expect(h.leader()).toBeDefined();
  });

  it('staggered first start with five replicas: every replica ends up voting (counted empty, or rebuilt under a leader of all the others)', () => {
    const randoms = [0.1, 0.3, 0.5, 0.7, 0.9];
    const h = new Harness(randoms);
    for (const ordinal of [0, 1, 2, 3, 4]) h.wipe(ordinal, randoms[ordinal]);
    h.drop = (m) => m.body?.$case === 'probeReply' && m.to !== 0;
    h.tick(30);
    expect(h.cores[0]!.votingState).toBe('voter');
    expect(h.cores[0]!.role).toBe('candidate');
    h.drop = () => false;
    h.tick(150);
    expect(h.cores.map((core) => core.votingState)).toEqual(['voter', 'voter', 'voter', 'voter', 'voter']);
    expect(h.leader()).toBeDefined();
  });

  it('after a first start, a replica that loses its disk (a new life, a new nonce) is not told counted_empty: it rebuilds', () => {
    // r0 decided on a first start counting r1's and r2's empty replies of their first lives.
    const h = new Harness();
    for (const ordinal of [0, 1, 2]) h.wipe(ordinal, [0.1, 0.5, 0.9][ordinal]);
    h.drop = (m) => m.body?.$case === 'probeReply' && m.to !== 0;
    h.tick(4);
    h.drop = () => false;
    h.tick(60);
    expect(h.cores.map((core) => core.votingState)).toEqual(['voter', 'voter', 'voter']);
    const leader = h.leader()!;
    expect(leader.ordinal).toBe(0);
    for (const text of ['a', 'b']) leader.propose(Buffer.from(text));
    h.tick(5);
    // The shard ran, r1 helped choose; now r1's disk is lost and r2 is away. r1 may hold
    // nothing of what it promised or accepted: it must not vote, or r0 and r1 could choose
    // without anything r1 accepted before.
    h.down.add(2);
    h.wipe(1, 0.3);
    const before = leader.commitIndex;
    leader.propose(Buffer.from('x'));
    const seen = tickRecording(h, 40);
    expect(h.cores[1]!.votingState).toBe('rebuilding');
    expect(votesFrom(seen, 1)).toEqual([]);
    expect(leader.commitIndex).toBe(before);
    // r2 is back: a leader elected by r0 and r2, and r1 rebuilds.
    h.down.delete(2);
    h.tick(150);
    expect(h.cores[1]!.votingState).toBe('voter');
    expect(h.leader()).toBeDefined();
  });

  it("restart during the first start: replicas counted empty that restart under their markers' identities are told counted_empty, and vote", () => {
    // r0 counts r1 and r2 empty and campaigns before they hear from it; then both restart (a
    // new life: a new probe nonce) while still probing, their NOT_VOTING markers (and the
    // identity in each) kept. Before the identity, each came back under a new life nonce that
    // r0 never counted: both rebuilt, waiting for a leader elected by every other replica.
    const h = new Harness();
    for (const ordinal of [0, 1, 2])
      h.wipe(ordinal, [0.1, 0.5, 0.9][ordinal], { firstStart: { identity: 1001 + ordinal } });
    h.drop = (m) => m.body?.$case === 'probeReply' && m.to !== 0;
    h.tick(30);
    expect(h.cores[0]!.votingState).toBe('voter');
    expect(h.cores[0]!.role).toBe('candidate');
    for (const ordinal of [1, 2])
      h.wipe(ordinal, [0.3, 0.7][ordinal - 1], { firstStart: { identity: 1001 + ordinal } });
    h.drop = () => false;
    h.tick(80);
    expect(h.cores.map((core) => core.votingState)).toEqual(['voter', 'voter', 'voter']);
    const leader = h.leader();
    expect(leader).toBeDefined();
    leader!.propose(Buffer.from('a'));
    h.tick(6);
    for (const ordinal of [0, 1, 2]) expect([...h.applied[ordinal]!.values()].filter((v) => v !== '')).toEqual(['a']);
  });

  it('restart during the first start: the first-start voter restarts from its durable counted list and still tells its peers', () => {
    const run = (remembered: boolean): PaxosCore[] => {
      const h = new Harness();
      for (const ordinal of [0, 1, 2])
        h.wipe(ordinal, [0.1, 0.5, 0.9][ordinal], { firstStart: { identity: 1001 + ordinal } });
      h.drop = (m) => m.body?.$case === 'probeReply' && m.to !== 0;
      h.tick(30);
      expect(h.cores[0]!.role).toBe('candidate');
      // r0 restarts with its promise (has_state), and with or without its VOTER record's list.
      const promised = h.cores[0]!.promisedBallot;
      expect(promised.round).toBeGreaterThan(0);
      h.cores[0] = new PaxosCore(
        {
          ...base,
          ordinal: 0,
          random: () => 0.2,
          ...(remembered
            ? {
                firstStart: {
                  countedEmpty: new Map([
                    [1, 1002],
                    [2, 1003],
                  ]),
                },
              }
            : {}),
        },
        { hardState: { promised }, snapshot: undefined, entries: [] },
      );
      h.drop = () => false;
      h.tick(120);
      return h.cores;
    };
    expect(run(false).map((core) => core.votingState)).toEqual(['voter', 'rebuilding', 'rebuilding']);
    const cores = run(true);
    expect(cores.map((core) => core.votingState)).toEqual(['voter', 'voter', 'voter']);
    expect(cores.filter((core) => core.isReadyLeader)).toHaveLength(1);
  });

  it('a first-start voter answers counted_empty only once its decision is durable (after startVoting)', () => {
    const core = new PaxosCore({
      ...base,
      ordinal: 0,
      random: () => 0.4,
      votingState: 'probing',
      firstStart: { identity: 7 },
    });
    const probeReply = (from: number, nonce: number): PaxosMessage => ({
      shard: 0,
      from,
      to: 0,
      ballot: undefined,
      body: {
        $case: 'probeReply',
        probeReply: {
          hasState: false,
          leader: false,
          lastSlot: 0,
          nonce,
          replierIdentity: 100 + from,
          countedEmpty: false,
        },
      },
    });
    const probeFrom = (from: number): PaxosMessage => ({
      shard: 0,
      from,
      to: 0,
      ballot: undefined,
      body: { $case: 'probe', probe: { nonce: 5, identity: 100 + from } },
    });
    const countedEmptyIn = (ready: Ready) =>
      ready.messages.filter((m) => m.body?.$case === 'probeReply' && m.body.probeReply.countedEmpty).map((m) => m.to);
    for (let i = 0; i < base.heartbeatTicks; i += 1) core.tick();
    const probes = core.ready().messages.filter((m) => m.body?.$case === 'probe');
    expect(probes.map((m) => (m.body?.$case === 'probe' ? m.body.probe.identity : 0))).toEqual([7, 7]);
    const nonce = probes[0]!.body?.$case === 'probe' ? probes[0]!.body.probe.nonce : 0;
    core.step(probeReply(1, nonce));
    core.step(probeReply(2, nonce));
    const decided = core.ready();
    const event = decided.events.find((e) => e.type === 'voting-ready');
    expect(event?.type === 'voting-ready' && [...event.firstStart.countedEmpty]).toEqual([
      [1, 101],
      [2, 102],
    ]);
    core.step(probeFrom(1));
    expect(countedEmptyIn(core.ready())).toEqual([]);
    core.startVoting();
    core.step(probeFrom(1));
    core.step({ ...probeFrom(2), body: { $case: 'probe', probe: { nonce: 5, identity: 999 } } });
    expect(countedEmptyIn(core.ready())).toEqual([1]);
  });

  it('a single replica with an empty data dir is at its first start', () => {
    const core = new PaxosCore({ ...base, replicaCount: 1, ordinal: 0, random: () => 0.5, votingState: 'probing' });
    expect(core.votingState).toBe('voter');
  });
});
