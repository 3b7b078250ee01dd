// The operator's certificates against a real kube-apiserver: its own CA, one certificate per
// replica and per declared client, all owned; the NetworkPolicy; certificates replaced when
// deleted or tampered with (and the shard's pod template digest moving with them); renewal
// at two thirds of the lifetime (a fake clock); user-provided spec.tls Secrets checked, their
// problems named in the status and an event, the StatefulSets made only once they are usable.
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateBankCluster, type BankCluster } from '../../node/cluster/bankcluster.js';
import { createCa, issueLeafCertificate } from '../../node/security/x509.js';
import { TLS_DIGEST_ANNOTATION } from '../../operator/builders/certificates.js';
import type { KubeObject } from '../../operator/kube/kube-object.js';
import type { Operator } from '../../operator/operator.js';
import { Certificates } from '../../operator/reconcile/certificates.js';
import { condition, createBankCluster, getBankCluster, getOrUndefined } from './support/bank-clusters.js';
import { startTestControlPlane, RESOURCES, type TestControlPlane } from './support/control-plane.js';
import { eventually } from './support/eventually.js';
import { OPERATOR_NAMESPACE, startTestOperator } from './support/operator.js';

const NS = 'bank';
const DAY = 86_400_000;
type Secret = KubeObject & { type?: string; data?: Record<string, string> };
type Sts = KubeObject & {
  spec: {
    template: {
      metadata: { annotations?: Record<string, string> };
      spec: { volumes: { name: string; projected?: { sources: { secret: { name: string } }[] } }[] };
    };
  };
};

let tcp: TestControlPlane;
let operator: Operator;

beforeAll(async () => {
  tcp = await startTestControlPlane();
  await tcp.createNamespace(OPERATOR_NAMESPACE);
  await tcp.createNamespace(NS);
  operator = await startTestOperator(tcp);
});

afterAll(async () => {
  await operator?.stop();
  await tcp?.stop();
});

const file = (s: Secret | undefined, key: string) => Buffer.from(s?.data?.[key] ?? '', 'base64').toString();
const secret = (name: string) => getOrUndefined<Secret>(tcp.client, RESOURCES.secret, NS, name);
const digestOf = async (sts: string) =>
  (await tcp.client.get<Sts>(RESOURCES.statefulSet, NS, sts)).spec.template.metadata.annotations?.[
    TLS_DIGEST_ANNOTATION
  ];

/** The leaf in `s` verifies under the cluster CA in `ca`. */
function signedBy(s: Secret, ca: Secret): boolean {
  const leaf = new X509Certificate(file(s, 'tls.crt'));
  return leaf.verify(new X509Certificate(file(ca, 'ca.crt')).publicKey);
}

