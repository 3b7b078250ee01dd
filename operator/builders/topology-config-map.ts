// Desired topology ConfigMap: what clients and tools need to find every shard and replica.
import type { V1ConfigMap } from '@kubernetes/client-node';
import { names, topologyOf, type BankCluster } from '../../node/cluster/bankcluster.js';
import { shardItemRange } from '../../node/cluster/topology.js';
import { clusterLabels, namespaceOf, ownedMetadata } from './labels.js';
import { GRPC_PORT } from './ports.js';
import { shapeOf, type ShardShape } from './shard-shape.js';

/** `shapes`: each shard's current pods (the replicas listed); default spec.replicasPerShard. */
export function buildTopologyConfigMap(cluster: BankCluster, shapes?: readonly ShardShape[]): V1ConfigMap {
  const name = cluster.metadata.name;
  const namespace = namespaceOf(cluster);
  const topology = topologyOf(cluster.spec);
  const shards = Array.from({ length: cluster.spec.shards }, (_, shard) => {
    const { first, last } = shardItemRange(topology, shard);
    const service = names.headlessService(name, shard);
    return {
      shard,
      items: [first, last],
      statefulSet: names.statefulSet(name, shard),
      replicas: Array.from(
        { length: shapeOf(cluster, shard, shapes).pods },
        (_, ordinal) => `${names.pod(name, shard, ordinal)}.${service}.${namespace}.svc:${GRPC_PORT}`,
      ),
    };
  });
  const document = {
    cluster: name,
    namespace,
    incarnation: cluster.metadata.uid,
    ...topology,
    maxTransferAmount: cluster.spec.maxTransferAmount,
    clientService: `${names.clientService(name)}.${namespace}.svc:${GRPC_PORT}`,
    shards,
  };
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: ownedMetadata(cluster, names.topologyConfigMap(name), clusterLabels(cluster)),
    data: { 'topology.json': JSON.stringify(document, null, 2) + '\n' },
  };
}
