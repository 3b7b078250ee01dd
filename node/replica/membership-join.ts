// How a replica that starts on an empty data dir learns which member of its shard it is
// (docs/ARCHITECTURE.md, "Membership", start modes). Its slot (pod ordinal, peer address,
// certificate) is given; its member id is the shard's to say: it asks its peers
// (GetMembership) and decides from the newest configuration they report. Pure decision plus
// a polling loop around an injected `ask`, so tests drive it without a network.
import type { MembershipReply } from '../gen/shardbank/v1/bank.js';

export type JoinDecision =
  /** Start as today with this member id (its slot): the shard's first start, or a founding slot nobody answers for. */
  | { kind: 'founding'; member: number }
  /** A voter at this address lost its disk: the disk-loss path (probing, rebuilding) as that member. */
  | { kind: 'rejoin-voter'; member: number }
  /** A learner added at this address: start as it, empty log, fed a snapshot and the log by the leader. */
  | { kind: 'learner'; member: number };

/** One round's verdict: decided, or wait and ask again (with why, for the log). */
export type JoinVerdict = { decided: JoinDecision } | { wait: string };

/**
 * Decides from the replies of one round of GetMembership (undefined: that peer did not answer).
 * - No answer at all: a founding slot starts as today (the cluster's first start, or every
 *   peer down: today's disk-loss rules then hold); a later slot waits (it can only be added).
 * - The member at `selfAddress` with the highest id, in the newest configuration reported: a
 *   voter means a lost disk (the disk-loss path); a learner is this replica, but only on the
 *   word of the ready leader (whose view of the chosen log is current) and only if no peer
 *   reports that id as a voter (a promotion some replica already knows is chosen).
 * - No member at `selfAddress`: not a member yet; wait (the driver adds it after starting it).
 */
export function decideJoin(
  selfAddress: string,
  slot: number,
  foundingReplicas: number,
  replies: readonly (MembershipReply | undefined)[],
): JoinVerdict {
  const answered = replies.filter((reply): reply is MembershipReply => reply !== undefined);
  if (answered.length === 0) {
    if (slot < foundingReplicas) return { decided: { kind: 'founding', member: slot } };
    return { wait: `no peer answers; slot ${slot} is not a founding slot (${foundingReplicas}): waiting to be added` };
  }
  const newest = answered.reduce((a, b) => (b.configurationSlot > a.configurationSlot ? b : a));
  const mine = newest.members.filter((member) => member.address === selfAddress);
  if (mine.length === 0) {
    return { wait: `not a member of the shard yet (no member at ${selfAddress}); waiting to be added as a learner` };
  }
  const member = mine.reduce((a, b) => (b.id > a.id ? b : a));
  if (member.voter) return { decided: { kind: 'rejoin-voter', member: member.id } };
  const votedElsewhere = answered.some((reply) => reply.members.some((m) => m.id === member.id && m.voter));
  if (votedElsewhere) return { decided: { kind: 'rejoin-voter', member: member.id } };
  const leader = answered.find((reply) => reply.fromLeader);
  if (leader === undefined) return { wait: `learner ${member.id} is at ${selfAddress}: waiting for the leader's word` };
  const leaderSays = leader.members.find((m) => m.id === member.id);
  if (leaderSays === undefined || leaderSays.voter || leader.configurationSlot < newest.configurationSlot) {
    return { wait: `learner ${member.id}: the leader's view is not the newest yet` };
  }
  return { decided: { kind: 'learner', member: member.id } };
}

export interface JoinOptions {
  selfAddress: string;
  slot: number;
  foundingReplicas: number;
  /** The peers' addresses to ask (the own shard's static table, self excluded). */
  peers: readonly string[];
  ask: (address: string) => Promise<MembershipReply | undefined>;
  log: (message: string) => void;
  /** Between rounds; the driver starts a process first and adds it afterwards. */
  pollMs?: number;
  /** Stops the loop (process shutdown). */
  stopped?: () => boolean;
}

/** Polls until decided. Addresses of members the peers report are asked too (new members). */
export async function joinShard(options: JoinOptions): Promise<JoinDecision | undefined> {
  const pollMs = options.pollMs ?? 500;
  const addresses = new Set(options.peers.filter((address) => address !== options.selfAddress));
  let lastWait = '';
  while (!(options.stopped?.() ?? false)) {
    const asked = [...addresses];
    const replies = await Promise.all(asked.map((address) => options.ask(address).catch(() => undefined)));
    for (const reply of replies) {
      for (const member of reply?.members ?? []) {
        if (member.address !== '' && member.address !== options.selfAddress) addresses.add(member.address);
      }
    }
    const verdict = decideJoin(options.selfAddress, options.slot, options.foundingReplicas, replies);
    if ('decided' in verdict) return verdict.decided;
    if (verdict.wait !== lastWait) options.log(verdict.wait);
    lastWait = verdict.wait;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  return undefined;
}
