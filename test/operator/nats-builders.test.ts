// The builders of a cluster's NATS (operator/builders/nats.ts) are pure: the managed NATS's
// objects, the replicas' NATS files (the `replica` user, never the watcher's), and the checks
// of the user's Secret for an external NATS, each problem naming the field and the key.
import { describe, expect, it } from 'vitest';
import { defaultBankCluster, validateBankCluster, type BankCluster } from '../../node/cluster/bankcluster.js';
import { generateNatsCredentials, parseNatsCredentials } from '../../node/discovery/nats-security.js';
import {
  buildNatsStatefulSet,
  checkExternalNatsFiles,
  credentialsJson,
  natsDnsNames,
  replicaNatsVolume,
} from '../../operator/builders/nats.js';
import { desiredObjects } from '../../operator/reconcile/desired-objects.js';

function cluster(overrides: Partial<BankCluster['spec']> = {}): BankCluster {
  const c = defaultBankCluster('demo');
  c.metadata = { name: 'demo', namespace: 'money', uid: '1111-2222', generation: 1 };
  c.spec = { ...c.spec, ...overrides };
  return c;
}

const b64 = (s: string | undefined) => Buffer.from(s ?? '', 'base64').toString();
const users = { replica: generateNatsCredentials('replica'), watcher: generateNatsCredentials('watcher') };
const tls = { ca: 'CA PEM', cert: 'CERT PEM' };

describe('the managed NATS', () => {
  it('is one Secret per user, a config with both, a Service and a restricted StatefulSet', () => {
    const objects = desiredObjects(cluster(), { natsImage: 'nats:test' }, { nats: { users, tls } });
    const byName = new Map(objects.map((o) => [`${o.resource.kind}/${o.object.metadata.name}`, o.object]));
    const secret = (name: string) => byName.get(`Secret/${name}`) as unknown as { data: Record<string, string> };
    const replica = parseNatsCredentials(b64(secret('demo-nats-replica').data['credentials.json']), 'replica');
    const watcher = parseNatsCredentials(b64(secret('demo-nats-watcher').data['credentials.json']), 'watcher');
    expect(replica).toEqual(users.replica);
    expect(watcher).toEqual(users.watcher);
    const conf = b64(secret('demo-nats-config').data['nats.conf']);
    expect(conf).toContain(`password: "${users.replica.password}"`);
    expect(conf).toContain(`password: "${users.watcher.password}"`);
    expect(conf).toContain('cert_file: "/etc/nats/tls.crt"');
    // Only this cluster's subjects: one cluster's replicas cannot write another's keys.
    expect(conf).toContain('"$KV.shardbank-leaders.money.demo.*"');
    expect(conf).not.toMatch(/\$KV\.shardbank-leaders\.>/);
    expect(byName.get('Service/demo-nats')).toMatchObject({
      spec: { selector: { 'shardbank.io/nats': 'demo' }, ports: [{ port: 4222 }] },
    });
    const sts = byName.get('StatefulSet/demo-nats') as unknown as ReturnType<typeof buildNatsStatefulSet>;
    expect(sts.metadata!.ownerReferences![0]!.uid).toBe('1111-2222');
    const pod = sts.spec!.template;
    // Not shardbank.io/cluster: the replica Services and the e2e/chaos pod selectors use that.
    expect(pod.metadata!.labels!['shardbank.io/cluster']).toBeUndefined();
    expect(pod.spec!.containers[0]!.image).toBe('nats:test');
    expect(pod.spec!.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.spec!.containers[0]!.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    const sources = pod.spec!.volumes!.find((v) => v.name === 'config')!.projected!.sources!;
    expect(sources.map((s) => s.secret!.name)).toEqual(['demo-nats-config', 'demo-nats-tls']);
    // Another password or certificate restarts it.
    const other = desiredObjects(
      cluster(),
      { natsImage: 'nats:test' },
      { nats: { users, tls: { ...tls, cert: 'NEW' } } },
    ).find((o) => o.object.metadata.name === 'demo-nats' && o.resource.kind === 'StatefulSet')!
      .object as unknown as typeof sts;
    expect(other.spec!.template.metadata!.annotations!['shardbank.io/nats-digest']).not.toBe(
      pod.metadata!.annotations!['shardbank.io/nats-digest'],
    );
  });

  it('gets no StatefulSet before its certificate is usable, and none without spec.nats.managed', () => {
    const names = (o: ReturnType<typeof desiredObjects>) =>
      o.map((x) => `${x.resource.kind}/${x.object.metadata.name}`);
    expect(names(desiredObjects(cluster(), { natsImage: 'n' }, { nats: { users } }))).not.toContain(
      'StatefulSet/demo-nats',
    );
    expect(names(desiredObjects(cluster(), { natsImage: 'n' }, { nats: { users } }))).toContain(
      'Secret/demo-nats-replica',
    );
    expect(names(desiredObjects(cluster({ nats: { managed: false } }), { natsImage: 'n' })).join()).not.toContain(
      'nats',
    );
  });

  it('is reachable through its NetworkPolicy only from the replicas, labelled clients, the operator and monitoring', () => {
    const objects = desiredObjects(
      cluster(),
      { natsImage: 'n', operatorNamespace: 'shardbank-system', monitoringNamespace: 'prom' },
      { nats: { users, tls } },
    );
    const policy = objects.find((o) => o.resource.kind === 'NetworkPolicy' && o.object.metadata.name === 'demo.nats')!
      .object as unknown as { spec: unknown };
    expect(policy.spec).toEqual({
      podSelector: { matchLabels: { 'shardbank.io/nats': 'demo' } },
      policyTypes: ['Ingress'],
      ingress: [
        {
          from: [
            {
              podSelector: {
                matchLabels: { 'shardbank.io/cluster': 'demo', 'app.kubernetes.io/component': 'replica' },
              },
            },
            { podSelector: { matchLabels: { 'shardbank.io/client': 'demo' } } },
            { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'shardbank-system' } } },
          ],
          ports: [{ protocol: 'TCP', port: 4222 }],
        },
        {
          from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'prom' } } }],
          ports: [{ protocol: 'TCP', port: 8222 }],
        },
      ],
    });
  });

  it('names its Service DNS names in its certificate', () => {
    expect(natsDnsNames(cluster())).toEqual([
      'demo-nats.money.svc',
      'demo-nats.money.svc.cluster.local',
      'demo-nats.money',
      'demo-nats',
    ]);
  });
});

