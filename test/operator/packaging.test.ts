// deploy/ and the Helm chart: lint, template, and acceptance by a real kube-apiserver
// (server-side dry run); RBAC in both says the same; Dockerfiles are multi-stage,
// non-root and name no registry host.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { binaries } from '../../scripts/controlplane/binaries.mjs';
import type { KubeObject } from '../../operator/kube/kube-object.js';
import { startTestControlPlane, type TestControlPlane } from './support/control-plane.js';
import { applyManifests, parseManifests, readManifests } from './support/manifests.js';

const root = join(import.meta.dirname, '..', '..');
const chart = join(root, 'charts', 'shardbank-operator');
let tcp: TestControlPlane;
let helm: string;

function helmRun(args: string[]): string {
  return execFileSync(helm, args, {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      HELM_CACHE_HOME: join(tcp.cp.dir, 'helm-cache'),
      HELM_CONFIG_HOME: join(tcp.cp.dir, 'helm-config'),
      HELM_DATA_HOME: join(tcp.cp.dir, 'helm-data'),
    },
  });
}

beforeAll(async () => {
  helm = binaries({ need: ['helm'] }).helm;
  tcp = await startTestControlPlane();
});

afterAll(async () => {
  await tcp?.stop();
});

/** True if an image reference starts with a registry host (`host.tld/...`, `host:port/...`). */
function namesRegistryHost(image: string): boolean {
  const parts = image.split('/');
  return parts.length > 1 && /[.:]|^localhost$/.test(parts[0]!);
}

function kustomizeResources(): KubeObject[] {
  const k = parse(readFileSync(join(root, 'deploy', 'kustomization.yaml'), 'utf8')) as { resources: string[] };
  return k.resources.flatMap((r) => readManifests(join(root, 'deploy', r)));
}

function rulesOf(objects: KubeObject[]): unknown {
  return objects.find((o) => o.kind === 'ClusterRole')?.rules;
}

