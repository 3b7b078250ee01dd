// Entry point of one replica process: configuration, storage recovery, one port for the gRPC
// server (client API, health) and the peer protocol, HTTP endpoints, NATS leader
// announcements, signals.
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { traceRole } from '../util/stage-trace.js';
import {
  BankService as BankServiceDefinition,
  MembershipClient,
  MembershipService as MembershipServiceDefinition,
  type MembershipReply,
} from '../gen/shardbank/v1/bank.js';
import { HealthService, HealthCheckResponse_ServingStatus, type HealthServer } from '../gen/grpc/health/v1/health.js';
import { LeaderAnnouncer, LeaderWatcher } from '../discovery/index.js';
import { credentialsModeProblem, natsSecurityProblem } from '../discovery/nats-security.js';
import { MESSAGE_BYTES_MAX, peerSocketPath } from '../transport/peer-transport.js';
import { listenSharedPort } from '../transport/shared-port.js';
import { PeerTls, privateDirectoryProblem } from '../security/peer-tls.js';
import { ClientTls } from '../security/client-tls.js';
import { authorizePeer } from '../security/identity.js';
import { loadClientTls, tlsChannelCredentials, tlsChannelOptions, type LoadedClientTls } from '../client/tls.js';
import { ConfigError, parseReplicaConfig, type ReplicaConfig } from './replica-config.js';
import { Replica } from './replica.js';
import { BankService } from './bank-service.js';
import { MembershipService } from './membership-service.js';
import { joinShard } from './membership-join.js';
import { Forwarder } from './forwarder.js';
import { startHttpServer } from './http-server.js';

const SHUTDOWN_GRACE_MS = 8_000;