describe("the replicas' NATS files", () => {
  it('are the CA and the replica user, from the operator (managed) or the user Secret (external), never the watcher', () => {
    expect(replicaNatsVolume(cluster(), 'nats:2')!.projected!.sources).toEqual([
      { secret: { name: 'demo-nats-tls', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
      { secret: { name: 'demo-nats-replica', items: [{ key: 'credentials.json', path: 'credentials.json' }] } },
    ]);
    // spec.tls: the NATS certificate comes from the user's issuer too.
    expect(
      replicaNatsVolume(cluster({ tls: { secretNamePrefix: 'certs' } }), 'nats:2')!.projected!.sources![0]!.secret!
        .name,
    ).toBe('certs-nats');
    const external = cluster({
      nats: { url: 'tls://nats.platform:4222', managed: false, credentialsSecret: 'platform' },
    });
    expect(replicaNatsVolume(external, undefined)!.projected!.sources).toEqual([
      {
        secret: {
          name: 'platform',
          items: [
            { key: 'ca.crt', path: 'ca.crt' },
            { key: 'replica.json', path: 'credentials.json' },
          ],
        },
      },
    ]);
    expect(replicaNatsVolume(cluster({ nats: { managed: false } }), 'nats:2')).toBeUndefined();
  });
});

describe('an external NATS Secret', () => {
  const good = {
    'ca.crt': '-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n',
    'replica.json': credentialsJson(users.replica),
    'watcher.json': credentialsJson(users.watcher),
  };
  it('is usable with a PEM CA and two different users', () => {
    expect(checkExternalNatsFiles('platform', good)).toMatchObject({ ok: true, watcher: users.watcher });
  });
  const bad: [string, Record<string, string> | undefined, string][] = [
    ['missing', undefined, 'Secret platform not found'],
    ['without a CA', { ...good, 'ca.crt': 'nope' }, 'has no ca.crt'],
    [
      'without the replica user',
      { 'ca.crt': good['ca.crt'], 'watcher.json': good['watcher.json'] },
      'has no replica.json',
    ],
    ['with a broken watcher file', { ...good, 'watcher.json': '{"user": "w"}' }, 'watcher.json: "password"'],
    ['with one user for both', { ...good, 'watcher.json': good['replica.json'] }, 'name the same user replica'],
  ];
  for (const [what, files, problem] of bad) {
    it(`is refused ${what}, naming spec.nats.credentialsSecret`, () => {
      const check = checkExternalNatsFiles('platform', files);
      expect(check.ok).toBe(false);
      const text = 'problem' in check ? check.problem : '';
      expect(text).toContain('spec.nats.credentialsSecret: Secret platform');
      expect(text).toContain(problem);
    });
  }
  it('is named in the spec only with a url (shardbank up -f and the CRD say the same)', () => {
    const r = validateBankCluster({
      apiVersion: 'shardbank.io/v1alpha1',
      kind: 'BankCluster',
      metadata: { name: 'demo' },
      spec: { nats: { credentialsSecret: 'platform' } },
    });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.errors.map((e) => e.message).join()).toContain('spec.nats.credentialsSecret: is only for');
  });
});
