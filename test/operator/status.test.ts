// BankCluster status is a pure function of what the operator observed.
import { describe, expect, it } from 'vitest';
import { defaultBankCluster, type BankCluster } from '../../node/cluster/bankcluster.js';
import { computeStatus, type ObservedShard } from '../../operator/status/bankcluster-status.js';
import { setCondition } from '../../operator/status/conditions.js';

function cluster(overrides: Partial<BankCluster['spec']> = {}): BankCluster {
  const c = defaultBankCluster('demo');
  c.metadata = { name: 'demo', namespace: 'ns', uid: 'u1', generation: 4 };
  c.spec = { ...c.spec, shards: 2, ...overrides };
  return c;
}

const rolled = (ready: number, leaderOrdinal?: number): ObservedShard => ({
  exists: true,
  generation: 2,
  observedGeneration: 2,
  replicas: 3,
  readyReplicas: ready,
  updatedReplicas: 3,
  currentRevision: 'r1',
  updateRevision: 'r1',
  ...(leaderOrdinal !== undefined
    ? { leader: { ordinal: leaderOrdinal, address: 'x:50051', ballot: { round: 2, ordinal: leaderOrdinal } } }
    : {}),
});

const T0 = '2026-01-01T00:00:00Z';
const T1 = '2026-01-01T00:01:00Z';
const types = (s: ReturnType<typeof computeStatus>) =>
  Object.fromEntries(s.conditions.map((c) => [c.type, `${c.status}/${c.reason}`]));

