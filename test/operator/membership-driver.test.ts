// The membership driver's own rules (operator/reconcile/membership-driver.ts), on a fake clock
// with an in-memory object cache and a scripted MembershipApi: a failed step is retried with
// exponential backoff (never sooner), a different next step starts afresh, nothing is done
// while held (a rolling update), the founding size comes from the live StatefulSet, and the
// condition's input names the shard, the step and the last error.
import { describe, expect, it } from 'vitest';
import { defaultBankCluster, type BankCluster } from '../../node/cluster/bankcluster.js';
import type { KubeClient } from '../../operator/kube/kube-client.js';
import type { KubeObject } from '../../operator/kube/kube-object.js';
import type { ResourceKind } from '../../operator/kube/resources.js';
import type { ChangeOutcome, MembershipApi, MembershipRead } from '../../operator/reconcile/membership-client.js';
import { foundingOfStatefulSet, MembershipDriver } from '../../operator/reconcile/membership-driver.js';
import type { MembershipChange } from '../../operator/reconcile/membership-plan.js';
import type { ObjectCache } from '../../operator/reconcile/object-cache.js';

const cluster = (replicasPerShard: number): BankCluster => {
  const c = defaultBankCluster('demo');
  c.metadata = { name: 'demo', namespace: 'ns', uid: 'u' };
  c.spec = { ...c.spec, shards: 1, replicasPerShard };
  return c;
};
const address = (o: number) => `demo-s0-${o}.demo-s0.ns.svc:50051`;

function cacheWith(objects: KubeObject[]): ObjectCache {
  return {
    get: (r: ResourceKind, ns: string, name: string) =>
      objects.find((o) => o.kind === r.kind && o.metadata.namespace === ns && o.metadata.name === name),
    list: (r: ResourceKind, ns: string) => objects.filter((o) => o.kind === r.kind && o.metadata.namespace === ns),
  } as ObjectCache;
}

const sts = (replicas: number, args: string[]): KubeObject =>
  ({
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name: 'demo-s0', namespace: 'ns' },
    spec: { replicas, template: { spec: { containers: [{ args }] } } },
  }) as unknown as KubeObject;
const pod = (o: number): KubeObject =>
  ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `demo-s0-${o}`, namespace: 'ns' },
    status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] },
  }) as unknown as KubeObject;

class Api implements MembershipApi {
  voters = [0, 1, 2];
  changes: MembershipChange[] = [];
  refuse: string | undefined = 'leader unknown';
  async read(): Promise<MembershipRead | undefined> {
    return {
      view: {
        members: this.voters.map((id) => ({ id, address: address(id), voter: true, caughtUp: true })),
        nextMemberId: 3,
        configurationSlot: 0,
        changeInFlight: false,
        leaderId: 0,
      },
      emptyReplicas: [],
      from: address(0),
    };
  }
  async change(
    _c: BankCluster,
    _s: number,
    _a: string[],
    _slot: number,
    change: MembershipChange,
  ): Promise<ChangeOutcome> {
    this.changes.push(change);
    return this.refuse ? { ok: false, error: this.refuse } : { ok: true, view: (await this.read())!.view };
  }
  close(): void {}
}

const noClient = { delete: async () => undefined } as unknown as KubeClient;

