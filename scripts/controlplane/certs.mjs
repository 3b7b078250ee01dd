// Certificates for a local control plane, made with openssl: a CA, the API server's
// serving certificate, an admin client certificate (group system:masters), the
// service-account signing key and, for a node (k8s:up), one client certificate per
// component with the identity the default RBAC expects plus the kubelet's serving one.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function signed(dir, name, subject, ext) {
  openssl(['genrsa', '-out', `${name}.key`, '2048'], dir);
  openssl(['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`], dir);
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '365',
      '-sha256',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.crt`,
    ],
    dir,
  );
}

const CLIENT_EXT = 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n';
const serverExt = (sans) =>
  `subjectAltName=${sans.join(',')}\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n`;

/**
 * Writes ca.*, apiserver.*, admin.*, sa.key and sa.pub into dir.
 * serverIps: more IP SANs of the API server (node address, first service IP).
 * clients: [{ name, subject }] more client certificates (<name>.crt/.key).
 * servers: [{ name, subject, ips }] more serving certificates (the kubelet's).
 */
export function makeCertificates(dir, { serverIps = [], clients = [], servers = [] } = {}) {
  openssl(['genrsa', '-out', 'ca.key', '2048'], dir);
  openssl(
    [
      'req',
      '-x509',
      '-new',
      '-key',
      'ca.key',
      '-subj',
      '/CN=shardbank-controlplane-ca',
      '-days',
      '365',
      '-sha256',
      '-out',
      'ca.crt',
    ],
    dir,
  );
  const ips = [...new Set(['127.0.0.1', '10.0.0.1', ...serverIps])].map((ip) => `IP:${ip}`);
  const names = [
    'localhost',
    'kubernetes',
    'kubernetes.default',
    'kubernetes.default.svc',
    'kubernetes.default.svc.cluster.local',
  ];
  signed(dir, 'apiserver', '/CN=kube-apiserver', serverExt([...ips, ...names.map((n) => `DNS:${n}`)]));
  signed(dir, 'admin', '/O=system:masters/CN=shardbank-admin', CLIENT_EXT);
  for (const c of clients) signed(dir, c.name, c.subject, CLIENT_EXT);
  for (const s of servers) signed(dir, s.name, s.subject, serverExt(s.ips.map((ip) => `IP:${ip}`)));
  openssl(['genrsa', '-out', 'sa.key', '2048'], dir);
  openssl(['rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], dir);
}
