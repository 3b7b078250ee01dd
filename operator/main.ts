// Operator entry point (`node dist/operator/main.js`, image shardbank/operator).
// Configuration from the environment (the Deployment sets it):
//   POD_NAMESPACE              namespace of the leader-election Lease (default: default)
//   POD_NAME                   identity in the Lease (default: hostname-pid)
//   SHARDBANK_HTTP_PORT        /metrics, /healthz, /readyz (default 8081)
//   SHARDBANK_MANAGED_NATS_URL NATS for BankClusters with spec.nats.managed (default none)
//   SHARDBANK_LEASE_NAME       (default shardbank-operator)
//   KUBECONFIG                 outside a cluster; in a pod the service account is used
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
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
  managedNatsUrl: process.env.SHARDBANK_MANAGED_NATS_URL || undefined,
  logger,
  exitOnLostLease: true,
});

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
