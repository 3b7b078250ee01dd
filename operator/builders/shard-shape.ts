// The size facts of one shard that are not in the spec (issue 19, online membership): the
// size it was founded with (fixed forever: it decides the shard's initial configuration), how
// many pods its StatefulSet has now (the membership driver moves it one pod at a time), and how
// many voters its configuration has now (the PodDisruptionBudget keeps a majority of those).
import { names, type BankCluster } from '../../node/cluster/bankcluster.js';
import { MEMBERS_MAX } from '../../node/paxos/membership.js';
import { namespaceOf } from './labels.js';
import { GRPC_PORT } from './ports.js';

export interface ShardShape {
  /** spec.replicasPerShard when the shard was created: the founding members are ids 0..n-1 on pods 0..n-1. */
  foundingReplicas: number;
  /** The StatefulSet's spec.replicas: pods 0..pods-1. */
  pods: number;
  /** Voters of the shard's newest configuration, when known. */
  voters?: number;
  /**
   * Of those, voters replaced by a newer member at their pod (a lost disk being replaced): they
   * count in every majority and can never vote again.
   */
  deadVoters?: number;
}

/**
 * Pod slots a shard's pod template provides for (certificate mounts): every member a
 * configuration can hold, so that no change of size changes the template.
 */
export const POD_SLOTS = MEMBERS_MAX;

/** The shape of a shard that is being created now: founded with the spec's size. */
export function newShardShape(cluster: BankCluster): ShardShape {
  return { foundingReplicas: cluster.spec.replicasPerShard, pods: cluster.spec.replicasPerShard };
}

export function shapeOf(cluster: BankCluster, shard: number, shapes: readonly ShardShape[] | undefined): ShardShape {
  return shapes?.[shard] ?? newShardShape(cluster);
}

/** The peer address of pod `ordinal` (what --peer-address-template gives, and what a configuration records). */
export function podAddress(cluster: BankCluster, shard: number, ordinal: number): string {
  const name = cluster.metadata.name;
  return `${names.pod(name, shard, ordinal)}.${names.headlessService(name, shard)}.${namespaceOf(cluster)}.svc:${GRPC_PORT}`;
}

/** The pod ordinal whose peer address this is, or undefined for an address of no pod of the shard. */
export function ordinalOfAddress(cluster: BankCluster, shard: number, address: string): number | undefined {
  const match = /^(.+)-(\d+)\./.exec(address);
  if (!match) return undefined;
  const ordinal = Number(match[2]);
  return ordinal < POD_SLOTS && podAddress(cluster, shard, ordinal) === address ? ordinal : undefined;
}