describe('helm chart', () => {
  it('passes helm lint', () => {
    const out = helmRun(['lint', chart]);
    expect(out).toContain('0 chart(s) failed');
  });

  it('rejects values that break its schema', () => {
    expect(() => helmRun(['template', 't', chart, '--set', 'replicaCount=0'])).toThrow(/replicaCount/);
    expect(() => helmRun(['template', 't', chart, '--set', 'crd.bogus=1'])).toThrow(/crd/);
    expect(() => helmRun(['template', 't', chart, '--set', 'security.certificateDays=0'])).toThrow(/certificateDays/);
    expect(() => helmRun(['template', 't', chart, '--set', 'security.monitoringNamespace=Prom'])).toThrow(
      /monitoringNamespace/,
    );
  });

  it('passes the certificate lifetime and the monitoring namespace to the operator', () => {
    const env = (args: string[]) => {
      const deployment = parseManifests(helmRun(['template', 't', chart, ...args])).find(
        (o) => o.kind === 'Deployment',
      ) as unknown as { spec: { template: { spec: { containers: { env: { name: string; value?: string }[] }[] } } } };
      return Object.fromEntries(deployment.spec.template.spec.containers[0]!.env.map((e) => [e.name, e.value]));
    };
    expect(env([])).toMatchObject({ SHARDBANK_CERTIFICATE_DAYS: '90', SHARDBANK_MONITORING_NAMESPACE: '' });
    expect(
      env(['--set', 'security.certificateDays=30', '--set', 'security.monitoringNamespace=monitoring']),
    ).toMatchObject({ SHARDBANK_CERTIFICATE_DAYS: '30', SHARDBANK_MONITORING_NAMESPACE: 'monitoring' });
  });

  it('accepts global values, as a subchart gets them from its parent', () => {
    expect(helmRun(['template', 't', chart, '--set', 'global.imageRegistry=x', '--set', 'global.other=1'])).toContain(
      'kind: Deployment',
    );
  });

  it('works as a subchart: a parent chart that depends on it templates, passing global and its own values', () => {
    const parent = mkdtempSync(join(tmpdir(), 'shardbank-parent-chart-'));
    try {
      writeFileSync(
        join(parent, 'Chart.yaml'),
        [
          'apiVersion: v2',
          'name: platform',
          'version: 1.0.0',
          'dependencies:',
          '  - name: shardbank-operator',
          '    version: ">=0.0.0-0"',
          `    repository: file://${chart}`,
          '',
        ].join('\n'),
      );
      writeFileSync(
        join(parent, 'values.yaml'),
        ['global:', '  imageRegistry: internal', 'shardbank-operator:', '  replicaCount: 1', ''].join('\n'),
      );
      helmRun(['dependency', 'update', parent]);
      const objects = parseManifests(helmRun(['template', 'plat', parent]));
      const deployment = objects.find(
        (o) => o.kind === 'Deployment' && o.metadata.name === 'plat-shardbank-operator',
      ) as (KubeObject & { spec: { replicas: number } }) | undefined;
      expect(deployment, 'the subchart Deployment, named from the parent release').toBeDefined();
      expect(deployment!.spec.replicas).toBe(1);
      expect(objects.some((o) => o.kind === 'CustomResourceDefinition')).toBe(true);
      // The subchart's schema still applies under the parent.
      expect(() => helmRun(['template', 'plat', parent, '--set', 'shardbank-operator.replicaCount=0'])).toThrow(
        /replicaCount/,
      );
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });

  it('takes fullnameOverride, nameOverride and podLabels as charts usually do (selector labels stay)', () => {
    const named = parseManifests(helmRun(['template', 't', chart, '--set', 'fullnameOverride=bank-op']));
    const deployment = named.find((o) => o.kind === 'Deployment' && o.metadata.name === 'bank-op');
    expect(deployment, 'the operator Deployment is named by fullnameOverride').toBeDefined();
    const renamed = parseManifests(helmRun(['template', 't', chart, '--set', 'nameOverride=ledger']));
    expect(renamed.some((o) => o.kind === 'Deployment' && o.metadata.name === 't-ledger')).toBe(true);
    const labelled = parseManifests(
      helmRun([
        'template',
        't',
        chart,
        '--set',
        'podLabels.team=payments',
        '--set',
        'podLabels.app\\.kubernetes\\.io/instance=x',
      ]),
    );
    const pod = (
      labelled.find((o) => o.kind === 'Deployment') as unknown as {
        spec: { template: { metadata: { labels: Record<string, string> } } };
      }
    ).spec.template.metadata;
    expect(pod.labels.team).toBe('payments');
    // A pod label may not take over a selector label: the Deployment would stop matching its pods.
    expect(pod.labels['app.kubernetes.io/instance']).toBe('t');
    expect(() => helmRun(['template', 't', chart, '--set', 'fullnameOverride=' + 'x'.repeat(64)])).toThrow(
      /fullnameOverride/,
    );
  });

  it('templates the CRD (so helm upgrade upgrades it), kept on uninstall, left out with crd.install=false', () => {
    const crds = parseManifests(helmRun(['template', 't', chart])).filter((o) => o.kind === 'CustomResourceDefinition');
    expect(crds.map((o) => o.metadata.name)).toEqual(['bankclusters.shardbank.io']);
    expect(crds[0]!.metadata.annotations?.['helm.sh/resource-policy']).toBe('keep');
    expect(
      parseManifests(helmRun(['template', 't', chart, '--set', 'crd.install=false'])).some(
        (o) => o.kind === 'CustomResourceDefinition',
      ),
    ).toBe(false);
  });

  it('templates manifests that the API server accepts (server-side dry run), with and without NATS', async () => {
    await tcp.createNamespace('shardbank-system');
    for (const extra of [[], ['--set', 'nats.enabled=false']]) {
      const objects = parseManifests(helmRun(['template', 'sb', chart, '--namespace', 'shardbank-system', ...extra]));
      const kinds = objects.map((o) => o.kind);
      expect(kinds).toEqual(
        expect.arrayContaining([
          'CustomResourceDefinition',
          'ServiceAccount',
          'ClusterRole',
          'ClusterRoleBinding',
          'Role',
          'RoleBinding',
          'Deployment',
        ]),
      );
      // No shared NATS: the operator runs one per BankCluster (SHARDBANK_NATS_IMAGE), or none.
      expect(kinds.includes('StatefulSet')).toBe(false);
      const env = (
        objects.find((o) => o.kind === 'Deployment') as unknown as {
          spec: { template: { spec: { containers: { env: { name: string; value?: string }[] }[] } } };
        }
      ).spec.template.spec.containers[0]!.env;
      expect(env.find((e) => e.name === 'SHARDBANK_NATS_IMAGE')?.value).toBe(
        extra.length === 0 ? 'nats:2.10-alpine' : 'none',
      );
      const applied = await applyManifests(tcp.client, objects, { dryRun: true, namespace: 'shardbank-system' });
      expect(applied).toHaveLength(objects.length);
    }
  });

  it('installs and uninstalls with helm against the API server', async () => {
    const kube = ['--kubeconfig', tcp.kubeconfigPath, '--namespace', 'sb-helm'];
    // This API server has the CRD already (installed by the test control plane, not by helm).
    const out = helmRun(['install', 'sb', chart, '--create-namespace', '--set', 'crd.install=false', ...kube]);
    expect(out).toContain('STATUS: deployed');
    expect(out).toContain('kubectl get bank');
    const deployment = await tcp.client.get(
      { apiVersion: 'apps/v1', kind: 'Deployment', plural: 'deployments', namespaced: true },
      'sb-helm',
      'sb-shardbank-operator',
    );
    expect(deployment.metadata.labels?.['app.kubernetes.io/managed-by']).toBe('Helm');
    expect(helmRun(['uninstall', 'sb', ...kube])).toContain('uninstalled');
  });

  it('has the same operator RBAC rules as deploy/', () => {
    const templated = parseManifests(helmRun(['template', 'sb', chart, '--namespace', 'shardbank-system']));
    expect(rulesOf(templated)).toEqual(rulesOf(readManifests(join(root, 'deploy', 'rbac.yaml'))));
  });
});

describe('deploy/', () => {
  it('kustomization resources and the sample BankCluster are accepted by the API server', async () => {
    const objects = kustomizeResources();
    expect(objects.map((o) => o.kind)).toEqual(
      expect.arrayContaining(['CustomResourceDefinition', 'Namespace', 'ServiceAccount', 'ClusterRole', 'Deployment']),
    );
    // No shared NATS: the operator runs one per BankCluster.
    expect(objects.map((o) => o.kind)).not.toContain('StatefulSet');
    // The namespace for real (a dry run cannot create objects inside a dry-run namespace).
    const [namespaces, rest] = [
      objects.filter((o) => o.kind === 'Namespace'),
      objects.filter((o) => o.kind !== 'Namespace'),
    ];
    await applyManifests(tcp.client, namespaces);
    await applyManifests(tcp.client, rest, { dryRun: true });
    const sample = readManifests(join(root, 'deploy', 'samples', 'bankcluster.yaml'));
    const [created] = await applyManifests(tcp.client, sample, { dryRun: true });
    expect((created as KubeObject & { spec: { shards: number } }).spec.shards).toBe(3);
  });

  it('Dockerfiles are multi-stage, run as non-root and name no registry host', () => {
    const dir = join(root, 'deploy', 'docker');
    const files = readdirSync(dir).filter((f) => f.endsWith('Dockerfile'));
    expect(files.sort()).toEqual(['node.Dockerfile', 'operator.Dockerfile']);
    for (const f of files) {
      const text = readFileSync(join(dir, f), 'utf8');
      const froms = [...text.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]!);
      expect(froms.length, f).toBeGreaterThanOrEqual(2);
      for (const image of froms) expect(namesRegistryHost(image), `${f}: ${image} names a registry host`).toBe(false);
      expect(text).toMatch(/^USER 10001/m);
    }
    expect(readFileSync(join(dir, 'node.Dockerfile'), 'utf8')).toContain('"dist/node/replica/main.js"');
    expect(readFileSync(join(dir, 'operator.Dockerfile'), 'utf8')).toContain('"dist/operator/main.js"');
  });

  it('names images without a registry host anywhere in deploy/ and the chart', () => {
    const texts = [
      JSON.stringify(kustomizeResources()),
      helmRun(['template', 'sb', chart, '--namespace', 'shardbank-system']),
    ];
    for (const text of texts) {
      const images = [...text.matchAll(/"?image"?:\s*"?([^"\s,]+)/g)].map((m) => m[1]!);
      expect(images.length).toBeGreaterThan(0);
      for (const image of images) expect(namesRegistryHost(image), image).toBe(false);
    }
  });
});
