// Desired PodDisruptionBudget of a shard: voluntary disruptions may never take away the
// Paxos majority of the shard's current voters. maxUnavailable (not minAvailable), so that a
// learner pod added during a change of size (reconcile/membership-driver.ts) does not widen
// the budget: at most floor((voters - 1) / 2) pods of the shard may be down, voters or not.
// A single voter has no majority to keep, so it gets none (a node drain takes that shard
// down; the status says so).
import type { V1PodDisruptionBudget } from '@kubernetes/client-node';
import { names, type BankCluster } from '../../node/cluster/bankcluster.js';
import { ownedMetadata, shardLabels, shardSelector } from './labels.js';
import { shapeOf, type ShardShape } from './shard-shape.js';

export function quorumSize(replicas: number): number {
  return Math.floor(replicas / 2) + 1;
}

/**
 * The voters a shard's budget protects: its configuration's when known, otherwise the
 * smaller of its pods and the spec (never more than may really vote).
 */
export function protectedVoters(cluster: BankCluster, shard: number, shapes?: readonly ShardShape[]): number {
  const shape = shapeOf(cluster, shard, shapes);
  return shape.voters ?? Math.min(shape.pods, cluster.spec.replicasPerShard);
}

export function buildPodDisruptionBudget(
  cluster: BankCluster,
  shard: number,
  shapes?: readonly ShardShape[],
): V1PodDisruptionBudget | undefined {
  const voters = protectedVoters(cluster, shard, shapes);
  if (voters < 2) return undefined;
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: ownedMetadata(cluster, names.pdb(cluster.metadata.name, shard), shardLabels(cluster, shard)),
    spec: {
      // A voter being replaced (a lost disk) is already gone: it uses up the slack.
      maxUnavailable: Math.max(0, voters - (shapeOf(cluster, shard, shapes).deadVoters ?? 0) - quorumSize(voters)),
      selector: { matchLabels: shardSelector(cluster, shard) },
    },
  };
}
