// The membership driver through the real operator against a real kube-apiserver (issue 19):
// a change of spec.replicasPerShard never changes the pod template (so no pod restarts),
// the StatefulSet moves one pod at a time, each ChangeMembership waits for the one before,
// the PDB follows the current voters, the status shows voters and learners and the
// MembershipChanging condition, and every step is an event. No kubelet or StatefulSet
// controller runs here: the test plays the StatefulSet controller (pods made and removed to
// match spec.replicas, reported Running and Ready), and the replicas' Membership service is
// scripted in-process with the real configuration rules of node/paxos/membership.ts (the
// replica side's gRPC service is another branch; test/operator/membership-client.test.ts
// covers the operator's gRPC client against a scripted server).
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BankCluster } from '../../node/cluster/bankcluster.js';
import { applyChange, initialConfiguration, type Configuration } from '../../node/paxos/membership.js';
import type { KubeObject } from '../../operator/kube/kube-object.js';
import type { Operator } from '../../operator/operator.js';
import type { ChangeOutcome, MembershipApi, MembershipRead } from '../../operator/reconcile/membership-client.js';
import type { MembershipChange, MembershipView } from '../../operator/reconcile/membership-plan.js';
import { createBankCluster, getBankCluster, getOrUndefined, type BankClusterObject } from './support/bank-clusters.js';
import { startTestControlPlane, RESOURCES, type TestControlPlane } from './support/control-plane.js';
import { eventually } from './support/eventually.js';
import { OPERATOR_NAMESPACE, startTestOperator } from './support/operator.js';

const NS = 'grow';
type Sts = KubeObject & { spec: { replicas: number; template: Record<string, unknown> } };
type Pdb = KubeObject & { spec: { maxUnavailable?: number; minAvailable?: number } };
type ShardStatusShape = { shard: number; voters?: number[]; learners?: number[]; members?: string[] };
type Status = {
  foundingReplicasPerShard?: number;
  conditions?: { type: string; status: string; reason: string; message: string }[];
  shards?: ShardStatusShape[];
};

const address = (ordinal: number) => `demo-s0-${ordinal}.demo-s0.${NS}.svc:50051`;

/** One shard's replicas as the Membership service would answer (the real one-step rules). */
class ScriptedShard implements MembershipApi {
  configuration: Configuration = initialConfiguration(3);
  addresses = new Map<number, string>([0, 1, 2].map((o) => [o, address(o)]));
  slot = 0;
  inFlight = false;
  leader = 0;
  /** Reads since each learner was added (caught up after two). */
  learnerReads = new Map<number, number>();
  /** Accepted changes, in order. */
  accepted: string[] = [];
  refused: string[] = [];
  /** Demoting the leader: it hands over, refuses (once per demotion). */
  refuseLeaderDemotion = true;
  /** Addresses whose replica says it started empty (a lost disk), and voters the leader sees behind. */
  emptyReplicas: string[] = [];
  behind = new Set<number>();

  private view(): MembershipView {
    const c = this.configuration;
    return {
      members: [...c.voters, ...c.learners].map((id) => ({
        id,
        address: this.addresses.get(id)!,
        voter: c.voters.includes(id),
        caughtUp: (c.voters.includes(id) && !this.behind.has(id)) || (this.learnerReads.get(id) ?? 0) >= 2,
      })),
      nextMemberId: c.nextMemberId,
      configurationSlot: this.slot,
      changeInFlight: this.inFlight,
      leaderId: this.leader,
    };
  }

  async read(cluster: BankCluster, shard: number, addresses: string[]): Promise<MembershipRead | undefined> {
    if (cluster.metadata.name !== 'demo' || shard !== 0 || addresses.length === 0) return undefined;
    // A change comes into force between two reads.
    const view = this.view();
    this.inFlight = false;
    for (const id of this.configuration.learners) this.learnerReads.set(id, (this.learnerReads.get(id) ?? 0) + 1);
    // The replica at a replaced address runs as the new member: it is not empty any more.
    const replaced = new Set([...this.configuration.learners].map((id) => this.addresses.get(id)));
    return { view, emptyReplicas: this.emptyReplicas.filter((a) => !replaced.has(a)), from: addresses[0]! };
  }

