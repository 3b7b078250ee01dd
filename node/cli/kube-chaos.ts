// `shardbank chaos --kubernetes`: the BankCluster's topology from the Kubernetes API, the
// replicas' stable per-pod DNS names as endpoints, and a Faulter that deletes pods (the
// leader of a random shard, or any replica) the way a user would: a graceful delete.
import { parseEndpoints, EndpointsError } from '../client/endpoints.js';
import type { ShardbankClientOptions } from '../client/bank-client.js';
import type { ClusterView } from '../client/status-view.js';
import type { Topology } from '../cluster/topology.js';
import type { Faulter } from './chaos-command.js';
import { UsageError } from './cli-io.js';
import { credentialsFromKubeconfig, inClusterCredentials, KubeApi, KubeApiError } from './kube-api.js';

/** The replica gRPC port and the peer name pattern of operator/builders/ports.ts. */
const GRPC_PORT = 50051;

export interface KubernetesTarget {
  cluster: string;
  namespace: string;
  options: ShardbankClientOptions;
  faulter: Faulter;
}

interface BankClusterObject {
  spec?: { shards?: number; replicasPerShard?: number; itemsPerShard?: number; initialBalance?: number };
}

export function podName(cluster: string, shard: number, ordinal: number): string {
  return `${cluster}-s${shard}-${ordinal}`;
}

export function dnsEndpoints(cluster: string, namespace: string, shards: number, replicas: number): string[][] {
  return Array.from({ length: shards }, (_, s) =>
    Array.from(
      { length: replicas },
      (_, r) => `${podName(cluster, s, r)}.${cluster}-s${s}.${namespace}.svc:${GRPC_PORT}`,
    ),
  );
}

function pick<T>(values: readonly T[]): T | undefined {
  return values.length === 0 ? undefined : values[Math.floor(Math.random() * values.length)];
}

export async function kubernetesTarget(values: {
  cluster?: string;
  namespace?: string;
  kubeconfig?: string;
  endpoints?: string;
}): Promise<KubernetesTarget> {
  const cluster = values.cluster;
  if (cluster === undefined) throw new UsageError('--kubernetes needs --cluster NAME (the BankCluster)');
  const namespace = values.namespace ?? 'default';
  const kubeconfig = values.kubeconfig ?? process.env.KUBECONFIG;
  const creds =
    values.kubeconfig !== undefined
      ? credentialsFromKubeconfig(values.kubeconfig)
      : (inClusterCredentials() ?? (kubeconfig ? credentialsFromKubeconfig(kubeconfig) : undefined));
  if (creds === undefined)
    throw new UsageError('--kubernetes: no --kubeconfig, no $KUBECONFIG, and not inside a pod with a ServiceAccount');
  const api = new KubeApi(creds);
  let object: BankClusterObject;
  try {
    object = await api.request<BankClusterObject>(
      'GET',
      `/apis/shardbank.io/v1alpha1/namespaces/${encodeURIComponent(namespace)}/bankclusters/${encodeURIComponent(cluster)}`,
    );
  } catch (err) {
    if (err instanceof KubeApiError && err.status === 404)
      throw new UsageError(`--cluster: no BankCluster ${cluster} in namespace ${namespace}`);
    throw err;
  }
  const spec = object.spec ?? {};
  const topology: Topology = {
    shards: spec.shards ?? 3,
    replicasPerShard: spec.replicasPerShard ?? 3,
    itemsPerShard: spec.itemsPerShard ?? 3000,
    initialBalance: spec.initialBalance ?? 10,
  };
  let endpoints = dnsEndpoints(cluster, namespace, topology.shards, topology.replicasPerShard);
  if (values.endpoints !== undefined) {
    try {
      endpoints = parseEndpoints(values.endpoints);
    } catch (err) {
      if (err instanceof EndpointsError) throw new UsageError(err.message);
      throw err;
    }
  }
  const deletePod = async (name: string): Promise<boolean> => {
    try {
      await api.request(
        'DELETE',
        `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`,
      );
      return true;
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return false;
      throw err;
    }
  };
  const faulter: Faulter = {
    verb: 'delete pod',
    action: 'delete pod',
    replica: async (view: ClusterView | undefined, target) => {
      let shard = Math.floor(Math.random() * topology.shards);
      let ordinal = Math.floor(Math.random() * topology.replicasPerShard);
      let leader = false;
      if (target === 'leader' && view !== undefined) {
        const chosen = pick(
          view.shards.flatMap((s) => (s.leader === null ? [] : [{ shard: s.shard, ordinal: s.leader.ordinal }])),
        );
        if (chosen) ({ shard, ordinal, leader } = { ...chosen, leader: true });
      }
      const name = podName(cluster, shard, ordinal);
      return (await deletePod(name))
        ? { label: `${name}${leader ? ' (leader)' : ''}`, shard, ordinal, leader, detail: name }
        : undefined;
    },
    nats: async () => undefined,
  };
  return { cluster, namespace, options: { cluster, topology, endpoints, namespace }, faulter };
}
