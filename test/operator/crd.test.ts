// The BankCluster CRD on a real kube-apiserver says the same as the shared TypeScript
// validation (node/cluster/bankcluster.ts): same defaults, same rejected specs naming the
// same fields, same immutability messages. The committed YAML is the generated one.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_SPEC,
  RULE_MESSAGES,
  validateBankCluster,
  validateBankClusterUpdate,
  type BankClusterSpec,
} from '../../node/cluster/bankcluster.js';
import { CRD_FILES, renderCrdYaml } from '../../operator/crd/render-crd.js';
import { KubeApiError } from '../../operator/kube/api-error.js';
import { startTestControlPlane, RESOURCES, type TestControlPlane } from './support/control-plane.js';
import { createBankCluster, getBankCluster } from './support/bank-clusters.js';
import { readManifests, applyManifests } from './support/manifests.js';

const root = join(import.meta.dirname, '..', '..');
const NS = 'crd';
let tcp: TestControlPlane;

beforeAll(async () => {
  tcp = await startTestControlPlane();
  await tcp.createNamespace(NS);
});

afterAll(async () => {
  await tcp?.stop();
});

async function serverRejection(name: string, spec: Record<string, unknown>): Promise<string> {
  try {
    await createBankCluster(tcp.client, NS, name, spec);
  } catch (err) {
    expect(err).toBeInstanceOf(KubeApiError);
    expect((err as KubeApiError).statusCode).toBe(422);
    return (err as KubeApiError).message;
  }
  throw new Error(`the API server accepted ${JSON.stringify(spec)}`);
}

function tsRejection(name: string, spec: Record<string, unknown>): string[] {
  const r = validateBankCluster({ apiVersion: 'shardbank.io/v1alpha1', kind: 'BankCluster', metadata: { name }, spec });
  expect(r.ok, `TypeScript validation accepted ${JSON.stringify(spec)}`).toBe(false);
  return r.ok ? [] : r.errors.map((e) => e.message);
}

