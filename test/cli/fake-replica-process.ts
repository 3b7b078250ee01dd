// A stand-in replica process for testing the local runtime (supervision, address book,
// detach/down, restarts) apart from the real replica: it takes the replica's flags,
// answers ClusterStatus about itself (ordinal 0 leads) and exits 0 on SIGTERM.
// Run as `SHARDBANK_REPLICA_MAIN=dist/test/cli/fake-replica-process.js shardbank up`.
import { Server, ServerCredentials, status } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { BankService } from '../../node/gen/shardbank/v1/bank.js';

const { values } = parseArgs({
  options: Object.fromEntries(
    [
      'cluster',
      'namespace',
      'incarnation',
      'shard',
      'ordinal',
      'shards',
      'replicas-per-shard',
      'founding-replicas',
      'items-per-shard',
      'initial-balance',
      'max-transfer-amount',
      'peers',
      'data-dir',
      'nats-url',
      'nats-ca',
      'nats-creds',
      'listen-host',
      'grpc-port',
      'http-port',
      'log-level',
      'peer-socket-dir',
      'tls-cert',
      'tls-key',
      'tls-ca',
    ].map((flag) => [flag, { type: 'string' as const }]),
  ),
  strict: true,
  // The real replica's --insecure (a boolean) means plaintext, as here without --tls-*.
  args: process.argv.slice(2).filter((arg) => arg !== '--insecure'),
});
const shard = Number(values.shard);
const ordinal = Number(values.ordinal);
const unavailable = (_call: unknown, callback: (error: { code: number; details: string }) => void) =>
  callback({ code: status.UNAVAILABLE, details: 'fake replica' });
const server = new Server();
server.addService(BankService, {
  openSession: unavailable,
  transfer: unavailable,
  batchTransfer: unavailable,
  getBalance: unavailable,
  clusterStatus: (_call: unknown, callback: (error: null, reply: unknown) => void) => {
    const role = ordinal === 0 ? 'leader' : 'follower';
    callback(null, {
      cluster: values.cluster,
      shards: [
        {
          shard,
          firstItem: 0,
          lastItem: 0,
          leaderOrdinal: 0,
          leaderBallot: { round: 1, ordinal: 0 },
          leaderAddress: '',
          inflightTransactions: 0,
          voters: [0, 1, 2],
          learners: [],
          membershipChangeInFlight: false,
          replicas: [
            {
              shard,
              ordinal,
              role,
              ready: true,
              address: '',
              commitIndex: 1,
              appliedIndex: 1,
              ballot: { round: 1, ordinal: 0 },
              leaderOrdinal: 0,
              inflightTransactions: 0,
              pid: process.pid,
              snapshotIndex: 0,
              shardTotal: 0,
              voting: 'voter',
              memberRole: 'voter',
              memberId: ordinal,
              voters: [0, 1, 2],
              learners: [],
              membershipChangeInFlight: false,
            },
          ],
        },
      ],
    });
  },
});
// With the local runtime's --tls-* the stand-in serves TLS with the replica's certificate
// (no client authentication: that is the real replica's, tested in test/security).
const credentials = values['tls-cert']
  ? ServerCredentials.createSsl(
      readFileSync(values['tls-ca']!),
      [{ cert_chain: readFileSync(values['tls-cert']), private_key: readFileSync(values['tls-key']!) }],
      false,
    )
  : ServerCredentials.createInsecure();
server.bindAsync(`${values['listen-host']}:${values['grpc-port']}`, credentials, (error) => {
  if (error) {
    console.error(error.message);
    process.exit(1);
  }
  console.log(JSON.stringify({ msg: 'fake replica listening', shard, ordinal, pid: process.pid }));
});
process.once('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