describe('membership driver', () => {
  it('retries a refused step with backoff doubling from 1 s, never sooner, and says so', async () => {
    const api = new Api();
    let now = 1_000_000;
    const cache = cacheWith([sts(4, ['--founding-replicas=3']), pod(0), pod(1), pod(2), pod(3)]);
    const driver = new MembershipDriver(noClient, cache, api, () => now);
    const input = { cluster: cluster(5), recordedFounding: 3, leaderAddress: () => address(0) };
    const first = await driver.run(input);
    expect(api.changes).toEqual([{ type: 'add-learner', address: address(3), ordinal: 3 }]);
    expect(first.changing).toEqual({
      shard: 0,
      message: 'shard 0: add a learner at pod 3 (3/5 voters)',
      retrying: 'attempt 1 failed: leader unknown',
    });
    expect(first.requeueAfterMs).toBe(1_000);
    expect(first.events.map((e) => e.reason)).toEqual(['MembershipStepRetry']);
    // Too soon: no call.
    now += 999;
    const early = await driver.run(input);
    expect(api.changes).toHaveLength(1);
    expect(early.requeueAfterMs).toBe(100); // at least 100 ms
    now += 1;
    expect((await driver.run(input)).requeueAfterMs).toBe(2_000);
    expect(api.changes).toHaveLength(2);
    now += 2_000;
    expect((await driver.run(input)).requeueAfterMs).toBe(4_000);
    for (let i = 0; i < 6; i++) {
      now += 60_000;
      await driver.run(input);
    }
    now += 60_000;
    expect((await driver.run(input)).requeueAfterMs).toBe(30_000);
    // Accepted at last: an event with the step, no retry, requeue while it runs.
    api.refuse = undefined;
    now += 30_000;
    const ok = await driver.run(input);
    expect(ok.changing).toEqual({ shard: 0, message: 'shard 0: add a learner at pod 3 (3/5 voters)' });
    expect(ok.events.map((e) => e.reason)).toEqual(['MembershipStep']);
    expect(ok.requeueAfterMs).toBe(2_000);
  });

  it('does nothing while held (a rolling update runs), and says why', async () => {
    const api = new Api();
    const driver = new MembershipDriver(
      noClient,
      cacheWith([sts(3, ['--founding-replicas=3']), pod(0), pod(1), pod(2)]),
      api,
    );
    const held = await driver.run({
      cluster: cluster(5),
      recordedFounding: 3,
      leaderAddress: () => undefined,
      hold: 'rolling update: shard 0',
    });
    expect(api.changes).toEqual([]);
    expect(held.shapes).toEqual([{ foundingReplicas: 3, pods: 3, voters: 3 }]);
    expect(held.changing?.message).toBe('shard 0: add pod 3 (3/5 voters) (held: rolling update: shard 0)');
    expect(held.held).toBe(true);
  });

  it('scales through the shape it returns and reads the founding size from the live StatefulSet', async () => {
    const api = new Api();
    // An older operator's StatefulSet: --replicas-per-shard only, and the status has no record.
    const driver = new MembershipDriver(
      noClient,
      cacheWith([sts(3, ['--replicas-per-shard=3']), pod(0), pod(1), pod(2)]),
      api,
    );
    const out = await driver.run({ cluster: cluster(5), recordedFounding: undefined, leaderAddress: () => undefined });
    expect(out.shapes).toEqual([{ foundingReplicas: 3, pods: 4, voters: 3 }]);
    expect(out.memberships[0]).toEqual({
      voters: [0, 1, 2],
      learners: [],
      pods: { 0: 0, 1: 1, 2: 2 },
      configurationSlot: 0,
    });
    expect(foundingOfStatefulSet(sts(3, ['--replicas-per-shard=3', '--founding-replicas=1']))).toBe(1);
    expect(foundingOfStatefulSet(undefined)).toBeUndefined();
  });

  it('a scale the cache does not show yet is neither made nor announced twice, and not undone', async () => {
    const api = new Api();
    let now = 5_000_000;
    // The cache keeps showing 3 pods (an informer behind the write).
    const driver = new MembershipDriver(
      noClient,
      cacheWith([sts(3, ['--founding-replicas=3']), pod(0), pod(1), pod(2)]),
      api,
      () => now,
    );
    const input = { cluster: cluster(5), recordedFounding: 3, leaderAddress: () => undefined };
    const first = await driver.run(input);
    expect(first.events.map((e) => e.message)).toEqual([expect.stringMatching(/^shard 0: add pod 3 /)]);
    now += 2_000;
    const second = await driver.run(input);
    expect(second.events).toEqual([]);
    expect(second.shapes[0]!.pods).toBe(4);
    expect(second.changing?.message).toBe('shard 0: waiting for StatefulSet to show 4 pods');
    // Still not shown after 30 s: made again.
    now += 31_000;
    expect((await driver.run(input)).events.map((e) => e.reason)).toEqual(['MembershipStep']);
  });

  it('a new cluster (no StatefulSet yet) is founded with the spec and asks no replica', async () => {
    const api = new Api();
    let reads = 0;
    api.read = async () => {
      reads++;
      return undefined;
    };
    const driver = new MembershipDriver(noClient, cacheWith([]), api);
    const out = await driver.run({ cluster: cluster(5), recordedFounding: undefined, leaderAddress: () => undefined });
    expect(out.shapes).toEqual([{ foundingReplicas: 5, pods: 5 }]);
    expect(out.changing).toBeUndefined();
    expect(reads).toBe(0);
  });
});
