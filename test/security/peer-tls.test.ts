// PeerTls in one process with real certificates: the dialer accepts only the replica it meant
// to dial, the acceptor reports the identity it proved, and a bad file is refused by name.
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureClusterCertificates, type ClusterCertificates } from '../../node/security/certs.js';
import type { ReplicaIdentity } from '../../node/security/identity.js';
import { PeerTls } from '../../node/security/peer-tls.js';

const policy = { namespace: 'default', cluster: 'bank', shards: 1, replicasPerShard: 3 };

describe('PeerTls', () => {
  let dir: string;
  let certs: ClusterCertificates;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'shardbank-peer-tls-'));
    certs = await ensureClusterCertificates(dir, policy);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Dials a PeerTls acceptor holding replica `serving`'s certificate, expecting `expected`. */
  async function dial(serving: number, expected: { shard: number; ordinal: number }) {
    const acceptor = new PeerTls(certs.replicas[0]![serving]!, policy);
    const dialer = new PeerTls(certs.replicas[0]![0]!, policy);
    let proved: ReplicaIdentity | undefined;
    const server = net.createServer((socket) =>
      acceptor.accept(socket, {
        onIdentity: (_secure, identity) => (proved = identity),
        onRefused: (secure) => secure.destroy(),
        onFailed: () => undefined,
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    const raw = net.connect({ host: '127.0.0.1', port });
    await new Promise((resolve) => raw.once('connect', resolve));
    const secure = dialer.connect(raw, expected);
    const outcome = await new Promise<string>((resolve) => {
      secure.once('secureConnect', () => resolve('connected'));
      secure.once('error', (error) => resolve(error.message));
    });
    if (outcome === 'connected')
      await new Promise<void>((resolve) => {
        const poll = () => (proved ? resolve() : setTimeout(poll, 10));
        poll();
      });
    secure.destroy();
    server.close();
    return { outcome, proved };
  }

  it('connects to the replica it dialled, and the acceptor proves the dialer', async () => {
    const { outcome, proved } = await dial(1, { shard: 0, ordinal: 1 });
    expect(outcome).toBe('connected');
    expect(proved).toEqual({ kind: 'replica', namespace: 'default', cluster: 'bank', shard: 0, ordinal: 0 });
  });

  it('refuses another replica answering at the dialled address', async () => {
    const { outcome } = await dial(1, { shard: 0, ordinal: 2 });
    expect(outcome).toBe(
      'peer certificate refused: dialled shard 0 replica 2, the certificate names shard 0 replica 1',
    );
  });

  it('names the flag of a missing or bad file, and keeps the old files on a bad reload', async () => {
    const files = certs.replicas[0]![0]!;
    expect(() => new PeerTls({ ...files, key: path.join(dir, 'missing.key') }, policy)).toThrow(
      /^--tls-key .*missing\.key: ENOENT/,
    );
    const copy = path.join(dir, 'copy.crt');
    await copyFile(files.cert, copy);
    const tls = new PeerTls({ ...files, cert: copy }, policy);
    tls.reload();
    await writeFile(copy, 'not a certificate');
    expect(() => tls.reload()).toThrow(/^--tls-cert .*copy\.crt/);
  });
});
