// The membership planner (operator/reconcile/membership-plan.ts) driven against a model of a
// shard whose configuration follows the real rules of node/paxos/membership.ts (applyChange:
// one step at a time, ids never reused), with the replica side's refusals: a change on a
// configuration other than the one it names (compare-and-set), a change while another is in
// flight, and the leader refusing its own demotion after handing over.
import { describe, expect, it } from 'vitest';
import { validateBankCluster } from '../../node/cluster/bankcluster.js';
import { applyChange, initialConfiguration, type Configuration } from '../../node/paxos/membership.js';
import {
  planClusterStep,
  planShardStep,
  type MembershipStep,
  type ShardPlanInput,
} from '../../operator/reconcile/membership-plan.js';

const address = (shard: number, ordinal: number) => `demo-s${shard}-${ordinal}.demo-s${shard}.bank.svc:50051`;
const ordinalOf = (shard: number) => (a: string) => {
  const m = new RegExp(`^demo-s${shard}-(\\d+)\\.demo-s${shard}\\.bank\\.svc:50051$`).exec(a);
  return m ? Number(m[1]) : undefined;
};

/** A shard as the replicas and the StatefulSet would behave. */
class ShardModel {
  configuration: Configuration;
  addresses = new Map<number, string>();
  slot = 0;
  inFlight = false;
  leader = 0;
  pods: number;
  running = new Set<number>();
  caughtUp = new Set<number>();
  lostDisk = new Set<number>();
  refusals: string[] = [];

  constructor(
    readonly shard: number,
    founding: number,
    public desired: number,
  ) {
    this.configuration = initialConfiguration(founding);
    this.pods = founding;
    for (let o = 0; o < founding; o++) {
      this.addresses.set(o, address(shard, o));
      this.running.add(o);
      this.caughtUp.add(o);
    }
  }

  input(): ShardPlanInput {
    const c = this.configuration;
    return {
      shard: this.shard,
      desired: this.desired,
      pods: this.pods,
      podViews: Array.from({ length: this.pods }, (_, ordinal) => ({
        ordinal,
        running: this.running.has(ordinal),
        ready: this.running.has(ordinal),
        lostDisk: this.lostDisk.has(ordinal),
      })),
      membership: {
        members: [...c.voters, ...c.learners].map((id) => ({
          id,
          address: this.addresses.get(id)!,
          voter: c.voters.includes(id),
          caughtUp: this.caughtUp.has(id),
        })),
        nextMemberId: c.nextMemberId,
        configurationSlot: this.slot,
        changeInFlight: this.inFlight,
        leaderId: this.leader,
      },
      ordinalOf: ordinalOf(this.shard),
      addressOf: (o) => address(this.shard, o),
    };
  }

  /** Carries a step out as the driver would; a change lands in flight (settle() brings it into force). */
  execute(step: MembershipStep): boolean {
    if (step.kind === 'scale') {
      this.pods = step.pods;
      for (const o of [...this.running]) if (o >= step.pods) this.running.delete(o);
      return true;
    }
    if (step.kind !== 'change') return false;
    if (step.expectedConfigurationSlot !== this.slot) {
      this.refusals.push(`configuration slot is ${this.slot}, not ${step.expectedConfigurationSlot}`);
      return false;
    }
    if (this.inFlight) {
      this.refusals.push('a change is in flight');
      return false;
    }
    const c = step.change;
    if (c.type === 'demote' && c.member === this.leader) {
      // The leader hands leadership over to a caught-up voter, and refuses.
      this.leader = this.configuration.voters.find((v) => v !== c.member && this.caughtUp.has(v))!;
      this.refusals.push('the leader is handing over');
      return false;
    }
    const result = applyChange(
      this.configuration,
      c.type === 'add-learner' ? { type: 'add-learner' } : { type: c.type, member: c.member },
    );
    if (!result.ok) throw new Error(`the planner made an impossible step: ${result.error}`);
    if (c.type === 'add-learner') {
      this.addresses.set(this.configuration.nextMemberId, c.address);
      this.lostDisk.delete(c.ordinal);
    }
    this.configuration = result.configuration;
    this.slot += 100;
    this.inFlight = true;
    return true;
  }

  settle(): void {
    this.inFlight = false;
  }
}

/** Plans and executes until settled; each round the world moves one tick (pods run, learners catch up). */
function run(model: ShardModel, rounds = 60): string[] {
  const log: string[] = [];
  for (let i = 0; i < rounds; i++) {
    const step = planShardStep(model.input());
    if (step.kind === 'settled') {
      log.push('settled');
      return log;
    }
    if (step.kind === 'blocked') throw new Error(step.message);
    if (step.kind === 'wait') {
      if (model.inFlight) model.settle();
      // Pods come up, learners catch up: one thing per tick.
      const notRunning = Array.from({ length: model.pods }, (_, o) => o).find((o) => !model.running.has(o));
      if (notRunning !== undefined) model.running.add(notRunning);
      else
        for (const id of model.configuration.learners) {
          if (!model.caughtUp.has(id)) {
            model.caughtUp.add(id);
            break;
          }
        }
      continue;
    }
    log.push(step.kind === 'scale' ? `scale ${step.pods}` : label(step));
    model.execute(step);
    checkInvariants(model);
  }
  throw new Error(`not settled after ${rounds} rounds: ${log.join(', ')}`);
}