  async change(
    _cluster: BankCluster,
    _shard: number,
    _addresses: string[],
    expected: number,
    change: MembershipChange,
  ): Promise<ChangeOutcome> {
    const refuse = (error: string): ChangeOutcome => {
      this.refused.push(error);
      return { ok: false, error };
    };
    if (expected !== this.slot) return refuse(`configuration slot is ${this.slot}, not ${expected}`);
    if (this.inFlight) return refuse('a change is in flight');
    if (change.type === 'demote' && change.member === this.leader && this.refuseLeaderDemotion) {
      this.leader = this.configuration.voters.find((v) => v !== change.member)!;
      return refuse('the leader is handing over; retry');
    }
    const result = applyChange(
      this.configuration,
      change.type === 'add-learner' ? { type: 'add-learner' } : { type: change.type, member: change.member },
    );
    if (!result.ok) return refuse(result.error);
    if (change.type === 'add-learner') {
      this.addresses.set(this.configuration.nextMemberId, change.address);
      this.emptyReplicas = this.emptyReplicas.filter((a) => a !== change.address);
    }
    this.accepted.push(
      change.type === 'add-learner' ? `add-learner ${change.address.split('.')[0]}` : `${change.type} ${change.member}`,
    );
    this.configuration = result.configuration;
    this.slot += 300;
    this.inFlight = true;
    return { ok: true, view: this.view() };
  }

  close(): void {}
}

let tcp: TestControlPlane;
let operator: Operator;
const shard = new ScriptedShard();
let stopFakeController = false;
let adminOf: ((cluster: BankCluster) => { ca: string; cert: string; key: string } | undefined) | undefined;
let fakeController: Promise<void> | undefined;

