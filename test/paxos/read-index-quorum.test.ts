// Read-index with five replicas: a read is released only once a majority (the leader and two
// followers) confirmed the leader after the read arrived; one follower is not enough.
import { describe, expect, it } from 'vitest';
import { PaxosCore, type PaxosConfig } from '../../node/paxos/paxos-core.js';
import type { PaxosMessage } from '../../node/gen/shardbank/v1/peer.js';

const config = (ordinal: number, random: number): PaxosConfig => ({
  shard: 0,
  ordinal,
  replicaCount: 5,
  electionTimeoutTicksMin: 10,
  electionTimeoutTicksMax: 20,
  heartbeatTicks: 3,
  retransmitTicks: 4,
  inflightSlotsMax: 8,
  entriesPerMessageMax: 64,
  random: () => random,
});

/** Carries out every Ready at once (instant durable storage); delivers only what `deliver` allows. */
function settle(cores: PaxosCore[], deliver: (m: PaxosMessage) => boolean = () => true): PaxosMessage[] {
  const held: PaxosMessage[] = [];
  for (let round = 0; round < 50; round += 1) {
    const out: PaxosMessage[] = [];
    for (const core of cores) {
      const ready = core.ready();
      out.push(...ready.messages);
      if (ready.persist) core.persisted(ready.persist.id);
      out.push(...ready.messagesAfterPersist);
    }
    if (out.length === 0) break;
    for (const message of out) {
      if (deliver(message)) cores[message.to]!.step(message);
      else held.push(message);
    }
  }
  return held;
}

describe('read-index quorum', () => {
  it('with five replicas one follower confirming the leader does not release a read; two do', () => {
    const cores = [0.0, 0.3, 0.5, 0.7, 0.9].map((random, ordinal) => new PaxosCore(config(ordinal, random)));
    for (let t = 0; t < 30; t += 1) {
      for (const core of cores) core.tick();
      settle(cores);
    }
    const leader = cores.find((c) => c.isReadyLeader)!;
    expect(leader).toBeDefined();
    const me = leader.ordinal;
    const followers = [0, 1, 2, 3, 4].filter((o) => o !== me);
    expect(leader.readIndex(1)).toBe(true);
    // Only the first follower hears the leader (and answers): not a majority.
    const first = followers[0]!;
    const held = settle(cores, (m) => (m.from === me && m.to === first) || (m.from === first && m.to === me));
    expect(leader.ready().readsReady).toEqual([]);
    // A second follower's confirmation makes three of five.
    const second = followers[1]!;
    const toSecond = held.filter((m) => m.from === me && m.to === second);
    expect(toSecond.length).toBeGreaterThan(0);
    for (const message of toSecond) cores[second]!.step(message);
    const replies = cores[second]!.ready();
    for (const message of [...replies.messages, ...replies.messagesAfterPersist])
      if (message.to === me) leader.step(message);
    expect(leader.ready().readsReady.map((r) => r.id)).toEqual([1]);
  });
});
