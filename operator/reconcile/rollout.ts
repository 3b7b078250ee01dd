// Rolling updates driven by the operator: the StatefulSets use the OnDelete strategy (the
// StatefulSet controller would go in reverse ordinal order and may take a shard's leader
// first), and this step replaces one pod per shard at a time, followers first and the
// leader last, each only once every pod of its shard is Ready. Pods go through the Eviction
// API, so the PodDisruptionBudget still guards the majority; the leader hands over on
// SIGTERM (node/replica/main.ts) before it exits.
import type { BankCluster } from '../../node/cluster/bankcluster.js';
import { names } from '../../node/cluster/bankcluster.js';
import { shardSelector } from '../builders/labels.js';
import { isConflict, isNotFound, KubeApiError } from '../kube/api-error.js';
import type { KubeClient } from '../kube/kube-client.js';
import type { KubeObject } from '../kube/kube-object.js';
import { RESOURCES, resourcePath } from '../kube/resources.js';
import type { ObjectCache } from './object-cache.js';

/** The label the StatefulSet controller puts on each pod: the revision it was made from. */
export const REVISION_LABEL = 'controller-revision-hash';

export interface RolloutPod {
  name: string;
  uid: string;
  ordinal: number;
  revision: string | undefined;
  ready: boolean;
  /** When its Ready condition last changed (ms since the epoch), if known. */
  readySinceMs?: number;
  terminating: boolean;
}

/**
 * How long every pod of a shard must have been Ready before the next one goes: a replaced
 * follower gets time to catch up before the majority depends on it.
 */
export const SETTLE_MS = 5_000;

export interface RolloutInput {
  desired: number;
  /** The StatefulSet's status.updateRevision, once its status reflects its spec. */
  updateRevision: string | undefined;
  pods: RolloutPod[];
  leaderOrdinal: number | undefined;
  /** False without NATS: the leader cannot be known, so pods go highest ordinal first. */
  leadersKnowable: boolean;
  nowMs: number;
}

export type RolloutStep =
  | { kind: 'done' }
  | { kind: 'wait'; message: string }
  | { kind: 'evict'; pod: RolloutPod; role: 'follower' | 'leader' | 'replica'; message: string };

/** The next step of one shard's rolling update: a pure function of what the operator saw. */
export function nextRolloutStep(input: RolloutInput): RolloutStep {
  const { desired, updateRevision, pods } = input;
  // Nothing to compare with until the StatefulSet's status has seen its spec (its status
  // event brings the next look; the status's RollingOut already says the shard is not done).
  if (updateRevision === undefined) return { kind: 'done' };
  const live = pods.filter((p) => !p.terminating);
  // A pod without the revision label was not made by the StatefulSet controller: not rolled.
  const outdated = live
    .filter((p) => p.revision !== undefined && p.revision !== updateRevision)
    .sort((a, b) => b.ordinal - a.ordinal);
  const updated = live.length - outdated.length;
  const leaderPod =
    input.leaderOrdinal === undefined
      ? undefined
      : pods.find((p) => p.ordinal === input.leaderOrdinal && !p.terminating);
  const progress = `${updated}/${desired} pods updated${leaderPod && outdated.includes(leaderPod) ? `, leader ${leaderPod.name} last` : ''}`;
  if (outdated.length === 0) return { kind: 'done' };
  const terminating = pods.find((p) => p.terminating);
  if (terminating) return { kind: 'wait', message: `${progress}, waiting for ${terminating.name} to be replaced` };
  if (live.length < desired)
    return { kind: 'wait', message: `${progress}, waiting for ${desired - live.length} pod(s) to be created` };
  const notReady = live.find((p) => !p.ready);
  if (notReady) return { kind: 'wait', message: `${progress}, waiting for ${notReady.name} to be Ready` };
  const settling = live.find((p) => p.readySinceMs !== undefined && input.nowMs - p.readySinceMs < SETTLE_MS);
  if (settling) return { kind: 'wait', message: `${progress}, letting ${settling.name} catch up` };
  if (!input.leadersKnowable) {
    const pod = outdated[0]!;
    return {
      kind: 'evict',
      pod,
      role: 'replica',
      message: `${progress}, replacing ${pod.name} (no NATS: leader unknown, highest ordinal first)`,
    };
  }
  if (input.leaderOrdinal === undefined) return { kind: 'wait', message: `${progress}, waiting for a known leader` };
  const follower = outdated.find((p) => p.ordinal !== input.leaderOrdinal);
  if (follower)
    return {
      kind: 'evict',
      pod: follower,
      role: 'follower',
      message: `${progress}, replacing follower ${follower.name}`,
    };
  const leader = outdated[0]!;
  return {
    kind: 'evict',
    pod: leader,
    role: 'leader',
    message: `${progress}, replacing it now (it hands over on SIGTERM)`,
  };
}