describe('BankCluster CRD', () => {
  it('is generated from the TypeScript rules: the committed YAML files are current', () => {
    for (const file of CRD_FILES) {
      expect(readFileSync(join(root, file), 'utf8'), `${file} is stale: run npm run crd:generate`).toBe(
        renderCrdYaml(file),
      );
    }
  });

  it('is served with short name bank, a status subresource and the printer columns', async () => {
    const discovery = await tcp.client.request<{
      resources: { name: string; shortNames?: string[]; namespaced: boolean }[];
    }>({ method: 'GET', path: '/apis/shardbank.io/v1alpha1' });
    const main = discovery.resources.find((r) => r.name === 'bankclusters');
    expect(main?.shortNames).toEqual(['bank']);
    expect(main?.namespaced).toBe(true);
    expect(discovery.resources.some((r) => r.name === 'bankclusters/status')).toBe(true);
    const crd = await tcp.client.request<{ spec: { versions: { additionalPrinterColumns: { name: string }[] }[] } }>({
      method: 'GET',
      path: '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/bankclusters.shardbank.io',
    });
    expect(crd.spec.versions[0]!.additionalPrinterColumns.map((c) => c.name)).toEqual([
      'Shards',
      'Replicas',
      'Ready',
      'Leaders',
      'Phase',
      'Age',
    ]);
  });

  it('accepts the sample BankCluster', async () => {
    const [created] = await applyManifests(
      tcp.client,
      readManifests(join(root, 'deploy', 'samples', 'bankcluster.yaml')),
      { namespace: NS },
    );
    expect(created!.metadata.uid).toBeDefined();
  });

  it('fills in the same defaults as the TypeScript validation', async () => {
    await createBankCluster(tcp.client, NS, 'defaults', {});
    const server = await getBankCluster(tcp.client, NS, 'defaults');
    const spec = server.spec as unknown as BankClusterSpec;
    for (const key of [
      'shards',
      'replicasPerShard',
      'itemsPerShard',
      'initialBalance',
      'maxTransferAmount',
      'image',
      'imagePullPolicy',
      'storage',
      'paused',
    ] as const) {
      expect(spec[key], key).toEqual(DEFAULT_SPEC[key]);
    }
    // nats.managed has no schema default: without a url it means managed (the TS default).
    expect(spec.nats).toEqual({});
    const reparsed = validateBankCluster(server);
    expect(reparsed.ok && reparsed.value.spec).toEqual(DEFAULT_SPEC);
  });

  const invalid: [string, Record<string, unknown>, string, string | undefined][] = [
    ['even replicas', { replicasPerShard: 4 }, 'spec.replicasPerShard', RULE_MESSAGES.replicasPerShardOdd],
    ['too many replicas', { replicasPerShard: 9 }, 'spec.replicasPerShard', undefined],
    ['zero replicas', { replicasPerShard: 0 }, 'spec.replicasPerShard', undefined],
    ['zero shards', { shards: 0 }, 'spec.shards', undefined],
    ['too many shards', { shards: 65 }, 'spec.shards', undefined],
    ['no items', { itemsPerShard: 0 }, 'spec.itemsPerShard', undefined],
    ['negative balance', { initialBalance: -1 }, 'spec.initialBalance', undefined],
    ['bad storage size', { storage: { size: 'lots' } }, 'spec.storage.size', RULE_MESSAGES.storageSize],
    ['zero storage size', { storage: { size: '0Gi' } }, 'spec.storage.size', RULE_MESSAGES.storageSizePositive],
    ['bad NATS url', { nats: { url: 'http://nats:4222' } }, 'spec.nats.url', RULE_MESSAGES.natsUrl],
    ['bad pull policy', { imagePullPolicy: 'Sometimes' }, 'spec.imagePullPolicy', undefined],
    [
      'NATS credentials without a NATS url',
      { nats: { credentialsSecret: 'mine' } },
      'spec.nats.credentialsSecret',
      RULE_MESSAGES.natsCredentialsSecretWithoutUrl,
    ],
    [
      'a bad NATS credentials Secret name',
      { nats: { url: 'nats://nats:4222', credentialsSecret: 'Mine' } },
      'spec.nats.credentialsSecret',
      RULE_MESSAGES.natsCredentialsSecret,
    ],
    [
      'a client name with a slash',
      { clients: [{ name: 'a/b', role: 'read' }] },
      'spec.clients[0].name',
      RULE_MESSAGES.clientName,
    ],
    ['an unknown client role', { clients: [{ name: 'a', role: 'admin' }] }, 'spec.clients[0].role', undefined],
    [
      'a client listed twice',
      {
        clients: [
          { name: 'a', role: 'read' },
          { name: 'a', role: 'transfer' },
        ],
      },
      'spec.clients',
      RULE_MESSAGES.clientNamesUnique,
    ],
    [
      'clients with spec.tls',
      { tls: { secretNamePrefix: 'certs' }, clients: [{ name: 'a', role: 'read' }] },
      'spec.clients',
      RULE_MESSAGES.clientsWithUserTls,
    ],
    [
      'the old spec.tls.secretName',
      { tls: { secretName: 'certs' } },
      'spec.tls.secretName',
      RULE_MESSAGES.tlsSecretName,
    ],
    [
      'a bad secretNamePrefix',
      { tls: { secretNamePrefix: 'Certs' } },
      'spec.tls.secretNamePrefix',
      RULE_MESSAGES.tlsSecretNamePrefix,
    ],
  ];
  // The API server alone: `shardbank up -f` runs its own NATS files for an external url.
  it('rejects an external NATS url without spec.nats.credentialsSecret, naming the field', async () => {
    const server = await serverRejection('bad-nats-without-credentials', { nats: { url: 'nats://nats:4222' } });
    expect(server).toContain('spec.nats.credentialsSecret: ');
    expect(server).toContain(RULE_MESSAGES.natsCredentialsSecretRequired);
  });

  for (const [what, spec, field, message] of invalid) {
    it(`rejects ${what} in both places, naming ${field}`, async () => {
      const server = await serverRejection(`bad-${what.replaceAll(' ', '-').toLowerCase()}`, spec);
      expect(server).toContain(`${field}: `);
      const ts = tsRejection('bad', spec);
      expect(
        ts.some((m) => m.startsWith(`${field}: `)),
        ts.join('; '),
      ).toBe(true);
      if (message) {
        expect(server).toContain(message);
        expect(ts.some((m) => m.includes(message))).toBe(true);
      }
    });
  }

  it('rejects a name longer than 40 characters in both places', async () => {
    const name = 'a'.repeat(41);
    const server = await serverRejection(name, {});
    expect(server).toContain(RULE_MESSAGES.metadataName);
    expect(tsRejection(name, {}).join()).toContain(RULE_MESSAGES.metadataName);
  });

  const immutable: [string, Record<string, unknown>, string, string][] = [
    ['shards', { shards: 4 }, 'spec.shards', RULE_MESSAGES.shardsImmutable],
    ['itemsPerShard', { itemsPerShard: 10 }, 'spec.itemsPerShard', RULE_MESSAGES.itemsPerShardImmutable],
    ['initialBalance', { initialBalance: 11 }, 'spec.initialBalance', RULE_MESSAGES.initialBalanceImmutable],
    ['storage.size', { storage: { size: '2Gi' } }, 'spec.storage.size', RULE_MESSAGES.storageImmutable],
    [
      'storage.storageClassName',
      { storage: { storageClassName: 'fast' } },
      'spec.storage.storageClassName',
      RULE_MESSAGES.storageImmutable,
    ],
  ];
  for (const [what, patch, field, message] of immutable) {
    it(`refuses to change ${what} after creation, with the same message as the TypeScript rule`, async () => {
      const name = `imm-${what.replace('.', '-').toLowerCase()}`;
      const created = await createBankCluster(tcp.client, NS, name, {});
      let serverMessage = '';
      try {
        await tcp.client.mergePatch(RESOURCES.bankCluster, NS, name, { spec: patch });
      } catch (err) {
        serverMessage = (err as Error).message;
      }
      expect(serverMessage).toContain(`${field}: Invalid value`);
      expect(serverMessage).toContain(message);
      const before = validateBankCluster(created);
      const after = validateBankCluster({
        ...created,
        spec: {
          ...created.spec,
          ...patch,
          storage: { ...(created.spec.storage as object), ...((patch.storage as object) ?? {}) },
        },
      });
      expect(before.ok && after.ok).toBe(true);
      if (before.ok && after.ok) {
        expect(validateBankClusterUpdate(before.value.spec, after.value.spec).map((e) => e.message)).toEqual([
          `${field}: ${message}`,
        ]);
      }
    });
  }

  it('allows an online change of replicasPerShard to another odd size, in both places, and refuses an even one naming the field', async () => {
    const created = await createBankCluster(tcp.client, NS, 'resize', { replicasPerShard: 3 });
    const grown = await tcp.client.mergePatch<
      { spec: Record<string, unknown> } & import('../../operator/kube/kube-object.js').KubeObject
    >(RESOURCES.bankCluster, NS, 'resize', { spec: { replicasPerShard: 5 } });
    expect(grown.spec.replicasPerShard).toBe(5);
    const before = validateBankCluster(created);
    const after = validateBankCluster(grown);
    expect(before.ok && after.ok).toBe(true);
    if (before.ok && after.ok) expect(validateBankClusterUpdate(before.value.spec, after.value.spec)).toEqual([]);
    let serverMessage = '';
    try {
      await tcp.client.mergePatch(RESOURCES.bankCluster, NS, 'resize', { spec: { replicasPerShard: 4 } });
    } catch (err) {
      serverMessage = (err as Error).message;
    }
    expect(serverMessage).toContain('spec.replicasPerShard: Invalid value');
    expect(serverMessage).toContain(RULE_MESSAGES.replicasPerShardOdd);
    const even = validateBankCluster({ ...grown, spec: { ...grown.spec, replicasPerShard: 4 } });
    expect(even.ok ? [] : even.errors.map((e) => e.message)).toEqual([
      `spec.replicasPerShard: ${RULE_MESSAGES.replicasPerShardOdd}, got 4`,
    ]);
  });

  it('allows what may change: image, resources, paused', async () => {
    await createBankCluster(tcp.client, NS, 'mutable', {});
    const patched = await tcp.client.mergePatch<
      { spec: Record<string, unknown> } & import('../../operator/kube/kube-object.js').KubeObject
    >(RESOURCES.bankCluster, NS, 'mutable', {
      spec: { image: 'shardbank/node:0.2.0', resources: { requests: { cpu: '1' } }, paused: true },
    });
    expect(patched.spec.image).toBe('shardbank/node:0.2.0');
    expect(patched.spec.paused).toBe(true);
  });
});
