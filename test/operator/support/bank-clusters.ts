// Helpers to create and read BankClusters and owned objects as a user would.
import type { KubeClient } from '../../../operator/kube/kube-client.js';
import type { KubeObject } from '../../../operator/kube/kube-object.js';
import { RESOURCES } from '../../../operator/kube/resources.js';
import { isNotFound } from '../../../operator/kube/api-error.js';

export interface StatusShape {
  observedGeneration?: number;
  phase?: string;
  ready?: string;
  leaders?: string;
  conditions?: { type: string; status: string; reason: string; message: string; observedGeneration?: number }[];
  shards?: {
    shard: number;
    readyReplicas: number;
    leader?: { ordinal: number; pod: string; address: string; ballot: { round: number; ordinal: number } };
  }[];
}

export type BankClusterObject = KubeObject & { spec: Record<string, unknown>; status?: StatusShape };

export function createBankCluster(
  client: KubeClient,
  namespace: string,
  name: string,
  spec: Record<string, unknown>,
): Promise<BankClusterObject> {
  return client.create<BankClusterObject>(RESOURCES.bankCluster, {
    apiVersion: 'shardbank.io/v1alpha1',
    kind: 'BankCluster',
    metadata: { name, namespace },
    spec,
  });
}

export function getBankCluster(client: KubeClient, namespace: string, name: string): Promise<BankClusterObject> {
  return client.get<BankClusterObject>(RESOURCES.bankCluster, namespace, name);
}

export function condition(o: BankClusterObject, type: string) {
  return o.status?.conditions?.find((c) => c.type === type);
}

export async function getOrUndefined<T extends KubeObject>(
  client: KubeClient,
  resource: (typeof RESOURCES)[keyof typeof RESOURCES],
  namespace: string,
  name: string,
): Promise<T | undefined> {
  try {
    return await client.get<T>(resource, namespace, name);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** Plays the StatefulSet controller (none runs here): reports replicas as rolled out and ready. */
export async function reportStatefulSetStatus(
  client: KubeClient,
  namespace: string,
  name: string,
  readyReplicas: number,
): Promise<void> {
  const sts = await client.get<KubeObject & { spec: { replicas: number } }>(RESOURCES.statefulSet, namespace, name);
  await client.request({
    method: 'PATCH',
    path: `/apis/apps/v1/namespaces/${namespace}/statefulsets/${name}/status`,
    body: JSON.stringify({
      status: {
        observedGeneration: sts.metadata.generation,
        replicas: sts.spec.replicas,
        readyReplicas,
        availableReplicas: readyReplicas,
        updatedReplicas: sts.spec.replicas,
        currentReplicas: sts.spec.replicas,
        currentRevision: `${name}-1`,
        updateRevision: `${name}-1`,
      },
    }),
    contentType: 'application/merge-patch+json',
  });
}
