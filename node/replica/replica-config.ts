// Replica configuration from flags and the environment (docs/CONTRACTS.md). A flag wins over
// SHARDBANK_<FLAG> in the environment. Bad values fail fast with a message naming the flag.
import { parseArgs } from 'node:util';
import type { Topology } from '../cluster/topology.js';
import type { NatsSecurity } from '../discovery/nats-security.js';
import { peerSocketPathTooLong, UNIX_SOCKET_PATH_BYTES_MAX } from '../transport/peer-transport.js';
import { REPLICA_SLOTS_MAX } from '../security/identity.js';

export interface ReplicaConfig {
  cluster: string;
  namespace: string;
  incarnation: string | undefined;
  shard: number;
  /** The replica's slot: its pod ordinal, its place in the peer table and its certificate's name. */
  ordinal: number;
  topology: Topology;
  /**
   * The shard's founding size (`--founding-replicas`, default --replicas-per-shard): the Paxos
   * core's initial configuration forever (docs/ARCHITECTURE.md, "Membership"). The current size
   * (`topology.replicasPerShard`) is governed by the log and may change while the data dir lives.
   */
  foundingReplicas: number;
  maxTransferAmount: number;
  /** [shard][ordinal] -> host:port */
  peers: string[][];
  dataDir: string;
  natsUrl: string | undefined;
  /** NATS TLS (`--nats-ca`) and the `replica` user's credentials (`--nats-creds`); {} for neither. */
  natsSecurity: NatsSecurity;
  listenHost: string;
  grpcPort: number;
  httpPort: number;
  logLevel: string;
  /** Development only: skip fsync (never in production; acknowledged would not mean durable). */
  unsafeNoFsync: boolean;
  tickMs: number;
  /** Pacing (see PacingConfig in node/shard/shard-node.ts); 0 turns it off. */
  pacingHoldMs: number;
  pacingMinWaiters: number;
  pacingTargetCommands: number;
  snapshotEverySlots: number;
  /** Slots a leader keeps in flight; while they are full, new commands batch into the next slot. */
  inflightSlotsMax: number;
  thriftyAccepts: boolean;
  preallocateSegments: boolean;
  /** Every replica of the cluster listens for peers in this directory too (same host only). */
  peerSocketDir: string | undefined;
  /**
   * TLS (docs/SECURITY.md): all three files, or none. The one replica certificate serves the
   * peer protocol (mTLS) and the gRPC client API (TLS, clients authenticated by certificate).
   */
  peerTls: { cert: string; key: string; ca: string } | undefined;
  /** `--insecure`: plaintext peers and clients, said explicitly (today also the default). */
  insecure: boolean;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const OPTIONS = {
  cluster: { type: 'string' },
  namespace: { type: 'string' },
  incarnation: { type: 'string' },
  shard: { type: 'string' },
  ordinal: { type: 'string' },
  shards: { type: 'string' },
  'replicas-per-shard': { type: 'string' },
  'founding-replicas': { type: 'string' },
  'items-per-shard': { type: 'string' },
  'initial-balance': { type: 'string' },
  'max-transfer-amount': { type: 'string' },
  peers: { type: 'string' },
  'peer-address-template': { type: 'string' },
  'data-dir': { type: 'string' },
  'nats-url': { type: 'string' },
  'nats-ca': { type: 'string' },
  'nats-creds': { type: 'string' },
  'listen-host': { type: 'string' },
  'grpc-port': { type: 'string' },
  'http-port': { type: 'string' },
  'log-level': { type: 'string' },
  'unsafe-no-fsync': { type: 'boolean' },
  'tick-ms': { type: 'string' },
  'thrifty-accepts': { type: 'string' },
  'preallocate-segments': { type: 'string' },
  'peer-socket-dir': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-ca': { type: 'string' },
  insecure: { type: 'boolean' },
  'pacing-hold-ms': { type: 'string' },
  'pacing-min-waiters': { type: 'string' },
  'pacing-target-commands': { type: 'string' },
  'snapshot-every-slots': { type: 'string' },
  'inflight-slots': { type: 'string' },
} as const;

type Flag = keyof typeof OPTIONS;

export function parseReplicaConfig(argv: string[], env: NodeJS.ProcessEnv): ReplicaConfig {
  let parsed: ReturnType<
    typeof parseArgs<{ options: typeof OPTIONS; strict: true; allowPositionals: false }>
  >['values'];
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new ConfigError(error instanceof Error ? error.message : String(error));
  }
  const get = (flag: Flag): string | undefined => {
    const value = parsed[flag];
    if (typeof value === 'string') return value;
    const fromEnv = env[`SHARDBANK_${flag.toUpperCase().replaceAll('-', '_')}`];
    return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
  };
  const int = (flag: Flag, fallback: number | undefined, min: number, max: number): number => {
    const text = get(flag);
    if (text === undefined) {
      if (fallback === undefined) throw new ConfigError(`--${flag} is required`);
      return fallback;
    }
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new ConfigError(`--${flag} must be an integer from ${min} to ${max}, got ${JSON.stringify(text)}`);
    }
    return value;
  };
  const cluster = get('cluster');
  if (!cluster) throw new ConfigError('--cluster is required');
  const namespace = get('namespace') ?? env.POD_NAMESPACE ?? 'default';
  const shard = int('shard', undefined, 0, 63);
  const topology: Topology = {
    shards: int('shards', 3, 1, 64),
    replicasPerShard: int('replicas-per-shard', 3, 1, 7),
    itemsPerShard: int('items-per-shard', 3000, 1, 1_000_000),
    initialBalance: int('initial-balance', 10, 0, 1_000_000_000_000),
  };
  if (topology.replicasPerShard % 2 === 0) throw new ConfigError('--replicas-per-shard must be odd');
  const foundingReplicas = int('founding-replicas', topology.replicasPerShard, 1, 7);
  if (foundingReplicas % 2 === 0) throw new ConfigError('--founding-replicas must be odd');
  if (shard >= topology.shards) throw new ConfigError(`--shard ${shard} is not below --shards ${topology.shards}`);
  const ordinal =
    get('ordinal') !== undefined
      ? int('ordinal', undefined, 0, REPLICA_SLOTS_MAX - 1)
      : ordinalFromPodName(env.POD_NAME);
  const grpcPort = int('grpc-port', 50051, 1, 65535);
  const peers = parsePeers(get('peers'), get('peer-address-template'), {
    cluster,
    namespace,
    topology,
    grpcPort,
    self: { shard, ordinal },
  });
  // The own shard's peer list may be longer than --replicas-per-shard while a change runs
  // (a member being removed still has its slot), never shorter than the slot.
  if (ordinal >= peers[shard]!.length)
    throw new ConfigError(`--ordinal ${ordinal}: the peer list of shard ${shard} has ${peers[shard]!.length} replicas`);
  const peerSocketDir = get('peer-socket-dir') || undefined;
  const tooLong = peerSocketDir === undefined ? undefined : peerSocketPathTooLong(peerSocketDir, topology);
  if (tooLong !== undefined) {
    throw new ConfigError(
      `--peer-socket-dir ${peerSocketDir}: socket paths such as ${tooLong} are longer than ${UNIX_SOCKET_PATH_BYTES_MAX} bytes`,
    );
  }
  const tlsFiles = { cert: get('tls-cert'), key: get('tls-key'), ca: get('tls-ca') };
  const tlsGiven = Object.entries(tlsFiles).filter(([, file]) => file !== undefined);
  const pullBool = (flag: Flag): boolean => {
    const value = parsed[flag];
    if (typeof value === 'boolean') return value;
    const fromEnv = env[`SHARDBANK_${flag.toUpperCase().replaceAll('-', '_')}`];
    return fromEnv === 'true' || fromEnv === '1';
  };
  const insecure = pullBool('insecure');
  if (insecure && tlsGiven.length > 0)
    throw new ConfigError(
      `--insecure and ${tlsGiven.map(([name]) => `--tls-${name}`).join(', ')} contradict each other: give the TLS files or --insecure, not both`,
    );
  if (tlsGiven.length > 0 && tlsGiven.length < 3) {
    const missing = Object.entries(tlsFiles)
      .filter(([, file]) => file === undefined)
      .map(([name]) => `--tls-${name}`);
    throw new ConfigError(`TLS needs --tls-cert, --tls-key and --tls-ca; missing ${missing.join(', ')}`);
  }
  const peerTls = tlsGiven.length === 3 ? { cert: tlsFiles.cert!, key: tlsFiles.key!, ca: tlsFiles.ca! } : undefined;
  // Secure by default: plaintext (anyone who reaches the port moves money and speaks Paxos)
  // only when asked for by name.
  if (peerTls === undefined && !insecure)
    throw new ConfigError(
      'a replica runs TLS: give --tls-cert, --tls-key and --tls-ca (its certificate, docs/SECURITY.md), or --insecure for plaintext with no authentication',
    );
  const natsUrl = get('nats-url') ?? (env.NATS_URL || undefined);
  const natsCa = get('nats-ca');
  const natsCreds = get('nats-creds');
  if (natsUrl === undefined && (natsCa !== undefined || natsCreds !== undefined)) {
    throw new ConfigError(`--${natsCa !== undefined ? 'nats-ca' : 'nats-creds'} needs --nats-url`);
  }
  return {
    cluster,
    namespace,
    incarnation: get('incarnation'),
    shard,
    ordinal,
    topology,
    foundingReplicas,
    maxTransferAmount: int('max-transfer-amount', 1_000_000_000, 1, Number.MAX_SAFE_INTEGER),
    peers,
    dataDir: get('data-dir') ?? '/var/lib/shardbank',
    natsUrl,
    natsSecurity: {
      ...(natsCa !== undefined ? { caFile: natsCa } : {}),
      ...(natsCreds !== undefined ? { credentialsFile: natsCreds } : {}),
    },
    listenHost: get('listen-host') ?? '0.0.0.0',
    grpcPort,
    httpPort: int('http-port', 8080, 0, 65535),
    logLevel: get('log-level') ?? 'info',
    unsafeNoFsync: pullBool('unsafe-no-fsync'),
    tickMs: int('tick-ms', 25, 5, 1000),
    snapshotEverySlots: int('snapshot-every-slots', 4096, 2, 10_000_000),
    inflightSlotsMax: int('inflight-slots', 1, 1, 256),
    thriftyAccepts: int('thrifty-accepts', 1, 0, 1) === 1,
    preallocateSegments: int('preallocate-segments', 1, 0, 1) === 1,
    peerSocketDir,
    peerTls,
    insecure,
    // On (2 ms) since the TransferStream: streamed requests arrive a few at a time, and holding
    // a short queue for 2 ms measured x1.09-1.18 at 64 clients (docs/PERFORMANCE.md item 21).
    pacingHoldMs: int('pacing-hold-ms', 2, 0, 100),
    pacingMinWaiters: int('pacing-min-waiters', 8, 1, 1_000_000),
    pacingTargetCommands: int('pacing-target-commands', 48, 2, 4096),
  };
}