function rolloutPods(cache: ObjectCache, cluster: BankCluster, shard: number): RolloutPod[] {
  const namespace = cluster.metadata.namespace ?? 'default';
  const prefix = `${names.statefulSet(cluster.metadata.name, shard)}-`;
  return cache.list(RESOURCES.pod, namespace, shardSelector(cluster, shard)).map((p) => {
    const status = (p.status ?? {}) as { conditions?: { type: string; status: string; lastTransitionTime?: string }[] };
    const ready = status.conditions?.find((c) => c.type === 'Ready');
    const since = ready?.lastTransitionTime === undefined ? NaN : Date.parse(ready.lastTransitionTime);
    return {
      name: p.metadata.name,
      uid: p.metadata.uid ?? '',
      ordinal: p.metadata.name.startsWith(prefix) ? Number(p.metadata.name.slice(prefix.length)) : -1,
      revision: p.metadata.labels?.[REVISION_LABEL],
      ready: ready?.status === 'True',
      ...(Number.isFinite(since) ? { readySinceMs: since } : {}),
      terminating: p.metadata.deletionTimestamp !== undefined,
    };
  });
}

/** The StatefulSet's update revision, only once its status has seen its current spec. */
function updateRevisionOf(sts: KubeObject | undefined): string | undefined {
  if (!sts || sts.metadata.deletionTimestamp) return undefined;
  const status = (sts.status ?? {}) as { observedGeneration?: number; updateRevision?: string };
  if (
    status.observedGeneration === undefined ||
    sts.metadata.generation === undefined ||
    status.observedGeneration < sts.metadata.generation
  )
    return undefined;
  return status.updateRevision;
}

export interface ShardRollout {
  shard: number;
  step: RolloutStep;
  /** True when this reconcile evicted the step's pod. */
  evicted: boolean;
}

/**
 * Drives the rolling update of each shard one step. An eviction the disruption budget refuses
 * (429) is a wait. Pods evicted by this process are remembered until the cache shows them
 * terminating, so a reconcile on a stale cache never takes a second pod of the same shard.
 */
export class Rollout {
  private readonly evicted = new Map<string, { uid: string; atMs: number }>();

  constructor(
    private readonly client: KubeClient,
    private readonly cache: ObjectCache,
  ) {}

  async step(
    cluster: BankCluster,
    shard: number,
    leaderOrdinal: number | undefined,
    leadersKnowable: boolean,
    /** The pods the shard has now (the membership driver's count, not necessarily the spec's). */
    desired: number = cluster.spec.replicasPerShard,
  ): Promise<ShardRollout> {
    const namespace = cluster.metadata.namespace ?? 'default';
    const key = `${namespace}/${cluster.metadata.name}/${shard}`;
    const sts = this.cache.get(RESOURCES.statefulSet, namespace, names.statefulSet(cluster.metadata.name, shard));
    const pods = rolloutPods(this.cache, cluster, shard);
    const pending = this.evicted.get(key);
    if (pending) {
      const stale = pods.find((p) => p.uid === pending.uid && !p.terminating);
      if (stale && Date.now() - pending.atMs < 60_000) {
        return { shard, step: { kind: 'wait', message: `waiting for ${stale.name} to terminate` }, evicted: false };
      }
      this.evicted.delete(key);
    }
    const step = nextRolloutStep({
      desired,
      updateRevision: updateRevisionOf(sts),
      pods,
      leaderOrdinal,
      leadersKnowable,
      nowMs: Date.now(),
    });
    if (step.kind !== 'evict') return { shard, step, evicted: false };
    try {
      await this.client.request({
        method: 'POST',
        path: resourcePath(RESOURCES.pod, namespace, step.pod.name, 'eviction'),
        body: JSON.stringify({
          apiVersion: 'policy/v1',
          kind: 'Eviction',
          metadata: { name: step.pod.name, namespace },
          deleteOptions: { preconditions: { uid: step.pod.uid } },
        }),
      });
    } catch (err) {
      if (err instanceof KubeApiError && err.statusCode === 429)
        return {
          shard,
          step: { kind: 'wait', message: `${step.message}: refused by the disruption budget, waiting` },
          evicted: false,
        };
      if (isNotFound(err) || isConflict(err))
        return {
          shard,
          step: { kind: 'wait', message: `${step.message}: the pod changed, looking again` },
          evicted: false,
        };
      throw err;
    }
    this.evicted.set(key, { uid: step.pod.uid, atMs: Date.now() });
    return { shard, step, evicted: true };
  }

  forget(namespace: string, name: string): void {
    for (const key of this.evicted.keys()) if (key.startsWith(`${namespace}/${name}/`)) this.evicted.delete(key);
  }
}
