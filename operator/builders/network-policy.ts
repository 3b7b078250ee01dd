// Desired NetworkPolicy of a cluster (docs/SECURITY.md): ingress to the replicas' gRPC port
// (which the peer protocol shares) only from the cluster's own replica pods and from pods
// labelled shardbank.io/client=<cluster> in the same namespace; the HTTP port (probes,
// /metrics, /status) from the same pods and from the monitoring namespace. The kubelet's
// probes come from the node, which NetworkPolicy implementations let through. Which replica a
// peer is, and which client, is decided by certificates: the policy only keeps everything
// else off the port (and the handshakes it would cost). The gRPC port also admits the
// operator's namespace: its membership driver calls the replicas' Membership service (with
// an `admin` client certificate it issues itself).
import type { V1LabelSelector, V1ObjectMeta } from '@kubernetes/client-node';
import { names, type BankCluster } from '../../node/cluster/bankcluster.js';
import { LABEL_CLIENT, LABEL_COMPONENT } from './certificates.js';
import { clusterLabels, LABEL_CLUSTER, ownedMetadata } from './labels.js';
import { GRPC_PORT, HTTP_PORT } from './ports.js';

// The wire format: @kubernetes/client-node's V1NetworkPolicyIngressRule calls `from` `_from`.
interface NetworkPolicyPeer {
  podSelector?: V1LabelSelector;
  namespaceSelector?: V1LabelSelector;
}

export interface NetworkPolicy {
  apiVersion: 'networking.k8s.io/v1';
  kind: 'NetworkPolicy';
  metadata: V1ObjectMeta & { name: string };
  spec: {
    podSelector: V1LabelSelector;
    policyTypes: string[];
    ingress: { from: NetworkPolicyPeer[]; ports: { protocol: string; port: number }[] }[];
  };
}

export interface NetworkPolicyOptions {
  /** Namespace allowed to reach the HTTP port (Prometheus); none when undefined. */
  monitoringNamespace?: string;
  /** The operator's namespace: allowed on the gRPC port (membership changes); none when undefined. */
  operatorNamespace?: string;
}

/** The label selector of a cluster's replica pods (what the policy protects). */
export function replicaPodSelector(cluster: BankCluster): Record<string, string> {
  return { [LABEL_CLUSTER]: cluster.metadata.name, [LABEL_COMPONENT]: 'replica' };
}

export function buildNetworkPolicy(cluster: BankCluster, options: NetworkPolicyOptions = {}): NetworkPolicy {
  const replicas: NetworkPolicyPeer = { podSelector: { matchLabels: replicaPodSelector(cluster) } };
  const clients: NetworkPolicyPeer = { podSelector: { matchLabels: { [LABEL_CLIENT]: cluster.metadata.name } } };
  const monitoring: NetworkPolicyPeer[] = options.monitoringNamespace
    ? [
        {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': options.monitoringNamespace } },
        },
      ]
    : [];
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: ownedMetadata(cluster, names.networkPolicy(cluster.metadata.name), clusterLabels(cluster)),
    spec: {
      podSelector: { matchLabels: replicaPodSelector(cluster) },
      policyTypes: ['Ingress'],
      ingress: [
        {
          from: [
            replicas,
            clients,
            ...(options.operatorNamespace
              ? [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': options.operatorNamespace } } }]
              : []),
          ],
          ports: [{ protocol: 'TCP', port: GRPC_PORT }],
        },
        { from: [replicas, clients, ...monitoring], ports: [{ protocol: 'TCP', port: HTTP_PORT }] },
      ],
    },
  };
}
