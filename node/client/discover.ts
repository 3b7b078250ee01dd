// One reachable endpoint is enough: ClusterStatus (not local-only) of any replica, or of a
// Service in front of them, names every replica of every shard and each shard's items; the
// client learns the topology and the addresses from it.
import { credentials } from '@grpc/grpc-js';
import { loadClientTls, tlsChannelCredentials, tlsChannelOptions, type ClientTlsFiles } from './tls.js';
import type { Topology } from '../cluster/topology.js';
import { BankClient as BankStub, type ClusterStatusReply } from '../gen/shardbank/v1/bank.js';
import { unaryCall, type CallError } from './grpc-call.js';

export interface DiscoveredCluster {
  /** Without initialBalance: ClusterStatus does not report it. */
  readonly topology: Omit<Topology, 'initialBalance'>;
  /** `[shard][ordinal]` addresses as the replicas advertise them. */
  readonly endpoints: string[][];
}

export type Discovery =
  | { ok: true; value: DiscoveredCluster }
  | { ok: false; error: CallError | { codeName: 'INVALID_REPLY'; details: string } };

/** The shape of a cluster from one ClusterStatus reply; undefined names what is missing. */
export function clusterFromStatus(reply: ClusterStatusReply): DiscoveredCluster | string {
  const shards = [...reply.shards].sort((a, b) => a.shard - b.shard);
  if (shards.length === 0) return 'the reply lists no shard';
  if (shards.some((shard, index) => shard.shard !== index))
    return `the reply lists shards ${shards.map((s) => s.shard).join(', ')}, not 0 to ${shards.length - 1}`;
  const itemsPerShard = shards[0]!.lastItem - shards[0]!.firstItem + 1;
  const replicasPerShard = shards[0]!.replicas.length;
  const endpoints: string[][] = [];
  for (const shard of shards) {
    if (shard.lastItem - shard.firstItem + 1 !== itemsPerShard)
      return `shard ${shard.shard} has items ${shard.firstItem}-${shard.lastItem}, not ${itemsPerShard} like shard 0`;
    const replicas = [...shard.replicas].sort((a, b) => a.ordinal - b.ordinal);
    if (
      replicas.length !== replicasPerShard ||
      replicas.some((replica, ordinal) => replica.ordinal !== ordinal || replica.address === '')
    ) {
      return `shard ${shard.shard} does not list replicas 0 to ${replicasPerShard - 1} with their addresses`;
    }
    endpoints.push(replicas.map((replica) => replica.address));
  }
  return { topology: { shards: shards.length, replicasPerShard, itemsPerShard }, endpoints };
}

export async function discoverCluster(
  address: string,
  cluster: string,
  timeoutMs = 5_000,
  tls?: ClientTlsFiles,
): Promise<Discovery> {
  const stub = new BankStub(address, tls ? tlsChannelCredentials(loadClientTls(tls)) : credentials.createInsecure(), {
    ...(tls ? tlsChannelOptions(address) : {}),
    'grpc.enable_retries': 0,
    'grpc.enable_channelz': 0,
  });
  try {
    const reply = await unaryCall<unknown, ClusterStatusReply>(
      stub,
      'clusterStatus',
      { cluster, localOnly: false },
      timeoutMs,
    );
    if (!reply.ok) return { ok: false, error: reply.error };
    const found = clusterFromStatus(reply.value);
    if (typeof found === 'string')
      return { ok: false, error: { codeName: 'INVALID_REPLY', details: `ClusterStatus of ${address}: ${found}` } };
    return { ok: true, value: found };
  } finally {
    stub.close();
  }
}
