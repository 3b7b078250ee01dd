// The operator's rolling update of one shard (a pure step function): one pod at a time, only
// when every pod of the shard is Ready, followers first, the leader last.
import { describe, expect, it } from 'vitest';
import { nextRolloutStep, SETTLE_MS, type RolloutInput, type RolloutPod } from '../../operator/reconcile/rollout.js';

const pod = (ordinal: number, revision: string, over: Partial<RolloutPod> = {}): RolloutPod => ({
  name: `demo-s0-${ordinal}`,
  uid: `u${ordinal}`,
  ordinal,
  revision,
  ready: true,
  terminating: false,
  ...over,
});

const input = (pods: RolloutPod[], over: Partial<RolloutInput> = {}): RolloutInput => ({
  desired: 3,
  updateRevision: 'new',
  pods,
  leaderOrdinal: 0,
  leadersKnowable: true,
  nowMs: 100_000,
  ...over,
});

const evicted = (i: RolloutInput) => {
  const s = nextRolloutStep(i);
  return s.kind === 'evict' ? `${s.role} ${s.pod.name}` : s.kind;
};

describe('nextRolloutStep', () => {
  it('is done when every pod runs the update revision', () => {
    expect(nextRolloutStep(input([pod(0, 'new'), pod(1, 'new'), pod(2, 'new')]))).toEqual({ kind: 'done' });
  });

  it('replaces followers first (highest ordinal first) and the leader last', () => {
    expect(evicted(input([pod(0, 'old'), pod(1, 'old'), pod(2, 'old')]))).toBe('follower demo-s0-2');
    expect(evicted(input([pod(0, 'old'), pod(1, 'old'), pod(2, 'old')], { leaderOrdinal: 2 }))).toBe(
      'follower demo-s0-1',
    );
    expect(evicted(input([pod(0, 'old'), pod(1, 'old'), pod(2, 'new')], { leaderOrdinal: 1 }))).toBe(
      'follower demo-s0-0',
    );
    expect(evicted(input([pod(0, 'old'), pod(1, 'new'), pod(2, 'new')]))).toBe('leader demo-s0-0');
    // A leader that moved to an already updated pod: the old one is now a follower.
    expect(evicted(input([pod(0, 'old'), pod(1, 'new'), pod(2, 'new')], { leaderOrdinal: 2 }))).toBe(
      'follower demo-s0-0',
    );
  });

  it('takes no pod while one is terminating, missing or not Ready', () => {
    const wait = (i: RolloutInput) => {
      const s = nextRolloutStep(i);
      return s.kind === 'wait' ? s.message : s.kind;
    };
    expect(wait(input([pod(0, 'old'), pod(1, 'old'), pod(2, 'old', { terminating: true })]))).toBe(
      '0/3 pods updated, leader demo-s0-0 last, waiting for demo-s0-2 to be replaced',
    );
    expect(wait(input([pod(0, 'old'), pod(1, 'old')]))).toBe(
      '0/3 pods updated, leader demo-s0-0 last, waiting for 1 pod(s) to be created',
    );
    expect(wait(input([pod(0, 'old'), pod(1, 'old'), pod(2, 'new', { ready: false })]))).toBe(
      '1/3 pods updated, leader demo-s0-0 last, waiting for demo-s0-2 to be Ready',
    );
    expect(wait(input([pod(0, 'old'), pod(1, 'old'), pod(2, 'old')], { leaderOrdinal: undefined }))).toBe(
      '0/3 pods updated, waiting for a known leader',
    );
    expect(wait(input([pod(0, 'new'), pod(1, 'old'), pod(2, 'new', { ready: false })]))).toBe(
      '2/3 pods updated, waiting for demo-s0-2 to be Ready',
    );
    // A pod Ready for less than SETTLE_MS gets time to catch up first.
    expect(wait(input([pod(0, 'old'), pod(1, 'old'), pod(2, 'new', { readySinceMs: 100_000 - SETTLE_MS + 1 })]))).toBe(
      '1/3 pods updated, leader demo-s0-0 last, letting demo-s0-2 catch up',
    );
    expect(evicted(input([pod(0, 'old'), pod(1, 'old'), pod(2, 'new', { readySinceMs: 100_000 - SETTLE_MS })]))).toBe(
      'follower demo-s0-1',
    );
    expect(wait(input([pod(0, 'old'), pod(1, 'old'), pod(2, 'old')], { updateRevision: undefined }))).toBe('done');
  });

  it('without NATS (leader unknown) goes highest ordinal first', () => {
    expect(
      evicted(
        input([pod(0, 'old'), pod(1, 'new'), pod(2, 'new')], { leadersKnowable: false, leaderOrdinal: undefined }),
      ),
    ).toBe('replica demo-s0-0');
    expect(
      evicted(
        input([pod(0, 'old'), pod(1, 'old'), pod(2, 'new')], { leadersKnowable: false, leaderOrdinal: undefined }),
      ),
    ).toBe('replica demo-s0-1');
  });

  it('leaves pods alone that the StatefulSet controller did not make (no revision label)', () => {
    expect(nextRolloutStep(input([pod(0, 'new'), pod(1, 'new'), { ...pod(2, 'x'), revision: undefined }]))).toEqual({
      kind: 'done',
    });
  });

  it('a single-replica shard replaces its only pod', () => {
    expect(evicted(input([pod(0, 'old')], { desired: 1 }))).toBe('leader demo-s0-0');
  });
});