/** Plays the StatefulSet controller for demo-s0: pods to match spec.replicas, Running and Ready; status reported. */
async function playStatefulSetController(): Promise<void> {
  while (!stopFakeController) {
    try {
      const sts = await getOrUndefined<Sts>(tcp.client, RESOURCES.statefulSet, NS, 'demo-s0');
      if (sts) {
        const template = sts.spec.template as { metadata: { labels: Record<string, string> }; spec: unknown };
        for (let o = 0; o < 9; o++) {
          const name = `demo-s0-${o}`;
          const pod = await getOrUndefined<KubeObject>(tcp.client, RESOURCES.pod, NS, name);
          if (o < sts.spec.replicas && !pod) {
            await tcp.client.create(RESOURCES.pod, {
              apiVersion: 'v1',
              kind: 'Pod',
              metadata: {
                name,
                namespace: NS,
                labels: { ...template.metadata.labels, 'controller-revision-hash': 'demo-s0-1' },
              },
              spec: { containers: [{ name: 'replica', image: 'shardbank/node:0.1.0' }] },
            });
            await tcp.client.request({
              method: 'PATCH',
              path: `/api/v1/namespaces/${NS}/pods/${name}/status`,
              body: JSON.stringify({
                status: {
                  phase: 'Running',
                  conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: '2026-01-01T00:00:00Z' }],
                },
              }),
              contentType: 'application/merge-patch+json',
            });
          } else if (o >= sts.spec.replicas && pod) {
            await tcp.client.delete(RESOURCES.pod, NS, name).catch(() => undefined);
          }
        }
        await tcp.client.request({
          method: 'PATCH',
          path: `/apis/apps/v1/namespaces/${NS}/statefulsets/demo-s0/status`,
          body: JSON.stringify({
            status: {
              observedGeneration: sts.metadata.generation,
              replicas: sts.spec.replicas,
              readyReplicas: sts.spec.replicas,
              availableReplicas: sts.spec.replicas,
              updatedReplicas: sts.spec.replicas,
              currentReplicas: sts.spec.replicas,
              currentRevision: 'demo-s0-1',
              updateRevision: 'demo-s0-1',
            },
          }),
          contentType: 'application/merge-patch+json',
        });
      }
    } catch {
      // the next round tries again
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function status(): Promise<BankClusterObject & { status?: Status }> {
  return (await getBankCluster(tcp.client, NS, 'demo')) as BankClusterObject & { status?: Status };
}

async function events(): Promise<{ reason: string; message: string }[]> {
  const list = await tcp.client.request<{
    items: { reason: string; message: string; involvedObject: { name: string } }[];
  }>({
    method: 'GET',
    path: `/api/v1/namespaces/${NS}/events`,
  });
  return list.items.filter((e) => e.involvedObject.name === 'demo');
}

beforeAll(async () => {
  tcp = await startTestControlPlane();
  await tcp.createNamespace(OPERATOR_NAMESPACE);
  await tcp.createNamespace(NS);
  operator = await startTestOperator(tcp, {
    membership: (admin) => {
      adminOf = admin;
      return shard;
    },
  });
  fakeController = playStatefulSetController();
});

afterAll(async () => {
  stopFakeController = true;
  await fakeController;
  await operator?.stop();
  await tcp?.stop();
});

describe('online membership change through the operator', () => {
  let template: string;

  it('creates a 1x3 cluster founded with 3: --founding-replicas=3, voters 0..2, MembershipChanging False', async () => {
    await createBankCluster(tcp.client, NS, 'demo', { shards: 1, replicasPerShard: 3, itemsPerShard: 10 });
    const sts = await eventually('StatefulSet demo-s0', () =>
      getOrUndefined<Sts>(tcp.client, RESOURCES.statefulSet, NS, 'demo-s0'),
    );
    template = JSON.stringify(sts.spec.template);
    expect(template).toContain('--founding-replicas=3');
    const settled = await eventually('voters in the status', async () => {
      const o = await status();
      const c = o.status?.conditions?.find((x) => x.type === 'MembershipChanging');
      return c?.status === 'False' && o.status?.shards?.[0]?.voters?.length === 3 ? o : undefined;
    });
    expect(settled.status!.foundingReplicasPerShard).toBe(3);
    expect(settled.status!.shards![0]).toMatchObject({
      voters: [0, 1, 2],
      learners: [],
      members: ['0:demo-s0-0', '1:demo-s0-1', '2:demo-s0-2'],
    });
    const pdb = await getOrUndefined<Pdb>(tcp.client, RESOURCES.podDisruptionBudget, NS, 'demo-s0');
    expect(pdb!.spec).toMatchObject({ maxUnavailable: 1 });
  });

  it('grows 3 -> 5 one pod and one voter at a time; the pod template never changes; the PDB follows', async () => {
    await tcp.client.mergePatch(RESOURCES.bankCluster, NS, 'demo', { spec: { replicasPerShard: 5 } });
    // While it runs: the condition names the shard and the step.
    const changing = await eventually('MembershipChanging True', async () => {
      const c = (await status()).status?.conditions?.find((x) => x.type === 'MembershipChanging');
      return c?.status === 'True' ? c : undefined;
    });
    expect(changing.message).toMatch(/^shard 0: /);
    const grown = await eventually(
      '5 voters',
      async () => {
        const o = await status();
        const c = o.status?.conditions?.find((x) => x.type === 'MembershipChanging');
        return c?.status === 'False' && o.status?.shards?.[0]?.voters?.length === 5 ? o : undefined;
      },
      { timeoutMs: 120_000 },
    );
    expect(shard.accepted).toEqual(['add-learner demo-s0-3', 'promote 3', 'add-learner demo-s0-4', 'promote 4']);
    expect(grown.status!.shards![0]).toMatchObject({ voters: [0, 1, 2, 3, 4], learners: [] });
    expect(grown.status!.foundingReplicasPerShard).toBe(3);
    const sts = (await getOrUndefined<Sts>(tcp.client, RESOURCES.statefulSet, NS, 'demo-s0'))!;
    expect(sts.spec.replicas).toBe(5);
    expect(JSON.stringify(sts.spec.template)).toBe(template);
    // Certificates for the new pods, issued without touching the template's digest.
    for (const o of [3, 4])
      expect(await getOrUndefined(tcp.client, RESOURCES.secret, NS, `demo-s0-${o}-tls`)).toBeDefined();
    const pdb = await eventually('PDB for 5 voters', async () => {
      const p = await getOrUndefined<Pdb>(tcp.client, RESOURCES.podDisruptionBudget, NS, 'demo-s0');
      return p?.spec.maxUnavailable === 2 ? p : undefined;
    });
    expect(pdb.spec.minAvailable).toBeUndefined();
    const steps = (await events()).filter((e) => e.reason === 'MembershipStep').map((e) => e.message);
    // One thing at a time, in order: each pod exists before its learner, each learner is promoted before the next pod.
    expect(steps.map((m) => m.replace(/ \(.*$/, ''))).toEqual([
      'shard 0: add pod 3',
      'shard 0: add a learner at pod 3',
      'shard 0: promote learner 3',
      'shard 0: add pod 4',
      'shard 0: add a learner at pod 4',
      'shard 0: promote learner 4',
    ]);
    expect(steps.some((m) => /^shard 0: add pod 3 .*\(after \d+\.\d s since the previous step\)$/.test(m))).toBe(true);
    expect(steps.some((m) => m.startsWith('shard 0: promote learner 4 (pod 4): caught up'))).toBe(true);
    expect(
      (await events()).some(
        (e) => e.reason === 'MembershipChanged' && /5 voters \(0, 1, 2, 3, 4\) after/.test(e.message),
      ),
    ).toBe(true);
  });

  it('shrinks 5 -> 3 with the leader on the highest pod: its demotion is refused and retried, then each pod goes after its member; the stale claim is deleted', async () => {
    shard.leader = 4;
    const before = shard.accepted.length;
    // A claim for pod 4 (no provisioner here: just the object the StatefulSet would have made).
    await tcp.client.create(RESOURCES.persistentVolumeClaim, {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name: 'data-demo-s0-4', namespace: NS },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
    });
    await tcp.client.mergePatch(RESOURCES.bankCluster, NS, 'demo', { spec: { replicasPerShard: 3 } });
    const shrunk = await eventually(
      '3 voters',
      async () => {
        const o = await status();
        const c = o.status?.conditions?.find((x) => x.type === 'MembershipChanging');
        const sts = await getOrUndefined<Sts>(tcp.client, RESOURCES.statefulSet, NS, 'demo-s0');
        return c?.status === 'False' && o.status?.shards?.[0]?.voters?.length === 3 && sts?.spec.replicas === 3
          ? o
          : undefined;
      },
      { timeoutMs: 120_000 },
    );
    expect(shard.accepted.slice(before)).toEqual(['demote 4', 'remove 4', 'demote 3', 'remove 3']);
    expect(shard.refused).toContain('the leader is handing over; retry');
    expect(shrunk.status!.shards![0]).toMatchObject({ voters: [0, 1, 2], learners: [] });
    const sts = (await getOrUndefined<Sts>(tcp.client, RESOURCES.statefulSet, NS, 'demo-s0'))!;
    expect(JSON.stringify(sts.spec.template)).toBe(template);
    const steps = (await events()).filter((e) => e.reason === 'MembershipStep').map((e) => e.message);
    expect(steps.slice(6).map((m) => m.replace(/ \(.*$/, ''))).toEqual([
      'shard 0: demote voter 4',
      'shard 0: remove learner 4',
      'shard 0: remove pod 4',
      'shard 0: demote voter 3',
      'shard 0: remove learner 3',
      'shard 0: remove pod 3',
    ]);
    const retries = (await events()).filter((e) => e.reason === 'MembershipStepRetry');
    expect(retries.some((e) => e.message.includes('the leader is handing over'))).toBe(true);
    await eventually(
      'claim of pod 4 deleted',
      async () =>
        (await getOrUndefined(tcp.client, RESOURCES.persistentVolumeClaim, NS, 'data-demo-s0-4')) === undefined ||
        (await getOrUndefined<KubeObject>(tcp.client, RESOURCES.persistentVolumeClaim, NS, 'data-demo-s0-4'))?.metadata
          .deletionTimestamp !== undefined,
    );
    const pdb = await eventually('PDB for 3 voters', async () => {
      const p = await getOrUndefined<Pdb>(tcp.client, RESOURCES.podDisruptionBudget, NS, 'demo-s0');
      return p?.spec.maxUnavailable === 1 ? p : undefined;
    });
    expect(pdb).toBeDefined();
  });

  it('replaces a pod whose disk was lost: a new member id at the same pod, promoted, then the old id demoted and removed', async () => {
    const before = shard.accepted.length;
    shard.leader = 0;
    shard.behind.add(1);
    shard.emptyReplicas = [address(1)];
    const replaced = await eventually(
      'member 1 replaced',
      async () => {
        const o = await status();
        const c = o.status?.conditions?.find((x) => x.type === 'MembershipChanging');
        return c?.status === 'False' && !o.status?.shards?.[0]?.voters?.includes(1) ? o : undefined;
      },
      { timeoutMs: 120_000 },
    );
    expect(shard.accepted.slice(before)).toEqual(['add-learner demo-s0-1', 'promote 5', 'demote 1', 'remove 1']);
    expect(replaced.status!.shards![0]).toMatchObject({
      voters: [0, 2, 5],
      learners: [],
      members: ['0:demo-s0-0', '2:demo-s0-2', '5:demo-s0-1'],
    });
    const sts = (await getOrUndefined<Sts>(tcp.client, RESOURCES.statefulSet, NS, 'demo-s0'))!;
    expect(sts.spec.replicas).toBe(3);
    expect(JSON.stringify(sts.spec.template)).toBe(template);
  });

  it("calls the replicas with an admin identity the operator issued from the cluster's CA", async () => {
    const ca = await getOrUndefined<KubeObject & { data: Record<string, string> }>(
      tcp.client,
      RESOURCES.secret,
      NS,
      'demo-ca',
    );
    const admin = adminOf!({ metadata: { name: 'demo', namespace: NS } } as BankCluster)!;
    expect(admin).toBeDefined();
    const caPem = Buffer.from(ca!.data['ca.crt']!, 'base64').toString();
    expect(admin.ca).toBe(caPem);
    const leaf = new X509Certificate(admin.cert);
    expect(leaf.subjectAltName).toBe(`URI:shardbank://${NS}/demo/client/admin/operator`);
    expect(leaf.verify(new X509Certificate(caPem).publicKey)).toBe(true);
    expect(leaf.checkPrivateKey(createPrivateKey(admin.key))).toBe(true);
  });

  it('refuses an even size at the API server, naming the field, and changes nothing', async () => {
    let message = '';
    try {
      await tcp.client.mergePatch(RESOURCES.bankCluster, NS, 'demo', { spec: { replicasPerShard: 4 } });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('spec.replicasPerShard');
    expect(message).toContain('must be odd');
  });
});
