// Labels the current leader pod of each shard `shardbank.io/role=leader` (so a Service or a
// person can select it) and takes the label off pods that no longer lead. A separate
// field manager owns just this label, so applying without it removes it.
import type { BankCluster } from '../../node/cluster/bankcluster.js';
import { names } from '../../node/cluster/bankcluster.js';
import { LABEL_ROLE, ROLE_LEADER, shardSelector } from '../builders/labels.js';
import type { KubeClient } from '../kube/kube-client.js';
import { RESOURCES } from '../kube/resources.js';
import type { ObjectCache } from './object-cache.js';

export const LEADER_LABEL_MANAGER = 'shardbank-operator-leader-label';

/** Pods whose label must change: [pod name, true to add / false to remove]. */
export function leaderLabelChanges(
  cluster: BankCluster,
  shard: number,
  leaderOrdinal: number | undefined,
  pods: { name: string; labeled: boolean }[],
): [string, boolean][] {
  const leaderPod = leaderOrdinal === undefined ? undefined : names.pod(cluster.metadata.name, shard, leaderOrdinal);
  const changes: [string, boolean][] = [];
  for (const pod of pods) {
    const shouldLead = pod.name === leaderPod;
    if (shouldLead !== pod.labeled) changes.push([pod.name, shouldLead]);
  }
  return changes;
}

export async function labelLeaderPods(
  client: KubeClient,
  cache: ObjectCache,
  cluster: BankCluster,
  shard: number,
  leaderOrdinal: number | undefined,
): Promise<number> {
  const namespace = cluster.metadata.namespace ?? 'default';
  const pods = cache
    .list(RESOURCES.pod, namespace, shardSelector(cluster, shard))
    .filter((p) => !p.metadata.deletionTimestamp)
    .map((p) => ({ name: p.metadata.name, labeled: p.metadata.labels?.[LABEL_ROLE] === ROLE_LEADER }));
  const changes = leaderLabelChanges(cluster, shard, leaderOrdinal, pods);
  for (const [name, lead] of changes) {
    await client.apply(
      RESOURCES.pod,
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace, ...(lead ? { labels: { [LABEL_ROLE]: ROLE_LEADER } } : {}) },
      },
      { fieldManager: LEADER_LABEL_MANAGER },
    );
  }
  return changes.length;
}
