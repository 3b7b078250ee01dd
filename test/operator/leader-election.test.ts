// Two operator replicas running as the service account of deploy/rbac.yaml (so the
// least-privilege RBAC is proven sufficient): one holds the Lease and reconciles, the
// other waits; when the first stops (releasing the Lease) the second takes over.
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeApiError } from '../../operator/kube/api-error.js';
import { KubeClient } from '../../operator/kube/kube-client.js';
import type { KubeObject } from '../../operator/kube/kube-object.js';
import type { Operator } from '../../operator/operator.js';
import { startTestControlPlane, RESOURCES, type TestControlPlane } from './support/control-plane.js';
import { eventually } from './support/eventually.js';
import { applyManifests, readManifests } from './support/manifests.js';
import { OPERATOR_NAMESPACE, startTestOperator } from './support/operator.js';
import { createBankCluster } from './support/bank-clusters.js';
import { parsePrometheusText } from '../support/prometheus-text.js';

const root = join(import.meta.dirname, '..', '..');
const NS = 'ha';
let tcp: TestControlPlane;
let serviceAccountConfig: KubeConfig;
const operators: Operator[] = [];

async function serviceAccountKubeConfig(): Promise<KubeConfig> {
  const tr = await tcp.client.request<{ status: { token: string } }>({
    method: 'POST',
    path: `/api/v1/namespaces/${OPERATOR_NAMESPACE}/serviceaccounts/shardbank-operator/token`,
    body: JSON.stringify({
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { expirationSeconds: 3600 },
    }),
  });
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'test', server: tcp.cp.server, caData: Buffer.from(tcp.cp.pem.ca).toString('base64') }],
    users: [{ name: 'operator', token: tr.status.token }],
    contexts: [{ name: 'test', cluster: 'test', user: 'operator' }],
    currentContext: 'test',
  });
  return kc;
}

async function start(identity: string): Promise<Operator> {
  const op = await startTestOperator(tcp, {
    kubeConfig: serviceAccountConfig,
    identity,
    leaseDurationMs: 15_000,
    renewDeadlineMs: 10_000,
    retryPeriodMs: 1_000,
  });
  operators.push(op);
  return op;
}

async function leaseHolder(): Promise<string | undefined> {
  const lease = await tcp.client.get<KubeObject & { spec: { holderIdentity?: string } }>(
    RESOURCES.lease,
    OPERATOR_NAMESPACE,
    'shardbank-operator',
  );
  return lease.spec.holderIdentity;
}

