// Ports and paths of the replica process (docs/CONTRACTS.md).
export const GRPC_PORT = 50051;
export const HTTP_PORT = 8080;
export const DATA_DIR = '/var/lib/shardbank';
export const DATA_VOLUME = 'data';
/** `--peer-address-template`: the replica fills in each placeholder. */
export const PEER_ADDRESS_TEMPLATE = `{cluster}-s{shard}-{ordinal}.{cluster}-s{shard}.{namespace}.svc:${GRPC_PORT}`;
