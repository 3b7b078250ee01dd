// Reading a cluster for an audit (chaos, replica integration tests): wait until it is quiet,
// read every balance, and read each shard from every replica once they have applied the
// same log prefix. Feeds the pure checks of bank-invariants.ts.
import { sleep } from './backoff.js';
import { Consistency, type ShardbankClient } from './bank-client.js';
import type { ShardReplicaReads } from './bank-invariants.js';
import { everyShardHasLeader, type ClusterView } from './status-view.js';
import { shardItemRange } from '../cluster/topology.js';

export const SETTLE_POLL_MS = 500;
export const AUDIT_READ_DEADLINE_MS = 60_000;

export async function waitFor<T>(deadlineAtMs: number, probe: () => Promise<T | undefined>): Promise<T | undefined> {
  while (Date.now() < deadlineAtMs) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    await sleep(SETTLE_POLL_MS);
  }
  return undefined;
}

/** Every shard has a leader, every replica answers and no cross-shard transaction is in flight. */
export async function waitQuiescent(client: ShardbankClient, deadlineAtMs: number): Promise<ClusterView | undefined> {
  return waitFor(deadlineAtMs, async () => {
    const view = await client.clusterStatus();
    const quiet =
      everyShardHasLeader(view) &&
      view.shards.every((shard) => shard.inflightTransactions === 0 && shard.replicas.every((r) => r.role !== 'down'));
    return quiet ? view : undefined;
  });
}

/** Every item's balance, read linearizably (one call per shard, not a snapshot across shards). */
export async function readAllBalances(client: ShardbankClient): Promise<Map<number, number>> {
  const items = Array.from({ length: client.topology.shards * client.topology.itemsPerShard }, (_, index) => index + 1);
  return client.balance(items, Consistency.LINEARIZABLE, { deadlineMs: AUDIT_READ_DEADLINE_MS });
}

/**
 * Reads one shard from every replica (ANY_REPLICA) once they all report the same applied
 * index; after the deadline, returns the last reads (which the agreement check then judges).
 */
export async function readShardReplicas(
  client: ShardbankClient,
  shard: number,
  deadlineAtMs: number,
): Promise<ShardReplicaReads> {
  const range = shardItemRange(client.topology, shard);
  const items = Array.from({ length: range.last - range.first + 1 }, (_, index) => range.first + index);
  const addresses = client.endpoints[shard]!;
  let last: ShardReplicaReads = { shard, replicas: [] };
  const agreed = await waitFor(deadlineAtMs, async () => {
    const view = await client.clusterStatus();
    const applied = view.shards[shard]!.replicas.map((replica) => replica.appliedIndex);
    if (applied.some((index) => index === null) || new Set(applied).size !== 1) return undefined;
    const replies = await Promise.all(
      addresses.map((address) => client.balanceAt(address, items, Consistency.ANY_REPLICA)),
    );
    const replicas = [];
    for (const [ordinal, reply] of replies.entries()) {
      if (!reply.ok) return undefined;
      replicas.push({
        ordinal,
        appliedIndex: reply.value.appliedIndex,
        balances: new Map(reply.value.balances.map((entry) => [entry.item, entry.balance])),
      });
    }
    last = { shard, replicas };
    return new Set(replicas.map((replica) => replica.appliedIndex)).size === 1 ? last : undefined;
  });
  return agreed ?? last;
}