function label(step: MembershipStep): string {
  if (step.kind !== 'change') return step.kind;
  const c = step.change;
  return c.type === 'add-learner' ? `add-learner pod ${c.ordinal}` : `${c.type} ${c.member}`;
}

function checkInvariants(model: ShardModel): void {
  const c = model.configuration;
  // Every member has a pod; a voter or learner never outlives its pod.
  for (const id of [...c.voters, ...c.learners]) {
    const ordinal = ordinalOf(model.shard)(model.addresses.get(id)!);
    expect(ordinal, `member ${id}`).toBeLessThan(model.pods);
  }
  // At most one learner at a time (one change at a time).
  expect(c.learners.length).toBeLessThanOrEqual(1);
}

describe('membership planner', () => {
  it('grows 3 -> 5 one pod and one voter at a time, promoting only caught-up learners', () => {
    const model = new ShardModel(0, 3, 5);
    expect(run(model)).toEqual([
      'scale 4',
      'add-learner pod 3',
      'promote 3',
      'scale 5',
      'add-learner pod 4',
      'promote 4',
      'settled',
    ]);
    expect(model.configuration).toEqual({ voters: [0, 1, 2, 3, 4], learners: [], nextMemberId: 5 });
    expect(model.refusals).toEqual([]);
  });

  it('shrinks 5 -> 3: demote then remove the member on the highest pod, then that pod, one at a time', () => {
    const model = new ShardModel(0, 3, 5);
    run(model);
    model.desired = 3;
    expect(run(model)).toEqual(['demote 4', 'remove 4', 'scale 4', 'demote 3', 'remove 3', 'scale 3', 'settled']);
    expect(model.configuration).toEqual({ voters: [0, 1, 2], learners: [], nextMemberId: 5 });
  });

  it('grows back after a shrink with new member ids (ids are never reused)', () => {
    const model = new ShardModel(0, 3, 5);
    run(model);
    model.desired = 3;
    run(model);
    model.desired = 5;
    run(model);
    expect(model.configuration).toEqual({ voters: [0, 1, 2, 5, 6], learners: [], nextMemberId: 7 });
  });

  it('waits for the new pod to run before adding its learner, and for the learner to catch up before promoting it', () => {
    const model = new ShardModel(0, 3, 5);
    model.execute(planShardStep(model.input()));
    expect(model.pods).toBe(4);
    expect(planShardStep(model.input())).toEqual({ kind: 'wait', message: 'shard 0: waiting for pod 3 to run' });
    model.running.add(3);
    const add = planShardStep(model.input());
    expect(add).toMatchObject({
      kind: 'change',
      change: { type: 'add-learner', address: address(0, 3), ordinal: 3 },
      expectedConfigurationSlot: 0,
    });
    model.execute(add);
    expect(planShardStep(model.input())).toMatchObject({
      kind: 'wait',
      message: expect.stringContaining('coming into force'),
    });
    model.settle();
    expect(planShardStep(model.input())).toMatchObject({
      kind: 'wait',
      message: 'shard 0: learner 3 (pod 3) is catching up (3/5 voters)',
    });
    model.caughtUp.add(3);
    expect(planShardStep(model.input())).toMatchObject({ kind: 'change', change: { type: 'promote', member: 3 } });
  });

  it('plans nothing while a change is in flight: never two changes at once', () => {
    const model = new ShardModel(0, 3, 5);
    model.running.add(3);
    model.pods = 4;
    model.execute(planShardStep(model.input()));
    model.caughtUp.add(3);
    expect(planShardStep(model.input()).kind).toBe('wait');
    model.settle();
    expect(planShardStep(model.input()).kind).toBe('change');
  });

  it('a step retried after a lost reply is refused by compare-and-set and re-planned, never applied twice', () => {
    const model = new ShardModel(0, 3, 5);
    model.pods = 4;
    model.running.add(3);
    const add = planShardStep(model.input());
    expect(model.execute(add)).toBe(true); // it landed; say the reply was lost
    model.settle();
    expect(model.execute(add)).toBe(false); // the retry names the old configuration
    expect(model.refusals).toEqual(['configuration slot is 100, not 0']);
    expect(model.configuration.learners).toEqual([3]);
    // Re-read: the next step is to wait for that learner, not a second add.
    expect(planShardStep(model.input())).toMatchObject({ kind: 'wait', message: expect.stringContaining('learner 3') });
  });

  it('demoting the leader is refused while it hands over; the retry demotes it as a follower', () => {
    const model = new ShardModel(0, 3, 5);
    run(model);
    model.leader = 4;
    model.desired = 3;
    const first = planShardStep(model.input());
    expect(first).toMatchObject({ kind: 'change', change: { type: 'demote', member: 4 } });
    expect(first.kind === 'change' && first.message).toContain('the leader: it hands over first');
    expect(model.execute(first)).toBe(false);
    expect(model.refusals).toEqual(['the leader is handing over']);
    expect(model.leader).not.toBe(4);
    const retry = planShardStep(model.input());
    expect(retry).toMatchObject({ kind: 'change', change: { type: 'demote', member: 4 } });
    expect(model.execute(retry)).toBe(true);
    expect(run(model)).toEqual(['remove 4', 'scale 4', 'demote 3', 'remove 3', 'scale 3', 'settled']);
  });

  it('replaces a member whose disk was lost: a learner at the same pod, promoted once caught up, then the old id demoted and removed', () => {
    const model = new ShardModel(0, 3, 3);
    model.lostDisk.add(1);
    model.caughtUp.delete(1);
    expect(run(model)).toEqual(['add-learner pod 1', 'promote 3', 'demote 1', 'remove 1', 'settled']);
    expect(model.configuration).toEqual({ voters: [0, 2, 3], learners: [], nextMemberId: 4 });
    expect(model.addresses.get(3)).toBe(address(0, 1));
    expect(model.pods).toBe(3);
  });

  it('a lost disk waits for its pod to run', () => {
    const model = new ShardModel(0, 3, 3);
    model.lostDisk.add(2);
    model.running.delete(2);
    expect(planShardStep(model.input())).toEqual({
      kind: 'wait',
      message: 'shard 0: pod 2 lost its disk; waiting for it to run',
    });
  });

  it('a shrink asked for while a learner catches up removes that learner first, then the pod', () => {
    const model = new ShardModel(0, 3, 5);
    model.pods = 4;
    model.running.add(3);
    model.execute(planShardStep(model.input()));
    model.settle();
    model.desired = 3;
    expect(run(model)).toEqual(['remove 3', 'scale 3', 'settled']);
  });

  it('grows 1 -> 3 (development size) and shrinks 3 -> 1', () => {
    const model = new ShardModel(0, 1, 3);
    expect(run(model)).toEqual([
      'scale 2',
      'add-learner pod 1',
      'promote 1',
      'scale 3',
      'add-learner pod 2',
      'promote 2',
      'settled',
    ]);
    model.desired = 1;
    expect(run(model)).toEqual(['demote 2', 'remove 2', 'scale 2', 'demote 1', 'remove 1', 'scale 1', 'settled']);
  });

  it('a voter at an address of no pod blocks the shard; a learner there is removed', () => {
    const model = new ShardModel(0, 3, 3);
    model.addresses.set(2, 'elsewhere:50051');
    expect(planShardStep(model.input())).toMatchObject({
      kind: 'blocked',
      message: expect.stringContaining('elsewhere'),
    });
    const other = new ShardModel(0, 3, 3);
    other.configuration = { voters: [0, 1, 2], learners: [3], nextMemberId: 4 };
    other.addresses.set(3, 'elsewhere:50051');
    expect(planShardStep(other.input())).toMatchObject({ kind: 'change', change: { type: 'remove', member: 3 } });
  });

  it('without a reachable replica: settled if the pods match the spec, otherwise waits', () => {
    const model = new ShardModel(0, 3, 3);
    expect(planShardStep({ ...model.input(), membership: undefined })).toEqual({ kind: 'settled' });
    expect(planShardStep({ ...model.input(), desired: 5, membership: undefined })).toMatchObject({ kind: 'wait' });
  });

  it('works on one shard at a time: shard 1 waits until shard 0 is settled', () => {
    const shards = [new ShardModel(0, 3, 5), new ShardModel(1, 3, 5)];
    const touched: number[] = [];
    for (let i = 0; i < 200; i++) {
      const next = planClusterStep(shards.map((m) => m.input()));
      if (!next) break;
      const model = shards[next.shard]!;
      if (next.step.kind === 'wait') {
        model.settle();
        for (let o = 0; o < model.pods; o++) model.running.add(o);
        for (const id of model.configuration.learners) model.caughtUp.add(id);
        continue;
      }
      touched.push(next.shard);
      model.execute(next.step);
    }
    expect(touched).toEqual([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
    for (const m of shards) expect(m.configuration.voters).toEqual([0, 1, 2, 3, 4]);
  });
});

describe('replicasPerShard validation (shared with the CRD)', () => {
  const spec = (replicasPerShard: unknown) =>
    validateBankCluster({ metadata: { name: 'demo' }, spec: { replicasPerShard } });
  it.each([1, 3, 5, 7])('accepts %i', (n) => expect(spec(n).ok).toBe(true));
  it.each([2, 4, 6])('refuses the even size %i, naming the field', (n) => {
    const r = spec(n);
    expect(r.ok ? [] : r.errors.map((e) => e.message)).toEqual([
      `spec.replicasPerShard: must be odd (1, 3, 5 or 7; 1 for development only), got ${n}`,
    ]);
  });
  it.each([0, 9, 'three'])('refuses %s outside 1..7, naming the field', (n) => {
    const r = spec(n);
    expect(r.ok ? [] : r.errors.map((e) => e.message.split(':')[0])).toEqual(['spec.replicasPerShard']);
  });
});
