// Labels and owner references shared by every object the operator builds.
import { API_GROUP, API_VERSION, KIND, type BankCluster } from '../../node/cluster/bankcluster.js';
import type { OwnerReference } from '../kube/kube-object.js';

export const FIELD_MANAGER = 'shardbank-operator';
export const LABEL_CLUSTER = 'shardbank.io/cluster';
export const LABEL_SHARD = 'shardbank.io/shard';
export const LABEL_ROLE = 'shardbank.io/role';
export const ROLE_LEADER = 'leader';
export const FINALIZER = 'shardbank.io/cleanup';

export function clusterLabels(cluster: BankCluster): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'shardbank',
    'app.kubernetes.io/instance': cluster.metadata.name,
    'app.kubernetes.io/managed-by': FIELD_MANAGER,
    [LABEL_CLUSTER]: cluster.metadata.name,
  };
}

/** The immutable selector of a shard's StatefulSet and the pods it owns. */
export function shardSelector(cluster: BankCluster, shard: number): Record<string, string> {
  return { [LABEL_CLUSTER]: cluster.metadata.name, [LABEL_SHARD]: String(shard) };
}

export function shardLabels(cluster: BankCluster, shard: number): Record<string, string> {
  return { ...clusterLabels(cluster), 'app.kubernetes.io/component': 'replica', [LABEL_SHARD]: String(shard) };
}

export function ownerReference(cluster: BankCluster): OwnerReference {
  const uid = cluster.metadata.uid;
  if (!uid) throw new Error(`BankCluster ${cluster.metadata.name} has no uid: it must come from the API server`);
  return {
    apiVersion: `${API_GROUP}/${API_VERSION}`,
    kind: KIND,
    name: cluster.metadata.name,
    uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

export function namespaceOf(cluster: BankCluster): string {
  return cluster.metadata.namespace ?? 'default';
}

/** Metadata every built object starts from: name, namespace, labels, owner. */
export function ownedMetadata(cluster: BankCluster, name: string, labels: Record<string, string>) {
  return { name, namespace: namespaceOf(cluster), labels, ownerReferences: [ownerReference(cluster)] };
}
