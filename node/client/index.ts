// The client library's public surface (CLI, bench, chaos, integration tests).
export * from './bank-client.js';
export * from './bank-invariants.js';
export { parseEndpoints, formatEndpoints, EndpointsError } from './endpoints.js';
export {
  mergeClusterStatus,
  statusJson,
  everyShardHasLeader,
  type ClusterView,
  type ShardView,
  type ReplicaView,
} from './status-view.js';
export type { LeaderSource, LeaderRecordView } from './leader-source.js';
export * from './bank-audit.js';
export {
  loadClientTls,
  tlsChannelCredentials,
  clientIdPrefixOf,
  ClientTlsError,
  type ClientTlsFiles,
  type LoadedClientTls,
} from './tls.js';