function ordinalFromPodName(podName: string | undefined): number {
  const match = podName ? /-(\d+)$/.exec(podName) : null;
  if (!match) throw new ConfigError('--ordinal is required (or POD_NAME ending in -<ordinal>)');
  return Number(match[1]);
}

function parsePeers(
  list: string | undefined,
  template: string | undefined,
  context: {
    cluster: string;
    namespace: string;
    topology: Topology;
    grpcPort: number;
    self: { shard: number; ordinal: number };
  },
): string[][] {
  const { topology } = context;
  if (list) {
    const shards = list.split(';').map((group) => group.split(',').map((address) => address.trim()));
    if (shards.length !== topology.shards)
      throw new ConfigError(`--peers lists ${shards.length} shards, expected ${topology.shards}`);
    shards.forEach((group, shard) => {
      // A shard in the middle of a membership change has one slot more or less than the others.
      if (group.length < 1 || group.length > REPLICA_SLOTS_MAX) {
        throw new ConfigError(
          `--peers lists ${group.length} replicas for shard ${shard}, expected 1 to ${REPLICA_SLOTS_MAX}`,
        );
      }
      for (const address of group) {
        if (!/^[^\s:]+:\d+$/.test(address))
          throw new ConfigError(`--peers: ${JSON.stringify(address)} is not host:port`);
      }
    });
    return shards;
  }
  if (template) {
    const result: string[][] = [];
    for (let shard = 0; shard < topology.shards; shard += 1) {
      const group: string[] = [];
      // A pod added beyond the founding size (a membership change) is in its own shard's list;
      // the peers it learns of later come from the configuration (docs/ARCHITECTURE.md, "Membership").
      const slots =
        shard === context.self.shard
          ? Math.max(topology.replicasPerShard, context.self.ordinal + 1)
          : topology.replicasPerShard;
      for (let ordinal = 0; ordinal < slots; ordinal += 1) {
        group.push(
          template
            .replaceAll('{cluster}', context.cluster)
            .replaceAll('{namespace}', context.namespace)
            .replaceAll('{shard}', String(shard))
            .replaceAll('{ordinal}', String(ordinal))
            .replaceAll('{port}', String(context.grpcPort)),
        );
      }
      result.push(group);
    }
    return result;
  }
  throw new ConfigError('--peers or --peer-address-template is required');
}
