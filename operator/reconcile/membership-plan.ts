// The membership planner (issue 19): what a shard's next single step is, from what the
// operator observed: the shard's newest chosen configuration (GetMembership), its pods and the
// size the spec asks for. A pure function; reconcile/membership-driver.ts carries the step
// out, one step at a time and one shard at a time, and retries a failed one.
//
// The steps, one voter at a time (docs/ARCHITECTURE.md, "Membership"):
//   grow:    scale the StatefulSet by one pod, wait until it runs, add a learner at its
//            address, wait until the leader sees it caught up, promote it; repeat.
//   shrink:  demote the voter on the highest pod (the leader hands over first and refuses,
//            which is retried), remove it, then scale the StatefulSet down by one.
//   replace: a pod whose disk was lost (its replica says so) gets a new member at the same
//            address: add a learner there, wait caught up, promote it, then demote and remove
//            the old member id.
// Nothing is planned while a change is in flight (proposed, or chosen and not in force), and
// every change names the configuration it applies to (compare-and-set on its slot), so a
// step is never applied twice or on top of a configuration the planner did not see.

export interface MemberView {
  id: number;
  address: string;
  voter: boolean;
  /** The leader's view: heard recently and has its commit index. */
  caughtUp: boolean;
}

export interface MembershipView {
  members: MemberView[];
  nextMemberId: number;
  /** The slot of the entry that chose this configuration (0: the founding one). */
  configurationSlot: number;
  changeInFlight: boolean;
  /** The leader's member id, -1 when unknown. */
  leaderId: number;
}

export interface PodView {
  ordinal: number;
  /** Phase Running and not terminating. */
  running: boolean;
  ready: boolean;
  /**
   * Its replica says it is no member (it started on an empty data dir) while the configuration
   * gives its address to a member that is not caught up: that member's disk is lost.
   */
  lostDisk: boolean;
}

export interface ShardPlanInput {
  shard: number;
  /** spec.replicasPerShard: the voters wanted. */
  desired: number;
  /** The StatefulSet's spec.replicas. */
  pods: number;
  /** The pods that exist (any order). */
  podViews: PodView[];
  /** Undefined: no replica answered. */
  membership: MembershipView | undefined;
  /** The pod ordinal of a peer address, undefined for an address of no pod of this shard. */
  ordinalOf: (address: string) => number | undefined;
  addressOf: (ordinal: number) => string;
}

export type MembershipChange =
  | { type: 'add-learner'; address: string; ordinal: number }
  | { type: 'promote'; member: number; ordinal: number }
  | { type: 'demote'; member: number; ordinal: number }
  | { type: 'remove'; member: number; ordinal: number | undefined };

export type MembershipStep =
  /** Nothing to do: the configuration has `desired` voters, one per pod, no learner. */
  | { kind: 'settled' }
  /** A change runs; the next step must wait for something (message: what). */
  | { kind: 'wait'; message: string }
  /** Nothing the driver may do (message: what a human must look at). */
  | { kind: 'blocked'; message: string }
  /** `fresh`: ordinals added that no member has: a claim left there by a removed member is stale. */
  | { kind: 'scale'; pods: number; message: string; fresh?: number[] }
  | { kind: 'change'; change: MembershipChange; expectedConfigurationSlot: number; message: string };

interface Placed {
  member: MemberView;
  ordinal: number | undefined;
}