describe('computeStatus', () => {
  it('reports the certificates: Ready with the operator CA; Degraded naming each unusable spec.tls Secret', () => {
    const base = { cluster: cluster(), shards: [rolled(3, 0), rolled(3, 2)], leadersKnowable: true, now: T0 };
    const own = computeStatus({ ...base, certificates: { ready: true, source: 'operator', problems: [] } });
    expect(own.phase).toBe('Ready');
    expect(types(own)).toMatchObject({ CertificatesReady: 'True/IssuedByOperator', Degraded: 'False/AsExpected' });
    const problems = ['Secret c-s0-1 has no tls.key', 'Secret c-s1-0 (replica 1/0) not found'];
    const bad = computeStatus({ ...base, certificates: { ready: false, source: 'user', problems } });
    expect(bad.phase).toBe('Degraded');
    expect(types(bad)).toMatchObject({
      CertificatesReady: 'False/InvalidTLSSecrets',
      Degraded: 'True/CertificatesInvalid',
    });
    const message = bad.conditions.find((c) => c.type === 'CertificatesReady')!.message;
    expect(message).toBe(problems.join('; '));
    // A reconcile error still says what failed first.
    const failed = computeStatus({
      ...base,
      reconcileError: 'boom',
      certificates: { ready: false, source: 'user', problems },
    });
    expect(types(failed).Degraded).toBe('True/ReconcileFailed');
  });

  it("shows each shard's voters and learners, keeps the founding size once recorded, and says while a membership change runs", () => {
    const shard0: ObservedShard = {
      ...rolled(3, 5),
      leader: { ordinal: 5, address: 'demo-s0-1.demo-s0.ns.svc:50051', ballot: { round: 3, ordinal: 5 } },
      leaderPod: 1,
      membership: { voters: [0, 2, 5], learners: [6], pods: { 0: 0, 2: 2, 5: 1, 6: 3 } },
    };
    const base = { cluster: cluster(), shards: [shard0, rolled(3, 0)], leadersKnowable: true, now: T0 };
    const running = computeStatus({
      ...base,
      foundingReplicasPerShard: 3,
      membershipChange: { shard: 0, message: 'shard 0: learner 6 (pod 3) is catching up (3/5 voters)' },
    });
    expect(running.shards[0]).toMatchObject({
      voters: [0, 2, 5],
      learners: [6],
      members: ['0:demo-s0-0', '2:demo-s0-2', '5:demo-s0-1', '6:demo-s0-3'],
      // Member 5 leads from pod 1.
      leader: { ordinal: 5, pod: 'demo-s0-1' },
    });
    expect(running.shards[1]!.voters).toBeUndefined();
    expect(running.foundingReplicasPerShard).toBe(3);
    expect(types(running).MembershipChanging).toBe('True/Changing');
    expect(running.conditions.find((c) => c.type === 'MembershipChanging')!.message).toBe(
      'shard 0: learner 6 (pod 3) is catching up (3/5 voters)',
    );
    const retrying = computeStatus({
      ...base,
      previous: running,
      foundingReplicasPerShard: 5,
      membershipChange: { shard: 0, message: 'shard 0: demote voter 4', retrying: 'attempt 2 failed: handing over' },
    });
    expect(types(retrying).MembershipChanging).toBe('True/StepRetrying');
    expect(retrying.conditions.find((c) => c.type === 'MembershipChanging')!.message).toBe(
      'shard 0: demote voter 4; attempt 2 failed: handing over',
    );
    // Recorded once, never changed.
    expect(retrying.foundingReplicasPerShard).toBe(3);
    const settled = computeStatus({ ...base, previous: retrying, foundingReplicasPerShard: 3, membershipChange: null });
    expect(types(settled).MembershipChanging).toBe('False/Settled');
    const unread = computeStatus({ ...base, membershipChange: null, membershipUnread: [1] });
    expect(types(unread).MembershipChanging).toBe('False/NotObserved');
    expect(unread.conditions.find((c) => c.type === 'MembershipChanging')!.message).toContain('shards 1 answered');
  });

  it('is Pending and Progressing before any StatefulSet exists', () => {
    const s = computeStatus({
      cluster: cluster(),
      shards: [{ exists: false }, { exists: false }],
      leadersKnowable: true,
      now: T0,
    });
    expect(s.phase).toBe('Pending');
    expect(s.observedGeneration).toBe(4);
    expect(types(s)).toEqual({
      Degraded: 'False/AsExpected',
      Progressing: 'True/RollingOut',
      Ready: 'False/ShardsNotServing',
    });
    for (const c of s.conditions) expect(c.observedGeneration).toBe(4);
  });

  it('is Ready when every shard is rolled out, ready and has a leader', () => {
    const s = computeStatus({
      cluster: cluster(),
      shards: [rolled(3, 0), rolled(3, 2)],
      leadersKnowable: true,
      now: T0,
    });
    expect(s.phase).toBe('Ready');
    expect(s.ready).toBe('6/6');
    expect(s.leaders).toBe('2/2');
    expect(s.shards[1]).toEqual({
      shard: 1,
      replicas: 3,
      readyReplicas: 3,
      leader: { ordinal: 2, pod: 'demo-s1-2', address: 'x:50051', ballot: { round: 2, ordinal: 2 } },
    });
    expect(types(s)).toEqual({
      Degraded: 'False/AsExpected',
      Progressing: 'False/RolledOut',
      Ready: 'True/AllShardsServing',
    });
  });

  it('needs a leader per shard when NATS tells leaders, and only majorities without NATS', () => {
    expect(
      computeStatus({ cluster: cluster(), shards: [rolled(3, 0), rolled(3)], leadersKnowable: true, now: T0 }).phase,
    ).toBe('Progressing');
    expect(
      computeStatus({ cluster: cluster(), shards: [rolled(3), rolled(3)], leadersKnowable: false, now: T0 }).phase,
    ).toBe('Ready');
  });

  it('is Degraded when a rolled-out shard has fewer ready replicas than a majority, or a step failed', () => {
    const lost = computeStatus({
      cluster: cluster(),
      shards: [rolled(1, 0), rolled(3, 1)],
      leadersKnowable: true,
      now: T0,
    });
    expect(lost.phase).toBe('Degraded');
    expect(types(lost).Degraded).toBe('True/QuorumLost');
    const failed = computeStatus({
      cluster: cluster(),
      shards: [rolled(3, 0), rolled(3, 1)],
      leadersKnowable: true,
      reconcileError: 'boom',
      now: T0,
    });
    expect(failed.conditions.find((c) => c.type === 'Degraded')).toMatchObject({
      status: 'True',
      reason: 'ReconcileFailed',
      message: 'boom',
    });
  });

  it('says when a single replica has no disruption budget, and drops that condition when it no longer applies', () => {
    const one = computeStatus({
      cluster: cluster({ replicasPerShard: 1 }),
      shards: [{ exists: false }, { exists: false }],
      leadersKnowable: false,
      now: T0,
    });
    expect(types(one).QuorumProtected).toBe('False/SingleReplica');
    const three = computeStatus({
      cluster: cluster(),
      shards: [rolled(3), rolled(3)],
      previous: one,
      leadersKnowable: false,
      now: T1,
    });
    expect(three.conditions.some((c) => c.type === 'QuorumProtected')).toBe(false);
  });

  it('says what a rolling update is doing, per shard, and is not rolled out until it is done', () => {
    const s = computeStatus({
      cluster: cluster(),
      shards: [
        {
          ...rolled(3, 0),
          rollout: '2/3 pods updated, leader demo-s0-0 last, replacing it now (it hands over on SIGTERM)',
        },
        rolled(3, 1),
      ],
      leadersKnowable: true,
      now: T0,
    });
    expect(s.phase).toBe('Progressing');
    expect(s.conditions.find((c) => c.type === 'Progressing')).toMatchObject({
      status: 'True',
      reason: 'RollingUpdate',
      message:
        '1 of 2 shards are not fully rolled out and ready; shard 0: 2/3 pods updated, leader demo-s0-0 last, replacing it now (it hands over on SIGTERM)',
    });
  });

  it('is Paused when spec.paused', () => {
    const s = computeStatus({
      cluster: cluster({ paused: true }),
      shards: [rolled(3), rolled(3)],
      leadersKnowable: false,
      now: T0,
    });
    expect(s.phase).toBe('Paused');
    expect(types(s).Progressing).toBe('False/Paused');
  });

  it('moves lastTransitionTime only when a condition changes status', () => {
    const a = setCondition([], { type: 'Ready', status: 'False', reason: 'X', message: 'm' }, 1, T0);
    const b = setCondition(a, { type: 'Ready', status: 'False', reason: 'Y', message: 'n' }, 2, T1);
    expect(b[0]).toMatchObject({ lastTransitionTime: T0, reason: 'Y', observedGeneration: 2 });
    const c = setCondition(b, { type: 'Ready', status: 'True', reason: 'Z', message: 'o' }, 2, T1);
    expect(c[0]!.lastTransitionTime).toBe(T1);
  });
});
