// Operator entry point (`node dist/operator/main.js`, image shardbank/operator).
// Configuration from the environment (the Deployment sets it):
//   POD_NAMESPACE              namespace of the leader-election Lease (default: default)
//   POD_NAME                   identity in the Lease (default: hostname-pid)
//   SHARDBANK_HTTP_PORT        /metrics, /healthz, /readyz (default 8081)
//   SHARDBANK_NATS_IMAGE       the nats-server image run for each BankCluster with
//                              spec.nats.managed (default nats:2.10-alpine; "none": no NATS)
//   SHARDBANK_LEASE_NAME       (default shardbank-operator)
//   SHARDBANK_MONITORING_NAMESPACE  namespace whose pods may scrape the replicas' HTTP port
//                              (each cluster's NetworkPolicy; default none)
//   SHARDBANK_CERTIFICATE_DAYS lifetime of the certificates the operator issues (default 90;
//                              each is renewed at two thirds of it)
//   KUBECONFIG                 outside a cluster; in a pod the service account is used
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { DEFAULT_NATS_IMAGE } from './builders/nats.js';
import { Operator } from './operator.js';

const logger = pino({ name: 'shardbank-operator', level: process.env.SHARDBANK_LOG_LEVEL ?? 'info' });
const kubeConfig = new KubeConfig();
kubeConfig.loadFromDefault();

const operator = new Operator({
  kubeConfig,
  leaseNamespace: process.env.POD_NAMESPACE ?? 'default',
  leaseName: process.env.SHARDBANK_LEASE_NAME,
  identity: process.env.POD_NAME,
  httpPort: Number(process.env.SHARDBANK_HTTP_PORT ?? 8081),
  natsImage: natsImage(),
  monitoringNamespace: process.env.SHARDBANK_MONITORING_NAMESPACE || undefined,
  certificateLifetimeMs: certificateDays() * 86_400_000,
  logger,
  exitOnLostLease: true,
});

function natsImage(): string | undefined {
  const image = process.env.SHARDBANK_NATS_IMAGE || DEFAULT_NATS_IMAGE;
  return image === 'none' ? undefined : image;
}

function certificateDays(): number {
  const text = process.env.SHARDBANK_CERTIFICATE_DAYS ?? '90';
  const days = Number(text);
  if (!Number.isFinite(days) || days < 1 || days > 825) {
    logger.fatal(`SHARDBANK_CERTIFICATE_DAYS must be a number of days from 1 to 825, got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return days;
}

let exiting = false;
async function shutdown(signal: string): Promise<void> {
  if (exiting) return;
  exiting = true;
  logger.info({ signal }, 'shutting down');
  const force = setTimeout(() => process.exit(1), 25_000);
  force.unref();
  await operator.stop();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));

operator.start().catch((err: unknown) => {
  logger.fatal({ err }, 'operator failed to start');
  process.exit(1);
});