async function main(): Promise<void> {
  let config: ReplicaConfig;
  try {
    config = parseReplicaConfig(process.argv.slice(2), process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`shardbank replica: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  traceRole(`s${config.shard}r${config.ordinal}`);
  const logger = pino({
    level: config.logLevel,
    base: { cluster: config.cluster, shard: config.shard, replica: config.ordinal },
  });
  let peerTls: PeerTls | undefined;
  let clientTls: ClientTls | undefined;
  /** The replica's own certificate as a gRPC client (the Forwarder), re-read on SIGHUP. */
  let forwarderTls: LoadedClientTls | undefined;
  const policy = {
    namespace: config.namespace,
    cluster: config.cluster,
    shards: config.topology.shards,
    replicasPerShard: config.topology.replicasPerShard,
  };
  const tlsFlags = { ca: '--tls-ca', cert: '--tls-cert', key: '--tls-key' };
  try {
    peerTls = config.peerTls ? new PeerTls(config.peerTls, policy) : undefined;
    clientTls = config.peerTls ? new ClientTls(config.peerTls, policy) : undefined;
    forwarderTls = config.peerTls ? loadClientTls(config.peerTls, tlsFlags) : undefined;
    const problem = peerTls && config.peerSocketDir ? privateDirectoryProblem(config.peerSocketDir) : undefined;
    if (problem) throw new Error(problem);
    const natsProblem = natsSecurityProblem(config.natsSecurity, {
      caFile: '--nats-ca',
      credentialsFile: '--nats-creds',
    });
    if (natsProblem) throw new Error(natsProblem);
  } catch (error) {
    process.stderr.write(`shardbank replica: ${(error as Error).message}\n`);
    process.exit(2);
  }
  const credentialsFile = config.natsSecurity.credentialsFile;
  const openCredentials = credentialsFile === undefined ? undefined : credentialsModeProblem(credentialsFile);
  if (openCredentials) logger.warn({ flag: '--nats-creds' }, openCredentials);
  const advertised = config.peers[config.shard]![config.ordinal]!;
  // Another replica is checked by its SAN URI (a member of this cluster), not by the host name
  // it was dialled with: the same rule as the peer protocol's dialer.
  const replicaServerIdentity = (_host: string, certificate: { subjectaltname?: string }) => {
    const verdict = authorizePeer(certificate.subjectaltname, policy);
    return 'refused' in verdict ? new Error(`replica certificate refused: ${verdict.refused}`) : undefined;
  };
  const peerCredentials = () =>
    forwarderTls ? tlsChannelCredentials(forwarderTls, replicaServerIdentity) : grpc.credentials.createInsecure();
  let joinStopped = false;
  const stopJoin = () => {
    joinStopped = true;
  };
  process.once('SIGTERM', stopJoin);
  process.once('SIGINT', stopJoin);
  const join = () =>
    joinShard({
      selfAddress: advertised,
      slot: config.ordinal,
      foundingReplicas: config.foundingReplicas,
      peers: config.peers[config.shard]!,
      ask: (address) => askMembership(address, config, peerCredentials, forwarderTls ? tlsChannelOptions : undefined),
      log: (message) => logger.info(message),
      stopped: () => joinStopped,
    });
  const replica = await Replica.open(config, logger, peerTls, join);
  process.off('SIGTERM', stopJoin);
  process.off('SIGINT', stopJoin);
  if (replica === undefined) {
    logger.info('stopped while waiting to be added to the shard');
    process.exit(0);
  }
  const forwarder = new Forwarder(
    config.peers,
    forwarderTls ? () => tlsChannelCredentials(forwarderTls!, replicaServerIdentity) : undefined,
    forwarderTls ? tlsChannelOptions : undefined,
  );
  const service = new BankService(replica, forwarder, advertised, clientTls);

  const server = new grpc.Server({
    'grpc.max_receive_message_length': MESSAGE_BYTES_MAX,
    'grpc.max_send_message_length': MESSAGE_BYTES_MAX,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    // Channelz keeps per-call statistics and traces nobody reads here: CPU on every call.
    'grpc.enable_channelz': 0,
  });
  server.addService(BankServiceDefinition, service.implementation());
  server.addService(MembershipServiceDefinition, new MembershipService(replica, clientTls).implementation());
  const health: HealthServer = {
    check: (call, callback) => {
      const refusal = clientTls?.refusal(call.getPeer(), 'read', []);
      if (refusal) {
        callback({ code: refusal.code, details: refusal.message });
        return;
      }
      callback(null, {
        status: service.isReady()
          ? HealthCheckResponse_ServingStatus.SERVING
          : HealthCheckResponse_ServingStatus.NOT_SERVING,
      });
    },
  };
  server.addService(HealthService, health);
  const peerSocket =
    config.peerSocketDir === undefined ? undefined : peerSocketPath(config.peerSocketDir, config.shard, config.ordinal);
  const listener = await listenSharedPort(
    config.listenHost,
    config.grpcPort,
    server,
    (socket, rest, kind) => replica.transport.acceptConnection(socket, rest, replica, kind),
    peerSocket,
    clientTls,
  );
  const grpcPort = listener.port;
  const http = await startHttpServer(replica, service, config.listenHost, config.httpPort);

  const nats = config.natsUrl ? await startDiscovery(config, replica, advertised, logger) : undefined;
  replica.start();
  logger.info(
    {
      grpcPort,
      httpPort: (http.address() as { port: number }).port,
      nats: config.natsUrl ?? null,
      natsTls: config.natsSecurity.caFile ? 'on' : 'off',
      natsUser: config.natsSecurity.credentialsFile ? 'from --nats-creds' : 'none',
      peerTls: peerTls ? 'on' : 'off (plaintext peers)',
      clientTls: clientTls ? 'on' : config.insecure ? 'off (--insecure)' : 'off (plaintext clients)',
      incarnation: replica.incarnation,
    },
    'replica started',
  );

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const forceExit = setTimeout(() => process.exit(1), SHUTDOWN_GRACE_MS).unref();
    // Stop accepting new calls; calls in flight may finish while leadership moves (the peer
    // connections stay open for the hand-over).
    listener.stopAccepting();
    const drained = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    await replica.handOver(2_000);
    await Promise.race([drained, new Promise((resolve) => setTimeout(resolve, 500))]);
    server.forceShutdown();
    listener.destroy();
    http.close();
    await nats?.close();
    forwarder.close();
    await replica.stop();
    clearTimeout(forceExit);
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  if (peerTls && clientTls) {
    // Rotation: new peer and client connections use the re-read files, and new forwarding
    // channels the new certificate; open connections keep theirs.
    process.on('SIGHUP', () => {
      try {
        peerTls.reload();
        clientTls.reload();
        forwarderTls = loadClientTls(config.peerTls!, tlsFlags);
        forwarder.renewChannels();
        logger.info('peer TLS files re-read');
        logger.info('client TLS files re-read');
      } catch (error) {
        logger.error({ err: (error as Error).message }, 'TLS files not re-read: keeping the old ones');
      }
    });
  }
}

async function startDiscovery(config: ReplicaConfig, replica: Replica, advertised: string, logger: pino.Logger) {
  const identity = {
    namespace: config.namespace,
    cluster: config.cluster,
    shard: config.shard,
    ordinal: config.ordinal,
  };
  const security = config.natsSecurity;
  const announcer = new LeaderAnnouncer({ servers: config.natsUrl!, security, identity, logger });
  const watcher = await LeaderWatcher.start({
    servers: config.natsUrl!,
    security,
    namespace: config.namespace,
    cluster: config.cluster,
    incarnation: replica.incarnation,
    logger,
  });
  watcher.onChange((change) => {
    if (change.record && change.shard !== config.shard) {
      replica.router.learnLeader(change.shard, change.record.leaderOrdinal, change.record.ballot.round);
    }
  });
  for (const [shard, record] of watcher.leaders()) {
    if (shard !== config.shard) replica.router.learnLeader(shard, record.leaderOrdinal, record.ballot.round);
  }
  replica.onLeadership((leading) => {
    if (!leading) {
      announcer.stopAnnouncing();
      return;
    }
    const ballot = replica.node.core.leaderBallot;
    void announcer.announce({
      cluster: config.cluster,
      namespace: config.namespace,
      shard: config.shard,
      ballot: { round: ballot.round, ordinal: ballot.ordinal },
      leaderOrdinal: config.ordinal,
      address: advertised,
      incarnation: replica.incarnation,
      announcedAtMs: Date.now(),
    });
  });
  return {
    close: async () => {
      await Promise.allSettled([announcer.close(), watcher.close()]);
    },
  };
}

/** One GetMembership of a peer (as this replica: read access), undefined when it does not answer in time. */
function askMembership(
  address: string,
  config: ReplicaConfig,
  credentials: () => grpc.ChannelCredentials,
  options: ((address: string) => grpc.ChannelOptions) | undefined,
): Promise<MembershipReply | undefined> {
  const client = new MembershipClient(address, credentials(), options?.(address) ?? {});
  return new Promise<MembershipReply | undefined>((resolve) => {
    client.getMembership(
      { cluster: config.cluster, shard: config.shard },
      new grpc.Metadata(),
      { deadline: Date.now() + 1_500 },
      (error, reply) => resolve(error ? undefined : reply),
    );
  }).finally(() => client.close());
}

main().catch((error: unknown) => {
  process.stderr.write(
    `shardbank replica failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