describe('operator-made certificates', () => {
  let uid = '';

  it('issues a CA (kept, like the PVCs, when the BankCluster goes) and one owned certificate per replica and per client; a NetworkPolicy; pods mount their shard', async () => {
    const created = await createBankCluster(tcp.client, NS, 'secure', {
      shards: 2,
      replicasPerShard: 3,
      clients: [
        { name: 'app', role: 'transfer' },
        { name: 'audit', role: 'read' },
      ],
    });
    uid = created.metadata.uid!;
    const owned = (o: KubeObject) => o.metadata.ownerReferences?.some((r) => r.uid === uid && r.controller);
    const ca = await eventually('Secret secure-ca', () => secret('secure-ca'));
    // Not owned, so a BankCluster re-created on its PVCs finds the same CA (applications'
    // mounted ca.crt and client certificates stay valid); labelled as this cluster's CA.
    expect(ca.metadata.ownerReferences ?? []).toEqual([]);
    expect(ca.metadata.labels).toMatchObject({ 'shardbank.io/cluster': 'secure', 'app.kubernetes.io/component': 'ca' });
    expect(new X509Certificate(file(ca, 'ca.crt')).ca).toBe(true);
    expect(file(ca, 'ca.key')).toContain('PRIVATE KEY');
    for (const shard of [0, 1]) {
      for (const ordinal of [0, 1, 2]) {
        const s = await eventually(`Secret secure-s${shard}-${ordinal}-tls`, () =>
          secret(`secure-s${shard}-${ordinal}-tls`),
        );
        expect(owned(s)).toBe(true);
        expect(s.type).toBe('kubernetes.io/tls');
        expect(Object.keys(s.data!).sort()).toEqual(['ca.crt', 'tls.crt', 'tls.key']);
        expect(file(s, 'ca.crt')).toBe(file(ca, 'ca.crt'));
        expect(signedBy(s, ca)).toBe(true);
        const san = new X509Certificate(file(s, 'tls.crt')).subjectAltName!;
        expect(san).toContain(`URI:shardbank://bank/secure/shard/${shard}/replica/${ordinal}`);
        expect(san).toContain(`DNS:secure-s${shard}-${ordinal}.secure-s${shard}.bank.svc`);
      }
    }
    const app = await eventually('Secret secure-client-app', () => secret('secure-client-app'));
    const appCert = new X509Certificate(file(app, 'tls.crt'));
    expect(appCert.subjectAltName).toBe('URI:shardbank://bank/secure/client/transfer/app');
    expect(appCert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(signedBy(app, ca)).toBe(true);
    const audit = await eventually('Secret secure-client-audit', () => secret('secure-client-audit'));
    expect(new X509Certificate(file(audit, 'tls.crt')).subjectAltName).toBe(
      'URI:shardbank://bank/secure/client/read/audit',
    );

    const policy = await eventually('NetworkPolicy secure', () =>
      getOrUndefined<KubeObject & { spec: Record<string, unknown> }>(tcp.client, RESOURCES.networkPolicy, NS, 'secure'),
    );
    expect(owned(policy)).toBe(true);
    expect(policy.spec.podSelector).toEqual({
      matchLabels: { 'shardbank.io/cluster': 'secure', 'app.kubernetes.io/component': 'replica' },
    });
    expect(JSON.stringify(policy.spec.ingress)).toContain('"shardbank.io/client":"secure"');

    const sts = await eventually('StatefulSet secure-s1', () =>
      getOrUndefined<Sts>(tcp.client, RESOURCES.statefulSet, NS, 'secure-s1'),
    );
    const tls = sts.spec.template.spec.volumes.find((v) => v.name === 'tls')!;
    // Every pod slot a configuration can use (9), optional: the template does not follow the size.
    expect(tls.projected!.sources.map((s) => s.secret.name)).toEqual(
      [0, 1, 2, 3, 4, 5, 6, 7, 8].map((o) => `secure-s1-${o}-tls`),
    );
    expect(sts.spec.template.metadata.annotations?.[TLS_DIGEST_ANNOTATION]).toMatch(/^[0-9a-f]{16}$/);
    const o = await eventually('CertificatesReady', async () => {
      const c = await getBankCluster(tcp.client, NS, 'secure');
      return condition(c, 'CertificatesReady')?.status === 'True' ? c : undefined;
    });
    expect(condition(o, 'CertificatesReady')?.reason).toBe('IssuedByOperator');
  });

  it('replaces a deleted or tampered certificate (its shard digest moves, the others stay), and drops a removed client', async () => {
    const ca = (await secret('secure-ca'))!;
    const digest0 = await digestOf('secure-s0');
    const digest1 = await digestOf('secure-s1');
    const old = (await secret('secure-s1-2-tls'))!;
    await tcp.client.delete(RESOURCES.secret, NS, 'secure-s1-2-tls');
    const replaced = await eventually('secure-s1-2-tls re-issued', async () => {
      const s = await secret('secure-s1-2-tls');
      return s && s.metadata.uid !== old.metadata.uid ? s : undefined;
    });
    expect(signedBy(replaced, ca)).toBe(true);
    expect(file(replaced, 'tls.key')).not.toBe(file(old, 'tls.key'));
    await eventually('shard 1 digest moved', async () =>
      (await digestOf('secure-s1')) !== digest1 ? true : undefined,
    );
    expect(await digestOf('secure-s0')).toBe(digest0);

    // A certificate of another CA with the right identity: not the cluster's, so replaced.
    const rogueCa = createCa('rogue', { days: 1 });
    const rogue = issueLeafCertificate(rogueCa, {
      commonName: 'rogue',
      subjectAltNames: { uris: ['shardbank://bank/secure/shard/0/replica/0'] },
      server: true,
      lifetimeMs: DAY,
    });
    await tcp.client.mergePatch(RESOURCES.secret, NS, 'secure-s0-0-tls', {
      data: { 'tls.crt': Buffer.from(rogue.certPem).toString('base64') },
    });
    await eventually('secure-s0-0-tls signed by the cluster CA again', async () => {
      const s = await secret('secure-s0-0-tls');
      return s && file(s, 'tls.crt') !== rogue.certPem && signedBy(s, ca) ? true : undefined;
    });
    await eventually('shard 0 digest moved', async () =>
      (await digestOf('secure-s0')) !== digest0 ? true : undefined,
    );

    await tcp.client.mergePatch(RESOURCES.bankCluster, NS, 'secure', {
      spec: { clients: [{ name: 'app', role: 'transfer' }] },
    });
    await eventually('Secret secure-client-audit deleted', async () =>
      (await secret('secure-client-audit')) === undefined ? true : undefined,
    );
    expect(await secret('secure-client-app')).toBeDefined();
    const events = await tcp.client.list<
      KubeObject & { reason: string; message: string; involvedObject: { uid: string } }
    >(RESOURCES.event, NS);
    const issued = events.items.filter((e) => e.involvedObject.uid === uid && e.reason === 'CertificatesIssued');
    expect(issued.map((e) => e.message).join(' | ')).toContain('secure-s1-2-tls');
  });

  it('deleting the BankCluster deletes its certificates and its NetworkPolicy, and keeps its CA as the PVCs', async () => {
    const caBefore = file((await secret('secure-ca'))!, 'ca.crt');
    await tcp.client.delete(RESOURCES.bankCluster, NS, 'secure');
    await eventually('BankCluster secure gone', async () =>
      (await getOrUndefined(tcp.client, RESOURCES.bankCluster, NS, 'secure')) === undefined ? true : undefined,
    );
    const ca = await secret('secure-ca');
    expect(ca?.metadata.deletionTimestamp).toBeUndefined();
    expect(file(ca!, 'ca.crt')).toBe(caBefore);
    for (const name of ['secure-s0-0-tls', 'secure-s1-2-tls', 'secure-client-app']) {
      const s = await secret(name);
      expect(s === undefined || s.metadata.deletionTimestamp !== undefined, name).toBe(true);
    }
    expect(await getOrUndefined(tcp.client, RESOURCES.networkPolicy, NS, 'secure')).toBeUndefined();
    // Re-created (as on its kept PVCs): the same CA signs the new certificates.
    await createBankCluster(tcp.client, NS, 'secure', { shards: 1, replicasPerShard: 3 });
    const again = await eventually('Secret secure-s0-0-tls re-issued', async () => {
      const s = await secret('secure-s0-0-tls');
      return s && s.metadata.deletionTimestamp === undefined && file(s, 'ca.crt') ? s : undefined;
    });
    expect(file(again, 'ca.crt')).toBe(caBefore);
    expect(file((await secret('secure-ca'))!, 'ca.crt')).toBe(caBefore);
    await tcp.client.delete(RESOURCES.bankCluster, NS, 'secure');
  });
});

describe('renewal (the certificate step on a fake clock, against the API server)', () => {
  it('re-issues every leaf once two thirds of its lifetime have passed, not before', async () => {
    // Paused: the running operator leaves it alone; this test drives the step itself.
    const raw = await createBankCluster(tcp.client, NS, 'clock', {
      shards: 1,
      replicasPerShard: 3,
      paused: true,
      clients: [{ name: 'app', role: 'read' }],
    });
    const parsed = validateBankCluster(raw);
    if (!parsed.ok) throw new Error(parsed.errors.join('; '));
    const cluster: BankCluster = parsed.value;
    let now = Date.now();
    const t0 = now;
    const emptyCache = { get: () => undefined, list: () => [] };
    const certs = new Certificates(tcp.client, emptyCache, { leafLifetimeMs: 30 * DAY, now: () => now });
    const first = await certs.ensure(cluster);
    expect(first.issued.sort()).toEqual([
      'clock-ca',
      'clock-client-app',
      'clock-s0-0-tls',
      'clock-s0-1-tls',
      'clock-s0-2-tls',
    ]);
    // Renewal is due two thirds into [notBefore, notAfter] (notBefore is a minute early).
    expect(first.recheckAtMs).toBe(t0 - 60_000 + Math.floor((30 * DAY + 60_000) * (2 / 3)));
    const cert = async () => file(await secret('clock-s0-1-tls'), 'tls.crt');
    const before = await cert();

    now = t0 + 19 * DAY;
    const early = await certs.ensure(cluster);
    expect(early.issued).toEqual([]);
    expect(early.digests).toEqual(first.digests);
    expect(await cert()).toBe(before);

    now = t0 + 21 * DAY;
    const due = await certs.ensure(cluster);
    expect(due.issued.sort()).toEqual(['clock-client-app', 'clock-s0-0-tls', 'clock-s0-1-tls', 'clock-s0-2-tls']);
    expect(due.digests).not.toEqual(first.digests);
    const renewed = new X509Certificate(await cert());
    expect(Date.parse(renewed.validTo)).toBe(Math.floor((now + 30 * DAY) / 1000) * 1000);
    expect(renewed.verify(new X509Certificate(file(await secret('clock-ca'), 'ca.crt')).publicKey)).toBe(true);
  });
});

describe('spec.tls: Secrets the user provides', () => {
  const userCa = createCa('user CA', { days: 10 });
  const otherCa = createCa('other CA', { days: 10 });
  const userSecret = async (name: string, uri: string, issuer = userCa) => {
    const leaf = issueLeafCertificate(issuer, {
      commonName: name,
      subjectAltNames: { uris: [uri], dnsNames: ['localhost'] },
      server: true,
      lifetimeMs: 5 * DAY,
    });
    const body = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace: NS },
      type: 'kubernetes.io/tls',
      data: {
        'ca.crt': Buffer.from(issuer.certPem).toString('base64'),
        'tls.crt': Buffer.from(leaf.certPem).toString('base64'),
        'tls.key': Buffer.from(leaf.keyPem).toString('base64'),
      },
    };
    await tcp.client.apply(RESOURCES.secret, body, { fieldManager: 'cert-manager-standin' });
  };
  const uri = (o: number) => `shardbank://bank/byo/shard/0/replica/${o}`;
  /** A change to the BankCluster wakes the operator (it does not watch the user's Secrets). */
  const poke = () =>
    tcp.client.mergePatch(RESOURCES.bankCluster, NS, 'byo', {
      metadata: { annotations: { 'test.shardbank.io/poke': String(Date.now()) } },
    });
  const certificatesMessage = async (pattern: RegExp) =>
    eventually(`CertificatesReady False matching ${pattern}`, async () => {
      const c = await getBankCluster(tcp.client, NS, 'byo');
      const m = condition(c, 'CertificatesReady');
      return m?.status === 'False' && pattern.test(m.message) ? c : undefined;
    });

  it('names each unusable Secret in the status and an event, and makes no StatefulSet until all are usable', async () => {
    const created = await createBankCluster(tcp.client, NS, 'byo', {
      shards: 1,
      replicasPerShard: 3,
      tls: { secretNamePrefix: 'byo-certs' },
    });
    const missing = await certificatesMessage(/Secret byo-certs-s0-0 \(replica 0\/0\) not found/);
    expect(condition(missing, 'Degraded')).toMatchObject({ status: 'True', reason: 'CertificatesInvalid' });
    expect(await getOrUndefined(tcp.client, RESOURCES.statefulSet, NS, 'byo-s0')).toBeUndefined();
    // No CA or certificate of the operator's own.
    expect(await secret('byo-ca')).toBeUndefined();
    await eventually('InvalidTLSSecrets event', async () => {
      const list = await tcp.client.list<
        KubeObject & { reason: string; message: string; involvedObject: { uid: string } }
      >(RESOURCES.event, NS);
      return list.items.some(
        (e) =>
          e.involvedObject.uid === created.metadata.uid &&
          e.reason === 'InvalidTLSSecrets' &&
          /byo-certs-s0-2/.test(e.message),
      )
        ? true
        : undefined;
    });

    await userSecret('byo-certs-s0-0', uri(0));
    await userSecret('byo-certs-s0-1', uri(2)); // another replica's identity
    await userSecret('byo-certs-s0-2', uri(2), otherCa); // valid, but under another CA
    await poke();
    const wrong = await certificatesMessage(
      /Secret byo-certs-s0-1 tls\.crt must name exactly one shardbank identity, shardbank:\/\/bank\/byo\/shard\/0\/replica\/1/,
    );
    expect(condition(wrong, 'CertificatesReady')!.message).not.toContain('byo-certs-s0-0');

    await userSecret('byo-certs-s0-1', uri(1));
    await poke();
    await certificatesMessage(
      /the ca\.crt of Secret byo-certs-s0-0 does not trust the certificate of Secret byo-certs-s0-2/,
    );
    expect(await getOrUndefined(tcp.client, RESOURCES.statefulSet, NS, 'byo-s0')).toBeUndefined();

    await userSecret('byo-certs-s0-2', uri(2));
    await poke();
    const sts = await eventually('StatefulSet byo-s0 once every Secret is usable', () =>
      getOrUndefined<Sts>(tcp.client, RESOURCES.statefulSet, NS, 'byo-s0'),
    );
    expect(
      sts.spec.template.spec.volumes.find((v) => v.name === 'tls')!.projected!.sources.map((s) => s.secret.name),
    ).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8].map((o) => `byo-certs-s0-${o}`));
    const ok = await eventually('CertificatesReady True', async () => {
      const c = await getBankCluster(tcp.client, NS, 'byo');
      return condition(c, 'CertificatesReady')?.status === 'True' ? c : undefined;
    });
    expect(condition(ok, 'CertificatesReady')?.reason).toBe('ProvidedSecretsValid');
    expect(condition(ok, 'Degraded')?.status).toBe('False');

    // The issuer renews a certificate (cert-manager rewrites the Secret): the shard rolls onto it.
    const before = await digestOf('byo-s0');
    await userSecret('byo-certs-s0-1', uri(1));
    await poke();
    await eventually('byo-s0 digest moved after a renewal', async () =>
      (await digestOf('byo-s0')) !== before ? true : undefined,
    );

    // Deleting the cluster leaves the user's Secrets alone.
    await tcp.client.delete(RESOURCES.bankCluster, NS, 'byo');
    await eventually('BankCluster byo gone', async () =>
      (await getOrUndefined(tcp.client, RESOURCES.bankCluster, NS, 'byo')) === undefined ? true : undefined,
    );
    expect((await secret('byo-certs-s0-0'))?.metadata.deletionTimestamp).toBeUndefined();
  });
});
