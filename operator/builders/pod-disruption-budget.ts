// Desired PodDisruptionBudget of a shard: voluntary disruptions may never take away the
// Paxos majority. A single replica has no majority to keep, so it gets none (a node drain
// takes that shard down; the status says so).
import type { V1PodDisruptionBudget } from '@kubernetes/client-node';
import { names, type BankCluster } from '../../node/cluster/bankcluster.js';
import { ownedMetadata, shardLabels, shardSelector } from './labels.js';

export function quorumSize(replicas: number): number {
  return Math.floor(replicas / 2) + 1;
}

export function buildPodDisruptionBudget(cluster: BankCluster, shard: number): V1PodDisruptionBudget | undefined {
  const replicas = cluster.spec.replicasPerShard;
  if (replicas < 2) return undefined;
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: ownedMetadata(cluster, names.pdb(cluster.metadata.name, shard), shardLabels(cluster, shard)),
    spec: {
      minAvailable: quorumSize(replicas),
      selector: { matchLabels: shardSelector(cluster, shard) },
    },
  };
}
