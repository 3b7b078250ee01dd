// Desired Services: one headless Service per shard (stable DNS for each replica, published
// before readiness so that peers can elect a leader), and one client Service per cluster.
import type { V1Service } from '@kubernetes/client-node';
import { names, type BankCluster } from '../../node/cluster/bankcluster.js';
import { clusterLabels, LABEL_CLUSTER, ownedMetadata, shardLabels, shardSelector } from './labels.js';
import { GRPC_PORT, HTTP_PORT } from './ports.js';

const clientPorts = [
  { name: 'grpc', port: GRPC_PORT, targetPort: 'grpc', protocol: 'TCP', appProtocol: 'grpc' },
  { name: 'http', port: HTTP_PORT, targetPort: 'http', protocol: 'TCP' },
];

// Replicas reach each other through the headless Services, and their peer protocol shares the
// gRPC port but is not gRPC (length-prefixed frames on TCP): no appProtocol there, so that a
// service mesh does not try to parse it as HTTP/2.
const peerPorts = [
  { name: 'grpc', port: GRPC_PORT, targetPort: 'grpc', protocol: 'TCP' },
  { name: 'http', port: HTTP_PORT, targetPort: 'http', protocol: 'TCP' },
];

export function buildHeadlessService(cluster: BankCluster, shard: number): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: ownedMetadata(cluster, names.headlessService(cluster.metadata.name, shard), shardLabels(cluster, shard)),
    spec: {
      clusterIP: 'None',
      publishNotReadyAddresses: true,
      selector: shardSelector(cluster, shard),
      ports: peerPorts,
    },
  };
}

export function buildClientService(cluster: BankCluster): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: ownedMetadata(cluster, names.clientService(cluster.metadata.name), {
      ...clusterLabels(cluster),
      'app.kubernetes.io/component': 'client',
    }),
    spec: {
      type: 'ClusterIP',
      selector: { [LABEL_CLUSTER]: cluster.metadata.name },
      ports: clientPorts,
    },
  };
}
