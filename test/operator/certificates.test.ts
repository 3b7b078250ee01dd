// The certificate rules and builders without an API server: what a replica's and a client's
// certificate must say, the checks applied to one found in a Secret, the NetworkPolicy, and
// the spec fields spec.tls and spec.clients (errors naming the field).
import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { defaultBankCluster, validateBankCluster, type BankCluster } from '../../node/cluster/bankcluster.js';
import { authorizePeer } from '../../node/security/identity.js';
import { createCa, issueLeafCertificate } from '../../node/security/x509.js';
import {
  buildClientSecret,
  buildReplicaSecret,
  checkLeaf,
  clientUri,
  replicaDnsNames,
  replicaUri,
  secretFiles,
  tlsDigest,
  trustOf,
} from '../../operator/builders/certificates.js';
import { buildNetworkPolicy } from '../../operator/builders/network-policy.js';
import { buildStatefulSet } from '../../operator/builders/statefulset.js';
import { PEER_ADDRESS_TEMPLATE } from '../../operator/builders/ports.js';

function cluster(overrides: Partial<BankCluster['spec']> = {}): BankCluster {
  const c = defaultBankCluster('demo');
  c.metadata = { name: 'demo', namespace: 'money', uid: '1111-2222', generation: 1 };
  c.spec = { ...c.spec, ...overrides };
  return c;
}

const DAY = 86_400_000;
const ca = createCa('test CA', { days: 30 });
const otherCa = createCa('other CA', { days: 30 });
const trust = [new X509Certificate(ca.certPem)];

function leaf(
  uris: string[],
  options: { dnsNames?: string[]; issuer?: typeof ca; lifetimeMs?: number; now?: Date } = {},
): Record<string, string> {
  const issuer = options.issuer ?? ca;
  const l = issueLeafCertificate(issuer, {
    commonName: 'x',
    subjectAltNames: { uris, dnsNames: options.dnsNames ?? [] },
    server: true,
    lifetimeMs: options.lifetimeMs ?? 9 * DAY,
    ...(options.now ? { now: options.now } : {}),
  });
  return { 'ca.crt': issuer.certPem, 'tls.crt': l.certPem, 'tls.key': l.keyPem };
}

describe('replica and client identities', () => {
  it('names the replica as the peer protocol expects, with the DNS names its peers and clients dial', () => {
    const c = cluster();
    expect(replicaUri(c, 1, 2)).toBe('shardbank://money/demo/shard/1/replica/2');
    expect(clientUri(c, { name: 'payments', role: 'transfer' })).toBe(
      'shardbank://money/demo/client/transfer/payments',
    );
    // The replica's own policy accepts what the operator puts in the certificate.
    const policy = { namespace: 'money', cluster: 'demo', shards: 3, replicasPerShard: 3 };
    expect(authorizePeer(`URI:${replicaUri(c, 1, 2)}`, policy)).toEqual({
      identity: { kind: 'replica', namespace: 'money', cluster: 'demo', shard: 1, ordinal: 2 },
    });
    // The address peers dial (PEER_ADDRESS_TEMPLATE) is among the DNS names.
    const dialled = PEER_ADDRESS_TEMPLATE.replaceAll('{cluster}', 'demo')
      .replaceAll('{shard}', '1')
      .replaceAll('{ordinal}', '2')
      .replaceAll('{namespace}', 'money')
      .split(':')[0]!;
    expect(replicaDnsNames(c, 1, 2)).toContain(dialled);
    expect(replicaDnsNames(c, 1, 2)).toContain('demo-client.money.svc');
  });

  it('keeps Secrets in the cert-manager layout and the StatefulSet pointing at the same names', () => {
    const c = cluster();
    const files = { ca: ca.certPem, cert: 'CERT', key: 'KEY' };
    const secret = buildReplicaSecret(c, 1, 2, files);
    expect(secret.metadata!.name).toBe('demo-s1-2-tls');
    expect(secret.type).toBe('kubernetes.io/tls');
    expect(secretFiles(secret as { data: Record<string, string> })).toEqual({
      'ca.crt': ca.certPem,
      'tls.crt': 'CERT',
      'tls.key': 'KEY',
    });
    const client = buildClientSecret(c, { name: 'app', role: 'read' }, files);
    expect(client.metadata!.name).toBe('demo-client-app');
    expect(client.metadata!.labels!['shardbank.io/client-name']).toBe('app');
    const volume = buildStatefulSet(c, 1).spec!.template.spec!.volumes!.find((v) => v.name === 'tls')!;
    expect(volume.projected!.sources!.map((s) => s.secret!.name)).toContain('demo-s1-2-tls');
    expect(tlsDigest([{ 'tls.crt': 'a' }])).not.toBe(tlsDigest([{ 'tls.crt': 'b' }]));
  });
});