async function httpGet(op: Operator, path: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${op.httpPort}${path}`);
  return { status: r.status, body: await r.text() };
}

beforeAll(async () => {
  tcp = await startTestControlPlane();
  await applyManifests(tcp.client, [
    ...readManifests(join(root, 'deploy', 'namespace.yaml')),
    ...readManifests(join(root, 'deploy', 'rbac.yaml')),
  ]);
  await tcp.createNamespace(NS);
  serviceAccountConfig = await serviceAccountKubeConfig();
});

afterAll(async () => {
  for (const op of operators) await op.stop();
  await tcp?.stop();
});

describe('operator high availability', () => {
  it('runs with least privilege: the service account cannot list nodes, exec into pods or grant RBAC', async () => {
    // It reads and writes Secrets (the clusters' certificates) but nothing beyond its table.
    const client = new KubeClient(serviceAccountConfig, 'probe');
    const status = (p: Promise<unknown>) =>
      p.then(
        () => 200,
        (e: unknown) => (e instanceof KubeApiError ? e.statusCode : -1),
      );
    expect(await status(client.list({ apiVersion: 'v1', kind: 'Node', plural: 'nodes', namespaced: false }))).toBe(403);
    expect(
      await status(
        client.request({ method: 'POST', path: `/api/v1/namespaces/${NS}/pods/x/exec?command=true`, body: '{}' }),
      ),
    ).toBe(403);
    expect(
      await status(
        client.list(
          { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', plural: 'rolebindings', namespaced: true },
          NS,
        ),
      ),
    ).toBe(403);
    expect(
      await status(client.list({ apiVersion: 'v1', kind: 'Secret', plural: 'secrets', namespaced: true }, NS)),
    ).toBe(200);
  });

  it('the first replica takes the Lease and reconciles; the second waits', async () => {
    const a = await start('operator-a');
    await eventually('operator-a leads', () => a.isActive);
    const b = await start('operator-b');
    await createBankCluster(tcp.client, NS, 'ha', { shards: 1, replicasPerShard: 3 });
    await eventually(
      'StatefulSet ha-s0 (made by operator-a)',
      async () => (await tcp.client.list(RESOURCES.statefulSet, NS)).items.length === 1,
    );
    expect(await leaseHolder()).toBe('operator-a');
    expect(b.isLeader).toBe(false);
    const ready = await httpGet(b, '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body).toContain('standby');
    expect((await httpGet(a, '/metrics')).body).toMatch(/^shardbank_operator_leader 1$/m);
    expect((await httpGet(b, '/metrics')).body).toMatch(/^shardbank_operator_leader 0$/m);
    expect((await httpGet(a, '/healthz')).status).toBe(200);
    // prom-client's text format: HELP and TYPE on every metric, reconciles counted and timed per resource.
    const families = parsePrometheusText((await httpGet(a, '/metrics')).body);
    for (const [name, family] of families) {
      expect(family.help, `HELP of ${name}`).toBeTruthy();
      if (family.type === 'gauge') expect(name, 'a gauge named _total').not.toMatch(/_total$/);
      if (family.type === 'counter') expect(name, 'a counter not named _total').toMatch(/_total$/);
    }
    const resource = { resource: 'BankCluster', resource_namespace: NS, resource_name: 'ha' };
    const sample = (name: string, labels: Record<string, string>) =>
      families
        .get(name.replace(/_(bucket|sum|count)$/, ''))
        ?.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
    const reconciles = families
      .get('shardbank_operator_reconcile_total')!
      .samples.filter((s) => s.labels.resource_name === 'ha')
      .reduce((sum, s) => sum + s.value, 0);
    expect(reconciles).toBeGreaterThanOrEqual(1);
    expect(sample('shardbank_operator_reconcile_duration_seconds_count', resource)).toBe(reconciles);
    expect(sample('shardbank_operator_reconcile_duration_seconds_sum', resource)).toBeGreaterThan(0);
    expect(families.get('shardbank_operator_reconcile_errors_total')?.type).toBe('counter');
    expect(families.get('shardbank_operator_informer_relists_total')!.samples.length).toBeGreaterThan(0);
    expect(families.has('process_cpu_seconds_total')).toBe(true);
  });

  it('the second replica takes over when the first stops, and reconciles', async () => {
    const [a, b] = operators as [Operator, Operator];
    await a.stop();
    await eventually('operator-b leads', () => b.isActive);
    expect(await leaseHolder()).toBe('operator-b');
    await tcp.client.mergePatch(RESOURCES.bankCluster, NS, 'ha', { spec: { image: 'shardbank/node:0.3.0' } });
    await eventually('StatefulSet updated by operator-b', async () => {
      const sts = await tcp.client.get<
        KubeObject & { spec: { template: { spec: { containers: { image: string }[] } } } }
      >(RESOURCES.statefulSet, NS, 'ha-s0');
      return sts.spec.template.spec.containers[0]!.image === 'shardbank/node:0.3.0';
    });
    const lease = await tcp.client.get<KubeObject & { spec: { leaseTransitions?: number } }>(
      RESOURCES.lease,
      OPERATOR_NAMESPACE,
      'shardbank-operator',
    );
    expect(lease.spec.leaseTransitions).toBeGreaterThanOrEqual(1);
  });
});
