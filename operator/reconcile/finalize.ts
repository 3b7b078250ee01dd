// Deleting a BankCluster: delete every workload object it owns (explicitly, so it also
// works where no garbage collector runs), delete the PVCs only when
// spec.storage.retainOnDelete is false, then drop the finalizer.
import { names, type BankCluster } from '../../node/cluster/bankcluster.js';
import { FINALIZER, LABEL_CLUSTER } from '../builders/labels.js';
import { LABEL_COMPONENT } from '../builders/certificates.js';
import { DATA_VOLUME } from '../builders/ports.js';
import { isNotFound } from '../kube/api-error.js';
import type { KubeClient } from '../kube/kube-client.js';
import type { KubeObject } from '../kube/kube-object.js';
import { RESOURCES, type ResourceKind } from '../kube/resources.js';
import { ownedBy } from './object-cache.js';

export interface FinalizeOutcome {
  deleted: string[];
  pvcsDeleted: string[];
  pvcsRetained: string[];
}

async function deleteIfOwned(
  client: KubeClient,
  resource: ResourceKind,
  cluster: BankCluster,
  name: string,
  out: string[],
): Promise<void> {
  const namespace = cluster.metadata.namespace ?? 'default';
  let live: KubeObject;
  try {
    live = await client.get<KubeObject>(resource, namespace, name);
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
  if (!ownedBy(live, cluster.metadata.uid)) return;
  try {
    await client.delete(resource, namespace, name);
    out.push(`${resource.kind}/${name}`);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

/** PVC names the StatefulSet controller gives a shard's replicas: `data-<sts>-<ordinal>`. */
export function isClusterPvcName(cluster: BankCluster, pvcName: string): boolean {
  for (let shard = 0; shard < cluster.spec.shards; shard++) {
    const prefix = `${DATA_VOLUME}-${names.statefulSet(cluster.metadata.name, shard)}-`;
    if (pvcName.startsWith(prefix) && /^\d+$/.test(pvcName.slice(prefix.length))) return true;
  }
  return false;
}

export async function finalizeCluster(client: KubeClient, cluster: BankCluster): Promise<FinalizeOutcome> {
  const name = cluster.metadata.name;
  const namespace = cluster.metadata.namespace ?? 'default';
  const out: FinalizeOutcome = { deleted: [], pvcsDeleted: [], pvcsRetained: [] };
  for (let shard = 0; shard < cluster.spec.shards; shard++) {
    await deleteIfOwned(client, RESOURCES.statefulSet, cluster, names.statefulSet(name, shard), out.deleted);
    await deleteIfOwned(client, RESOURCES.podDisruptionBudget, cluster, names.pdb(name, shard), out.deleted);
    await deleteIfOwned(client, RESOURCES.service, cluster, names.headlessService(name, shard), out.deleted);
  }
  await deleteIfOwned(client, RESOURCES.service, cluster, names.clientService(name), out.deleted);
  // The cluster's own NATS (spec.nats.managed): leader hints only, nothing to keep.
  await deleteIfOwned(client, RESOURCES.statefulSet, cluster, names.nats(name), out.deleted);
  await deleteIfOwned(client, RESOURCES.service, cluster, names.nats(name), out.deleted);
  await deleteIfOwned(client, RESOURCES.networkPolicy, cluster, names.natsNetworkPolicy(name), out.deleted);
  await deleteIfOwned(client, RESOURCES.networkPolicy, cluster, names.networkPolicy(name), out.deleted);
  // The operator's certificates (never the user's spec.tls Secrets: deleteIfOwned checks).
  const secrets = await client.list<KubeObject>(RESOURCES.secret, namespace, `${LABEL_CLUSTER}=${name}`);
  for (const secret of secrets.items)
    await deleteIfOwned(client, RESOURCES.secret, cluster, secret.metadata.name, out.deleted);
  // The CA is not owned: it stays with the PVCs (a re-created cluster keeps its clients'
  // credentials valid) and goes with them.
  const ca = secrets.items.find((s) => s.metadata.name === names.caSecret(name));
  if (!cluster.spec.storage.retainOnDelete && ca?.metadata.labels?.[LABEL_COMPONENT] === 'ca') {
    try {
      await client.delete(RESOURCES.secret, namespace, ca.metadata.name);
      out.deleted.push(`${RESOURCES.secret.kind}/${ca.metadata.name}`);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
  await deleteIfOwned(client, RESOURCES.configMap, cluster, names.topologyConfigMap(name), out.deleted);
  const pvcs = await client.list<KubeObject>(RESOURCES.persistentVolumeClaim, namespace, `${LABEL_CLUSTER}=${name}`);
  for (const pvc of pvcs.items) {
    if (!isClusterPvcName(cluster, pvc.metadata.name)) continue;
    if (cluster.spec.storage.retainOnDelete) {
      out.pvcsRetained.push(pvc.metadata.name);
      continue;
    }
    try {
      await client.delete(RESOURCES.persistentVolumeClaim, namespace, pvc.metadata.name);
      out.pvcsDeleted.push(pvc.metadata.name);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
  return out;
}

/** Removes our finalizer, guarded by resourceVersion so other finalizers are never lost. */
export async function removeFinalizer(client: KubeClient, raw: KubeObject): Promise<void> {
  const finalizers = (raw.metadata.finalizers ?? []).filter((f) => f !== FINALIZER);
  await client.mergePatch(RESOURCES.bankCluster, raw.metadata.namespace, raw.metadata.name, {
    metadata: { finalizers, resourceVersion: raw.metadata.resourceVersion },
  });
}

export async function addFinalizer(client: KubeClient, raw: KubeObject): Promise<KubeObject> {
  const finalizers = [...(raw.metadata.finalizers ?? []), FINALIZER];
  return client.mergePatch(RESOURCES.bankCluster, raw.metadata.namespace, raw.metadata.name, {
    metadata: { finalizers, resourceVersion: raw.metadata.resourceVersion },
  });
}