describe('checkLeaf', () => {
  const uri = 'shardbank://money/demo/shard/0/replica/1';
  const now = Date.now();

  it('accepts a current certificate and says when to renew it (two thirds of its lifetime)', () => {
    const check = checkLeaf(leaf([uri], { dnsNames: ['a.b'] }), trust, { uri, dnsNames: ['a.b'] }, now);
    expect(check.ok).toBe(true);
    if (!check.ok) return;
    expect(check.renewAtMs - check.notBeforeMs).toBe(Math.floor(((check.notAfterMs - check.notBeforeMs) * 2) / 3));
  });

  const cases: [string, () => Record<string, string>, RegExp][] = [
    ['no key', () => ({ ...leaf([uri]), 'tls.key': '' }), /has no tls\.key/],
    ['another key', () => ({ ...leaf([uri]), 'tls.key': leaf([uri])['tls.key']! }), /not the key of tls\.crt/],
    ['another CA', () => leaf([uri], { issuer: otherCa }), /not signed by the CA/],
    ['another identity', () => leaf(['shardbank://money/demo/shard/0/replica/2']), /exactly one shardbank identity/],
    [
      'two identities',
      () => leaf([uri, 'shardbank://money/demo/client/read/x']),
      /exactly one shardbank identity, shardbank:\/\/money\/demo\/shard\/0\/replica\/1/,
    ],
    ['another namespace', () => leaf(['shardbank://other/demo/shard/0/replica/1']), /exactly one shardbank identity/],
    ['expired', () => leaf([uri], { lifetimeMs: DAY, now: new Date(now - 3 * DAY) }), /expired at/],
    ['not a certificate', () => ({ ...leaf([uri]), 'tls.crt': 'junk' }), /not a PEM certificate/],
  ];
  for (const [what, files, problem] of cases) {
    it(`refuses ${what}, saying what is wrong`, () => {
      const check = checkLeaf(files(), trust, { uri }, now);
      expect(check.ok).toBe(false);
      expect(!check.ok && check.problem).toMatch(problem);
    });
  }

  it('asks for the DNS names the operator puts in its own certificates', () => {
    const check = checkLeaf(leaf([uri], { dnsNames: ['a'] }), trust, { uri, dnsNames: ['a', 'b'] }, now);
    expect(!check.ok && check.problem).toBe('tls.crt lacks DNS names b');
  });

  it('reads a CA bundle and refuses a ca.crt that is not a CA', () => {
    expect('trust' in trustOf(ca.certPem + otherCa.certPem) && trustOf(ca.certPem + otherCa.certPem)).toMatchObject({
      trust: [{}, {}],
    });
    expect(trustOf(leaf([uri])['tls.crt'])).toMatchObject({ problem: expect.stringMatching(/not a CA/) });
    expect(trustOf(undefined)).toEqual({ problem: 'has no ca.crt' });
  });
});

