// The pure TypeScript X.509 issuer (node/security/x509.ts) against three independent judges:
// Node's X509Certificate, the openssl CLI (`x509 -text`, `verify -x509_strict` with purposes)
// and a real TLS 1.3 handshake with client certificates between Node's tls server and client.
import { execFile } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, issueLeafCertificate, parseCertificates, type IssuedCertificate } from '../../node/security/x509.js';

const run = promisify(execFile);
const REPLICA_URI = 'shardbank://bank/demo/shard/0/replica/1';
const DNS = ['demo-s0-1.demo-s0.bank.svc', 'demo-s0-1.demo-s0.bank.svc.cluster.local', 'localhost'];

async function openssl(args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const { stdout, stderr } = await run('openssl', args, { encoding: 'utf8' });
    return { ok: true, out: stdout + stderr };
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string };
    return { ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

describe('x509 issuer', () => {
  let dir: string;
  let ca: IssuedCertificate;
  let otherCa: IssuedCertificate;
  let replica: IssuedCertificate;
  let client: IssuedCertificate;
  let foreign: IssuedCertificate;
  const file = (name: string) => path.join(dir, name);

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'shardbank-x509-'));
    ca = createCa('shardbank CA bank/demo', { days: 3650 });
    otherCa = createCa('shardbank CA bank/other', { days: 3650 });
    replica = issueLeafCertificate(ca, {
      commonName: 'demo shard 0 replica 1',
      subjectAltNames: { uris: [REPLICA_URI], dnsNames: DNS, ips: ['127.0.0.1', '::1'] },
      server: true,
      lifetimeMs: 90 * 86_400_000,
    });
    client = issueLeafCertificate(ca, {
      commonName: 'demo client app',
      subjectAltNames: { uris: ['shardbank://bank/demo/client/transfer/app'] },
      server: false,
      lifetimeMs: 86_400_000,
    });
    foreign = issueLeafCertificate(otherCa, {
      commonName: 'intruder',
      subjectAltNames: { uris: [REPLICA_URI], dnsNames: ['localhost'], ips: ['127.0.0.1'] },
      server: true,
      lifetimeMs: 86_400_000,
    });
    for (const [name, cert] of Object.entries({ ca, otherCa, replica, client, foreign })) {
      await writeFile(file(`${name}.crt`), cert.certPem);
      await writeFile(file(`${name}.key`), cert.keyPem, { mode: 0o600 });
    }
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('Node parses the CA and the leaves, with the extensions asked for, and verifies the signatures', () => {
    const caCert = new X509Certificate(ca.certPem);
    const leaf = new X509Certificate(replica.certPem);
    expect(caCert.ca).toBe(true);
    expect(caCert.verify(caCert.publicKey)).toBe(true);
    expect(caCert.subject).toBe('O=shardbank\nCN=shardbank CA bank/demo');
    expect(leaf.ca).toBe(false);
    expect(leaf.issuer).toBe(caCert.subject);
    expect(leaf.checkIssued(caCert)).toBe(true);
    expect(leaf.verify(caCert.publicKey)).toBe(true);
    expect(leaf.verify(new X509Certificate(otherCa.certPem).publicKey)).toBe(false);
    expect(leaf.checkPrivateKey(createPrivateKey(replica.keyPem))).toBe(true);
    expect(leaf.subjectAltName).toBe(
      `URI:${REPLICA_URI}, ${DNS.map((d) => `DNS:${d}`).join(', ')}, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1`,
    );
    expect(leaf.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    expect(new X509Certificate(client.certPem).keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    const lifetime = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom);
    expect(lifetime).toBe(90 * 86_400_000 + 60_000);
    expect(leaf.serialNumber).not.toBe(new X509Certificate(client.certPem).serialNumber);
    expect(parseCertificates(ca.certPem + otherCa.certPem).map((c) => c.subject)).toEqual([
      caCert.subject,
      new X509Certificate(otherCa.certPem).subject,
    ]);
  });

  it('encodes IPv6 addresses, long SAN lists (multi-byte DER lengths) and dates after 2049', () => {
    const many = Array.from({ length: 40 }, (_, i) => `replica-${i}.demo-s0.bank.svc.cluster.local`);
    const cert = issueLeafCertificate(ca, {
      commonName: 'wide',
      subjectAltNames: { dnsNames: many, ips: ['2001:db8::8:800:200c:417a', '::ffff:10.1.2.3', 'fe80::1'] },
      server: true,
      lifetimeMs: 40 * 365 * 86_400_000,
    });
    const leaf = new X509Certificate(cert.certPem);
    expect(leaf.subjectAltName?.split(', ').slice(0, 2)).toEqual([`DNS:${many[0]}`, `DNS:${many[1]}`]);
    expect(leaf.subjectAltName).toContain('IP Address:2001:DB8:0:0:8:800:200C:417A');
    expect(leaf.subjectAltName).toContain('IP Address:0:0:0:0:0:FFFF:A01:203');
    expect(leaf.subjectAltName).toContain('IP Address:FE80:0:0:0:0:0:0:1');
    expect(new Date(leaf.validTo).getUTCFullYear()).toBeGreaterThanOrEqual(2060);
    const expired = new X509Certificate(
      issueLeafCertificate(ca, {
        commonName: 'old',
        subjectAltNames: {},
        server: false,
        lifetimeMs: 0,
        validity: { notBefore: new Date('2020-01-01T00:00:00Z'), notAfter: new Date('2020-01-02T00:00:00Z') },
      }).certPem,
    );
    expect([expired.validFrom, expired.validTo]).toEqual(['Jan  1 00:00:00 2020 GMT', 'Jan  2 00:00:00 2020 GMT']);
    expect(leaf.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(() =>
      issueLeafCertificate(ca, { commonName: 'x', subjectAltNames: { ips: ['10.0.0'] }, server: true, lifetimeMs: 1 }),
    ).toThrow(/not an IP address/);
    expect(() =>
      issueLeafCertificate(otherCa, { commonName: 'x', subjectAltNames: {}, server: true, lifetimeMs: 1 }),
    ).not.toThrow();
    expect(() =>
      issueLeafCertificate(
        { certPem: ca.certPem, keyPem: otherCa.keyPem },
        {
          commonName: 'x',
          subjectAltNames: {},
          server: true,
          lifetimeMs: 1,
        },
      ),
    ).toThrow(/issuer key does not match/);
  });

  it('openssl prints the extensions and verifies the chain strictly, for server and client purposes', async () => {
    const text = await openssl(['x509', '-noout', '-text', '-in', file('replica.crt')]);
    expect(text.ok, text.out).toBe(true);
    expect(text.out).toContain('Signature Algorithm: ecdsa-with-SHA256');
    expect(text.out).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text.out).toMatch(/X509v3 Key Usage: critical\s+Digital Signature/);
    expect(text.out).toMatch(
      /X509v3 Extended Key Usage:\s+TLS Web Server Authentication, TLS Web Client Authentication/,
    );
    expect(text.out).toContain(`URI:${REPLICA_URI}`);
    expect(text.out).toContain('IP Address:0:0:0:0:0:0:0:1');
    expect(text.out).toContain('X509v3 Subject Key Identifier');
    expect(text.out).toContain('X509v3 Authority Key Identifier');
    const caText = await openssl(['x509', '-noout', '-text', '-in', file('ca.crt')]);
    expect(caText.out).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(caText.out).toMatch(/X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/);

    const verify = (purpose: string, name: string, caFile = 'ca.crt') =>
      openssl(['verify', '-x509_strict', '-purpose', purpose, '-CAfile', file(caFile), file(name)]);
    for (const [purpose, name] of [
      ['sslserver', 'replica.crt'],
      ['sslclient', 'replica.crt'],
      ['sslclient', 'client.crt'],
    ]) {
      const r = await verify(purpose!, name!);
      expect(r.ok, `${purpose} ${name}: ${r.out}`).toBe(true);
      expect(r.out).toContain(': OK');
    }
    // The client certificate is not a server; a leaf of another CA does not verify.
    expect((await verify('sslserver', 'client.crt')).ok).toBe(false);
    const wrongCa = await verify('sslserver', 'foreign.crt');
    expect(wrongCa.ok).toBe(false);
    expect(wrongCa.out).toMatch(/unable to get local issuer certificate/);
    const keyCheck = await openssl(['pkey', '-in', file('replica.key'), '-pubout']);
    const certKey = await openssl(['x509', '-in', file('replica.crt'), '-noout', '-pubkey']);
    expect(keyCheck.out).toBe(certKey.out);
  });

  /** A TLS 1.3 server with `server` and a client with `clientCert`; what each side saw. */
  async function handshake(server: IssuedCertificate, clientCert: IssuedCertificate | undefined, servername: string) {
    const seen: { serverAuthorized?: boolean; peerUri?: string } = {};
    const srv = tls.createServer(
      {
        cert: server.certPem,
        key: server.keyPem,
        ca: ca.certPem,
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.3',
      },
      (socket) => {
        seen.serverAuthorized = socket.authorized;
        seen.peerUri = socket.getPeerX509Certificate()?.subjectAltName;
        socket.end('hello');
      },
    );
    srv.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const { port } = srv.address() as AddressInfo;
    try {
      const outcome = await new Promise<{ ok: boolean; protocol?: string | null; error?: string; data?: string }>(
        (resolve) => {
          const socket = tls.connect({
            host: '127.0.0.1',
            port,
            servername,
            ca: ca.certPem,
            ...(clientCert ? { cert: clientCert.certPem, key: clientCert.keyPem } : {}),
            minVersion: 'TLSv1.3',
          });
          let data = '';
          socket.on('data', (chunk: Buffer) => (data += chunk.toString()));
          socket.on('end', () => resolve({ ok: true, protocol: socket.getProtocol(), data }));
          socket.on('error', (error) => resolve({ ok: false, error: error.message }));
        },
      );
      return { ...outcome, ...seen };
    } finally {
      srv.close();
    }
  }

  it('a TLS 1.3 handshake with client certificates succeeds, verifying the DNS name the client asked for', async () => {
    const r = await handshake(replica, client, DNS[0]!);
    expect(r).toMatchObject({ ok: true, protocol: 'TLSv1.3', data: 'hello', serverAuthorized: true });
    expect(r.peerUri).toBe('URI:shardbank://bank/demo/client/transfer/app');
  });

  it('a handshake fails for a server name the certificate does not carry, and for a client of another CA', async () => {
    const wrongName = await handshake(replica, client, 'demo-s0-2.demo-s0.bank.svc');
    expect(wrongName.ok).toBe(false);
    expect(wrongName.error).toMatch(/Hostname\/IP does not match certificate's altnames/);
    const wrongClient = await handshake(replica, foreign, DNS[0]!);
    expect(wrongClient.serverAuthorized).toBeUndefined();
    expect(wrongClient.ok && wrongClient.data === 'hello').toBe(false);
    const wrongServer = await handshake(foreign, client, 'localhost');
    expect(wrongServer.ok).toBe(false);
    expect(wrongServer.error).toMatch(/unable to verify the first certificate|unable to get local issuer/);
  });
});