export function planShardStep(input: ShardPlanInput): MembershipStep {
  const { shard, desired, pods, membership } = input;
  const tag = `shard ${shard}`;
  if (!membership) {
    if (pods === desired) return { kind: 'settled' };
    return { kind: 'wait', message: `${tag}: no replica answered GetMembership; waiting to read its configuration` };
  }
  const slot = membership.configurationSlot;
  const change = (c: MembershipChange, message: string): MembershipStep => ({
    kind: 'change',
    change: c,
    expectedConfigurationSlot: slot,
    message: `${tag}: ${message}`,
  });
  const pod = (ordinal: number) => input.podViews.find((p) => p.ordinal === ordinal);
  const placed: Placed[] = membership.members.map((member) => ({ member, ordinal: input.ordinalOf(member.address) }));
  const voters = placed.filter((p) => p.member.voter);
  const learners = placed.filter((p) => !p.member.voter);

  if (membership.changeInFlight)
    return { kind: 'wait', message: `${tag}: a change chosen at or after slot ${slot} is coming into force` };

  const foreign = placed.find((p) => p.ordinal === undefined);
  if (foreign) {
    // A learner nobody can host is only load; a voter somewhere else is for a human to judge.
    if (!foreign.member.voter)
      return change(
        { type: 'remove', member: foreign.member.id, ordinal: undefined },
        `remove learner ${foreign.member.id} (${foreign.member.address} is no pod of this shard)`,
      );
    return {
      kind: 'blocked',
      message: `${tag}: voter ${foreign.member.id} has address ${foreign.member.address}, which is no pod of this shard; remove it by hand`,
    };
  }

  // Replacement in progress: several members at one pod. The newest id is the pod's replica
  // now; it is promoted once caught up, then the older ids are demoted and removed.
  const byOrdinal = new Map<number, MemberView[]>();
  for (const p of placed) byOrdinal.set(p.ordinal!, [...(byOrdinal.get(p.ordinal!) ?? []), p.member]);
  for (const ordinal of [...byOrdinal.keys()].sort((a, b) => a - b)) {
    const here = byOrdinal.get(ordinal)!.sort((a, b) => a.id - b.id);
    if (here.length < 2) continue;
    const newest = here[here.length - 1]!;
    const oldest = here[0]!;
    if (!newest.voter) {
      if (newest.caughtUp)
        return change(
          { type: 'promote', member: newest.id, ordinal },
          `promote learner ${newest.id} (pod ${ordinal}, replacing member ${oldest.id}): caught up`,
        );
      return {
        kind: 'wait',
        message: `${tag}: learner ${newest.id} (pod ${ordinal}, replacing member ${oldest.id}) is catching up`,
      };
    }
    if (oldest.voter)
      return change(
        { type: 'demote', member: oldest.id, ordinal },
        `demote member ${oldest.id} (pod ${ordinal} lost its disk; member ${newest.id} replaced it)`,
      );
    return change(
      { type: 'remove', member: oldest.id, ordinal },
      `remove member ${oldest.id} (pod ${ordinal} lost its disk; member ${newest.id} replaced it)`,
    );
  }

  // A learner not wanted any more (the size went down while it was catching up).
  const unwanted = learners.find((p) => p.ordinal! >= desired);
  if (unwanted && voters.length >= desired)
    return change(
      { type: 'remove', member: unwanted.member.id, ordinal: unwanted.ordinal },
      `remove learner ${unwanted.member.id} (pod ${unwanted.ordinal}): the shard has its ${desired} voters`,
    );

  // A lost disk at a wanted pod: a new member at the same address (learner first).
  for (const p of voters) {
    const view = pod(p.ordinal!);
    if (p.ordinal! < desired && view?.lostDisk && learners.length === 0) {
      if (!view.running)
        return { kind: 'wait', message: `${tag}: pod ${p.ordinal} lost its disk; waiting for it to run` };
      return change(
        { type: 'add-learner', address: input.addressOf(p.ordinal!), ordinal: p.ordinal! },
        `add a learner at pod ${p.ordinal} (its disk was lost; it replaces member ${p.member.id})`,
      );
    }
  }

  if (voters.length < desired) {
    const learner = learners.find((p) => p.ordinal! < desired);
    if (learner) {
      if (learner.member.caughtUp)
        return change(
          { type: 'promote', member: learner.member.id, ordinal: learner.ordinal! },
          `promote learner ${learner.member.id} (pod ${learner.ordinal}): caught up`,
        );
      return {
        kind: 'wait',
        message: `${tag}: learner ${learner.member.id} (pod ${learner.ordinal}) is catching up (${voters.length}/${desired} voters)`,
      };
    }
    const occupied = new Set(placed.map((p) => p.ordinal!));
    let next = 0;
    while (occupied.has(next)) next += 1;
    if (next >= pods)
      return {
        kind: 'scale',
        pods: next + 1,
        message: `${tag}: add pod ${next} (${voters.length}/${desired} voters)`,
        fresh: Array.from({ length: next + 1 - pods }, (_, i) => pods + i),
      };
    const view = pod(next);
    if (!view?.running) return { kind: 'wait', message: `${tag}: waiting for pod ${next} to run` };
    return change(
      { type: 'add-learner', address: input.addressOf(next), ordinal: next },
      `add a learner at pod ${next} (${voters.length}/${desired} voters)`,
    );
  }

  // A pod whose member was removed goes before the next voter does: one pod at a time.
  const highest = Math.max(...placed.map((p) => p.ordinal!));
  if (pods > highest + 1 && learners.length === 0)
    return { kind: 'scale', pods: pods - 1, message: `${tag}: remove pod ${pods - 1} (no member on it)` };

  if (voters.length > desired) {
    const victim = [...voters].sort((a, b) => b.ordinal! - a.ordinal! || b.member.id - a.member.id)[0]!;
    const leader = victim.member.id === membership.leaderId ? ', the leader: it hands over first' : '';
    return change(
      { type: 'demote', member: victim.member.id, ordinal: victim.ordinal! },
      `demote voter ${victim.member.id} (pod ${victim.ordinal}${leader}; ${voters.length}/${desired} voters)`,
    );
  }

  // The voters are right; learners left over (a lower pod's learner after a shrink) go.
  const leftover = learners[0];
  if (leftover)
    return change(
      { type: 'remove', member: leftover.member.id, ordinal: leftover.ordinal },
      `remove learner ${leftover.member.id} (pod ${leftover.ordinal}): the shard has its ${desired} voters`,
    );
  if (pods < highest + 1)
    return { kind: 'scale', pods: highest + 1, message: `${tag}: restore pod ${highest} (member on it, pod missing)` };
  return { kind: 'settled' };
}

/** A cluster's next step: the lowest shard with work; the others wait their turn. */
export function planClusterStep(shards: ShardPlanInput[]): { shard: number; step: MembershipStep } | undefined {
  for (const input of shards) {
    const step = planShardStep(input);
    if (step.kind !== 'settled') return { shard: input.shard, step };
  }
  return undefined;
}
