// The item -> shard map: one pure function of the cluster spec, shared by replicas,
// clients, the CLI, the local runtime and the operator.
import { assert } from '../util/assert.js';

export interface Topology {
  readonly shards: number;
  readonly itemsPerShard: number;
  readonly replicasPerShard: number;
  readonly initialBalance: number;
}

export function itemCount(topology: Topology): number {
  return topology.shards * topology.itemsPerShard;
}

export function isItem(topology: Topology, item: number): boolean {
  return Number.isSafeInteger(item) && item >= 1 && item <= itemCount(topology);
}

/** Shard `s` owns items s*itemsPerShard+1 .. (s+1)*itemsPerShard. */
export function shardOfItem(topology: Topology, item: number): number {
  assert(isItem(topology, item), `item ${item} is outside 1..${itemCount(topology)}`);
  return Math.floor((item - 1) / topology.itemsPerShard);
}

export function shardItemRange(topology: Topology, shard: number): { first: number; last: number } {
  assert(Number.isInteger(shard) && shard >= 0 && shard < topology.shards, `shard ${shard} out of range`);
  const first = shard * topology.itemsPerShard + 1;
  return { first, last: first + topology.itemsPerShard - 1 };
}

export function initialShardTotal(topology: Topology): number {
  return topology.itemsPerShard * topology.initialBalance;
}

export function initialClusterTotal(topology: Topology): number {
  return itemCount(topology) * topology.initialBalance;
}
