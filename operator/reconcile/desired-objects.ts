// Every object a BankCluster should own, built by the pure builders, in apply order.
import type { BankCluster } from '../../node/cluster/bankcluster.js';
import type { NatsCredentials, NatsRole } from '../../node/discovery/nats-security.js';
import {
  buildNatsConfigSecret,
  buildNatsCredentialsSecret,
  buildNatsNetworkPolicy,
  buildNatsService,
  buildNatsStatefulSet,
  DEFAULT_NATS_IMAGE,
  natsConfFor,
  natsDigest,
} from '../builders/nats.js';
import { buildNetworkPolicy } from '../builders/network-policy.js';
import { buildPodDisruptionBudget } from '../builders/pod-disruption-budget.js';
import { buildClientService, buildHeadlessService } from '../builders/services.js';
import { buildStatefulSet, type BuildOptions } from '../builders/statefulset.js';
import { buildTopologyConfigMap } from '../builders/topology-config-map.js';
import type { KubeObject } from '../kube/kube-object.js';
import { RESOURCES, type ResourceKind } from '../kube/resources.js';

export interface DesiredObject {
  resource: ResourceKind;
  object: KubeObject;
}

/** The operator's NATS for the cluster (spec.nats.managed): both users, and its certificate once usable. */
export interface ManagedNats {
  users: Record<NatsRole, NatsCredentials>;
  tls?: { ca: string; cert: string };
}

/**
 * `statefulSets: false` leaves the StatefulSets out (their certificates are not usable yet:
 * pods made now could not start, and pods rolled now would lose their peers).
 */
export function desiredObjects(
  cluster: BankCluster,
  options: BuildOptions,
  { statefulSets = true, nats }: { statefulSets?: boolean; nats?: ManagedNats } = {},
): DesiredObject[] {
  const out: DesiredObject[] = [
    { resource: RESOURCES.networkPolicy, object: buildNetworkPolicy(cluster, options) as unknown as KubeObject },
    { resource: RESOURCES.configMap, object: buildTopologyConfigMap(cluster, options.shapes) as KubeObject },
    { resource: RESOURCES.service, object: buildClientService(cluster) as KubeObject },
  ];
  if (nats) {
    for (const role of ['replica', 'watcher'] as const)
      out.push({
        resource: RESOURCES.secret,
        object: buildNatsCredentialsSecret(cluster, role, nats.users[role]) as KubeObject,
      });
    const conf = natsConfFor(cluster, nats.users);
    out.push({ resource: RESOURCES.secret, object: buildNatsConfigSecret(cluster, conf) as KubeObject });
    out.push({ resource: RESOURCES.service, object: buildNatsService(cluster) as KubeObject });
    out.push({
      resource: RESOURCES.networkPolicy,
      object: buildNatsNetworkPolicy(cluster, options) as unknown as KubeObject,
    });
    if (nats.tls && statefulSets)
      out.push({
        resource: RESOURCES.statefulSet,
        object: buildNatsStatefulSet(
          cluster,
          options.natsImage ?? DEFAULT_NATS_IMAGE,
          natsDigest(conf, nats.tls),
        ) as KubeObject,
      });
  }
  for (let shard = 0; shard < cluster.spec.shards; shard++) {
    out.push({ resource: RESOURCES.service, object: buildHeadlessService(cluster, shard) as KubeObject });
    const pdb = buildPodDisruptionBudget(cluster, shard, options.shapes);
    if (pdb) out.push({ resource: RESOURCES.podDisruptionBudget, object: pdb as KubeObject });
    if (statefulSets)
      out.push({ resource: RESOURCES.statefulSet, object: buildStatefulSet(cluster, shard, options) as KubeObject });
  }
  return out;
}
