// Runs the operator in-process against a test control plane, with short lease timings.
import { pino } from 'pino';
import { Operator, type OperatorOptions } from '../../../operator/operator.js';
import type { TestControlPlane } from './control-plane.js';

export const OPERATOR_NAMESPACE = 'shardbank-system';

export async function startTestOperator(
  tcp: TestControlPlane,
  options: Partial<OperatorOptions> = {},
): Promise<Operator> {
  const operator = new Operator({
    kubeConfig: tcp.kubeConfig,
    leaseNamespace: OPERATOR_NAMESPACE,
    httpPort: 0,
    httpHost: '127.0.0.1',
    logger: pino({ level: process.env.SHARDBANK_TEST_LOG_LEVEL ?? 'warn' }),
    leaseDurationMs: 6_000,
    renewDeadlineMs: 4_000,
    retryPeriodMs: 500,
    notReadyRequeueMs: 2_000,
    ...options,
  });
  await operator.start();
  return operator;
}