describe('buildNetworkPolicy', () => {
  it('lets only the cluster replicas and labelled clients reach gRPC, and adds monitoring to HTTP', () => {
    const policy = buildNetworkPolicy(cluster(), { monitoringNamespace: 'monitoring' });
    const replicas = {
      podSelector: { matchLabels: { 'shardbank.io/cluster': 'demo', 'app.kubernetes.io/component': 'replica' } },
    };
    const clients = { podSelector: { matchLabels: { 'shardbank.io/client': 'demo' } } };
    expect(policy.metadata.name).toBe('demo');
    expect(policy.metadata.namespace).toBe('money');
    expect(policy.spec).toEqual({
      podSelector: replicas.podSelector,
      policyTypes: ['Ingress'],
      ingress: [
        { from: [replicas, clients], ports: [{ protocol: 'TCP', port: 50051 }] },
        {
          from: [
            replicas,
            clients,
            { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } },
          ],
          ports: [{ protocol: 'TCP', port: 8080 }],
        },
      ],
    });
    // The replica pods carry the labels the policy selects (else it would protect nothing).
    const labels = buildStatefulSet(cluster(), 0).spec!.template.metadata!.labels!;
    for (const [k, v] of Object.entries(replicas.podSelector.matchLabels)) expect(labels[k]).toBe(v);
    expect(buildNetworkPolicy(cluster()).spec.ingress[1]!.from).toEqual([replicas, clients]);
    // The operator's namespace reaches gRPC (its membership driver), not HTTP.
    const withOperator = buildNetworkPolicy(cluster(), { operatorNamespace: 'shardbank-system' }).spec.ingress;
    expect(withOperator[0]!.from).toEqual([
      replicas,
      clients,
      { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'shardbank-system' } } },
    ]);
    expect(withOperator[1]!.from).toEqual([replicas, clients]);
  });

  it('makes pods that pass Pod Security restricted', () => {
    const pod = buildStatefulSet(cluster(), 0).spec!.template.spec!;
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    for (const c of pod.containers) {
      expect(c.securityContext).toMatchObject({
        allowPrivilegeEscalation: false,
        runAsNonRoot: true,
        capabilities: { drop: ['ALL'] },
      });
      expect(c.securityContext?.privileged).toBeUndefined();
    }
    // restricted allows only these volume types.
    for (const v of pod.volumes ?? [])
      expect(Object.keys(v).filter((k) => k !== 'name')).toEqual([
        expect.stringMatching(/^(emptyDir|projected|secret|configMap|persistentVolumeClaim)$/),
      ]);
    expect(pod.hostNetwork ?? false).toBe(false);
  });
});

describe('spec.tls and spec.clients', () => {
  const errors = (spec: Record<string, unknown>) => {
    const r = validateBankCluster({ metadata: { name: 'demo' }, spec });
    return r.ok ? [] : r.errors.map((e) => e.message);
  };

  it('accepts clients with a role and a secretNamePrefix', () => {
    const r = validateBankCluster({
      metadata: { name: 'demo' },
      spec: {
        clients: [
          { name: 'payments', role: 'transfer' },
          { name: 'reports', role: 'read' },
        ],
      },
    });
    expect(r.ok && r.value.spec.clients).toEqual([
      { name: 'payments', role: 'transfer' },
      { name: 'reports', role: 'read' },
    ]);
    const t = validateBankCluster({ metadata: { name: 'demo' }, spec: { tls: { secretNamePrefix: 'demo-certs' } } });
    expect(t.ok && t.value.spec.tls).toEqual({ secretNamePrefix: 'demo-certs' });
  });

  it('names the field of each mistake', () => {
    expect(errors({ clients: [{ name: 'Pay/ments', role: 'transfer' }] })).toEqual([
      'spec.clients[0].name: must be a lowercase DNS label of at most 63 characters, got "Pay/ments"',
    ]);
    expect(errors({ clients: [{ name: 'a', role: 'admin' }] })).toEqual([
      'spec.clients[0].role: must be one of read, transfer, got "admin"',
    ]);
    expect(
      errors({
        clients: [
          { name: 'a', role: 'read' },
          { name: 'a', role: 'transfer' },
        ],
      }),
    ).toEqual(['spec.clients: client names must be unique, a is listed twice']);
    expect(errors({ clients: [{ name: 'a', role: 'read', ttl: 3 }] })).toEqual([
      'spec.clients[0].ttl: unknown field; known fields here: name, role',
    ]);
    expect(errors({ clients: 'a' })).toEqual(['spec.clients: must be a list of {name, role}']);
    expect(errors({ tls: { secretName: 'x' } })[0]).toMatch(
      /^spec\.tls\.secretName: is replaced by spec\.tls\.secretNamePrefix/,
    );
    expect(errors({ tls: { secretNamePrefix: 'UPPER' } })[0]).toMatch(/^spec\.tls\.secretNamePrefix: must be/);
    expect(errors({ tls: { secretNamePrefix: 'x' }, clients: [{ name: 'a', role: 'read' }] })[0]).toMatch(
      /^spec\.clients: the operator issues client certificates only with its own CA/,
    );
  });
});
