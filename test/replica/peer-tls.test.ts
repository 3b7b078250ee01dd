// Peer mTLS with real certificates (openssl) and real replica processes: a shard of three
// replicas with --tls-* commits transfers; peers that are not members of its topology
// (another CA, another cluster, a shard or ordinal outside the topology, a client
// certificate, no certificate, plaintext) and an authenticated peer whose frames claim
// another sender are refused, logged, and change nothing; the shard keeps committing.
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Outcome } from '../../node/gen/shardbank/v1/bank.js';
import type { PeerFrame } from '../../node/gen/shardbank/v1/peer.js';
import {
  ensureCa,
  ensureClusterCertificates,
  ensureLeaf,
  issueLeaf,
  type PemPaths,
} from '../../node/security/certs.js';
import { replicaIdentityUri } from '../../node/security/identity.js';
import { encodeFrame, PEER_MAGIC, PEER_TLS_MAGIC } from '../../node/transport/peer-transport.js';
import { freeListeningPorts } from '../../node/util/listen-ports.js';
import { ReplicaCluster, pollUntil, tlsClusterOptions } from '../support/replica-cluster.js';

const topology = { shards: 1, replicasPerShard: 3, itemsPerShard: 20, initialBalance: 100 };
const ITEMS = Array.from({ length: topology.itemsPerShard }, (_, i) => i + 1);
const identity = { namespace: 'default', cluster: 'test', shards: 1, replicasPerShard: 3 };
/** A rogue Prepare's round: if any replica ever promised it, a rogue frame was applied. */
const ROGUE_ROUND = 1_000_000;
const REPLICA_MAIN = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../dist/node/replica/main.js');

/** A forceful Prepare at ROGUE_ROUND from `from` (what a peer that got in could disrupt with). */
function roguePrepare(from: number, to: number): PeerFrame {
  return {
    cluster: 'test',
    senderShard: 0,
    senderOrdinal: from,
    forwarded: false,
    tx: [],
    paxos: [
      {
        shard: 0,
        from,
        to,
        ballot: { round: ROGUE_ROUND, ordinal: from },
        body: { $case: 'prepare', prepare: { fromSlot: 0, force: true } },
      },
    ],
  };
}

/**
 * Dials a replica's port as an attacker would (accepting any server certificate), presents
 * `credential` (or none), sends `frame`; resolves true once the replica closed the connection.
 */
async function attack(
  address: string,
  credential: { cert: string; key: string } | undefined,
  frame: PeerFrame,
  plaintext = false,
): Promise<boolean> {
  const [host, port] = address.split(':') as [string, string];
  const raw = net.connect({ host, port: Number(port) });
  const closed = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 30_000);
    raw.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  raw.on('error', () => undefined);
  if (plaintext) {
    raw.write(Buffer.concat([PEER_MAGIC, encodeFrame(frame)]));
  } else {
    startPeerTls(raw, credential, (secure) => {
      secure.on('error', () => undefined);
      secure.once('secureConnect', () => secure.write(encodeFrame(frame)));
    });
  }
  const result = await closed;
  raw.destroy();
  return result;
}

/**
 * Opens the peer protocol's TLS on `raw` as a dialer does (PEER_TLS_MAGIC, the acceptor's
 * one-byte answer, then a TLS 1.3 handshake with `credential` if given, the server's chain
 * not checked) and hands the TLS socket to `use` before its handshake completes.
 */
function startPeerTls(
  raw: net.Socket,
  credential: { cert: string; key: string } | undefined,
  use: (secure: tls.TLSSocket) => void,
): void {
  raw.write(PEER_TLS_MAGIC);
  raw.once('data', () => {
    raw.pause();
    use(
      tls.connect({
        socket: raw,
        minVersion: 'TLSv1.3',
        rejectUnauthorized: false,
        ...(credential ? { cert: readFileSyncText(credential.cert), key: readFileSyncText(credential.key) } : {}),
      }),
    );
  });
}

/** The SHA-256 fingerprint of the certificate a replica's peer port presents now. */
async function presentedFingerprint(address: string, credential: { cert: string; key: string }): Promise<string> {
  const [host, port] = address.split(':') as [string, string];
  const raw = net.connect({ host, port: Number(port) });
  raw.on('error', () => undefined);
  try {
    return await new Promise<string>((resolve, reject) => {
      startPeerTls(raw, credential, (secure) => {
        secure.on('error', reject);
        secure.once('secureConnect', () => {
          resolve(secure.getPeerCertificate().fingerprint256);
          secure.destroy();
        });
      });
      raw.once('close', () => reject(new Error('closed before the handshake')));
    });
  } finally {
    raw.destroy();
  }
}

const pemCache = new Map<string, string>();
function readFileSyncText(file: string): string {
  return pemCache.get(file)!;
}
async function cachePems(...paths: PemPaths[]): Promise<void> {
  for (const p of paths) for (const file of [p.cert, p.key]) pemCache.set(file, await readFile(file, 'utf8'));
}

async function logsOf(cluster: ReplicaCluster): Promise<string> {
  const texts = await Promise.all(
    [0, 1, 2].map((o) => readFile(path.join(cluster.root, `s0-${o}.log`), 'utf8').catch(() => '')),
  );
  return texts.join('\n');
}

describe('peer mTLS between replica processes', () => {
  let certDir: string;
  let cluster: ReplicaCluster;
  let ca: { cert: string; key: string };
  let issued = 0;

  /** A certificate of the cluster CA (or `signer`) naming `uri`. */
  async function certificate(uri: string, signer = ca, server = true, commonName?: string): Promise<PemPaths> {
    issued += 1;
    const leaf = await ensureLeaf(certDir, signer, `extra-${issued}`, {
      commonName: commonName ?? `extra ${issued}`,
      uris: [uri],
      server,
    });
    await cachePems(leaf);
    return leaf;
  }

  async function committedTransfers(clientId: string, count: number): Promise<void> {
    for (let r = 1; r <= count; r += 1) {
      const reply = await cluster.transfer(clientId, r, 1 + (r % 20), 1 + ((r + 7) % 20), 1, 90_000);
      expect(reply.outcome).toBe(Outcome.COMMITTED);
    }
  }

  beforeAll(async () => {
    certDir = await mkdtemp(path.join(os.tmpdir(), 'shardbank-certs-'));
    const certs = await ensureClusterCertificates(certDir, identity, { app: 'transfer' });
    ca = certs.ca;
    await cachePems(...certs.replicas[0]!, certs.clients.app!);
    // The replicas' --tls-* also turn on client TLS: the test's calls are client `app`'s.
    cluster = await ReplicaCluster.start({ topology, ...tlsClusterOptions(certs, 'app') });
    await cluster.waitForLeaders();
  });

  afterAll(async () => {
    await cluster?.stop();
    if (certDir) await rm(certDir, { recursive: true, force: true });
  });

  it('writes keys 0600 and commits transfers over TLS', async () => {
    expect((await stat(path.join(certDir, 'ca.key'))).mode & 0o777).toBe(0o600);
    expect((await stat(path.join(certDir, 'replica-s0-1.key'))).mode & 0o777).toBe(0o600);
    await committedTransfers('app/tls-a', 10);
    expect(await logsOf(cluster)).toContain('"peerTls":"on"');
    const total = (await cluster.readLinearizable(ITEMS)).reduce((a, b) => a + b, 0);
    expect(total).toBe(topology.itemsPerShard * topology.initialBalance);
  });

  it('refuses and logs peers outside the topology, applies none of their frames, keeps committing', async () => {
    const leader = await cluster.leaderOf(0);
    const target = (leader + 1) % 3;
    const address = cluster.replicas[0]![target]!.address;
    const otherCa = await ensureCa(await mkdtemp(path.join(certDir, 'other-ca-')), 'another CA');
    const sender = (target + 1) % 3;
    const me = (ordinal: number) => replicaIdentityUri({ namespace: 'default', cluster: 'test', shard: 0, ordinal });
    const cases: { name: string; credential: Promise<PemPaths> | undefined; logged: string; plaintext?: boolean }[] = [
      { name: 'another CA', credential: certificate(me(sender), otherCa), logged: 'not signed by the cluster CA' },
      {
        name: 'another cluster',
        credential: certificate('shardbank://default/other/shard/0/replica/1'),
        logged: 'names cluster default/other',
      },
      {
        name: 'another namespace',
        credential: certificate('shardbank://staging/test/shard/0/replica/1'),
        logged: 'names cluster staging/test',
      },
      {
        name: 'a shard outside the topology',
        credential: certificate('shardbank://default/test/shard/1/replica/0'),
        logged: 'names shard 1, the cluster has 1',
      },
      {
        name: 'a slot no shard can have',
        credential: certificate('shardbank://default/test/shard/0/replica/9'),
        logged: 'names replica slot 9, slots are below 9',
      },
      {
        name: 'a client certificate',
        credential: certificate('shardbank://default/test/client/transfer/app', ca, false),
        logged: 'names a client, not a replica',
      },
      { name: 'no certificate', credential: undefined, logged: 'peer refused: no client certificate' },
      {
        name: 'plaintext',
        credential: undefined,
        plaintext: true,
        logged: 'plaintext peer connection refused',
      },
    ];
    for (const attempt of cases) {
      const credential = attempt.credential ? await attempt.credential : undefined;
      const closed = await attack(address, credential, roguePrepare(sender, target), attempt.plaintext);
      expect(closed, `${attempt.name}: the replica closes the connection`).toBe(true);
      await pollUntil(`the refusal of ${attempt.name} in the log`, async () =>
        (await logsOf(cluster)).includes(attempt.logged),
      );
    }
    // The refusal names the certificate: its SAN URI.
    expect(await logsOf(cluster)).toContain('shardbank://default/other/shard/0/replica/1');

    // A genuine certificate of a member, whose frame claims another sender, is refused too.
    const liar = (sender + 1) % 3; // neither the target nor the claimed sender
    const genuine = {
      cert: path.join(certDir, `replica-s0-${liar}.crt`),
      key: path.join(certDir, `replica-s0-${liar}.key`),
    };
    expect(await attack(address, genuine, roguePrepare(sender, target))).toBe(true);
    await pollUntil('the refusal of a frame claiming another sender', async () =>
      (await logsOf(cluster)).includes(`peer frame refused: the frame claims to come from shard 0 replica ${sender}`),
    );

    // None of those frames was applied: no replica ever promised the rogue round.
    for (const ordinal of [0, 1, 2]) {
      const status = await cluster.replicaStatus(0, ordinal);
      expect(status?.ballot?.round ?? 0, `replica ${ordinal}'s ballot`).toBeLessThan(ROGUE_ROUND);
    }
    await committedTransfers('app/tls-b', 5);
  });

  it('a real process with a valid certificate at an address no member has stays a non-member and is never counted', async () => {
    // A fourth process that believes the shard was founded with five replicas and that it is
    // replica 3: its certificate is from the cluster CA (slot 3 is a slot a new member could
    // have), but no configuration of the shard has a member at its address. It must ask the
    // shard, find no member there, and wait: never vote, never campaign, never serve.
    const files = await certificate('shardbank://default/test/shard/0/replica/3', ca, true, 'rogue process');
    const [port3, port4, http] = (await freeListeningPorts(3)) as [number, number, number];
    const peers = [...cluster.replicas[0]!.map((r) => r.address), `127.0.0.1:${port3}`, `127.0.0.1:${port4}`];
    const dataDir = await mkdtemp(path.join(certDir, 'rogue-'));
    const rogue: ChildProcess = spawn(
      process.execPath,
      [
        REPLICA_MAIN,
        ...['--cluster', 'test', '--shard', '0', '--ordinal', '3', '--shards', '1', '--replicas-per-shard', '5'],
        ...['--founding-replicas', '5'],
        ...['--items-per-shard', '20', '--initial-balance', '100', '--peers', peers.join(',')],
        ...['--data-dir', dataDir, '--listen-host', '127.0.0.1', '--grpc-port', String(port3)],
        ...['--http-port', String(http), '--tls-cert', files.cert, '--tls-key', files.key],
        ...['--tls-ca', ca.cert],
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const rogueLog = path.join(cluster.root, 'rogue.log');
    const rogueStream = createWriteStream(rogueLog);
    rogue.stdout!.pipe(rogueStream);
    rogue.stderr!.pipe(rogueStream);
    try {
      const rogueSays = () => readFile(rogueLog, 'utf8').catch(() => '');
      await pollUntil(
        'the fourth process to decide what it is',
        async () => /not a member of the shard yet|replica started/.test(await rogueSays()),
        90_000,
      );
      await committedTransfers('app/tls-c', 5);
      // Several election timeouts later it still has not voted, campaigned nor opened its port.
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      await committedTransfers('app/tls-c2', 3);
      for (const ordinal of [0, 1, 2]) {
        const status = await cluster.replicaStatus(0, ordinal);
        expect(status?.role === 'leader' || status?.role === 'follower', `replica ${ordinal} still serves`).toBe(true);
        expect(status?.ballot?.ordinal, `replica ${ordinal}'s ballot is a member's`).toBeLessThan(3);
        expect(status?.voters, `replica ${ordinal}'s voters`).toEqual([0, 1, 2]);
        expect(status?.learners, `replica ${ordinal}'s learners`).toEqual([]);
      }
      const listening = await new Promise<boolean>((resolve) => {
        const socket = net.connect({ host: '127.0.0.1', port: port3 });
        socket.once('connect', () => {
          socket.destroy();
          resolve(true);
        });
        socket.once('error', () => resolve(false));
      });
      expect(listening, 'the non-member serves nothing').toBe(false);
      expect(rogue.exitCode, 'the non-member keeps waiting').toBeNull();
      expect(await rogueSays()).toContain('not a member of the shard yet');
    } finally {
      rogue.kill('SIGKILL');
    }
  });

  it('refuses to start with peer TLS and a socket directory open to others (its sockets skip TLS)', async () => {
    const sockets = await mkdtemp(path.join(certDir, 'sockets-'));
    await chmod(sockets, 0o755);
    const files = path.join(certDir, 'replica-s0-0');
    const child = spawn(
      process.execPath,
      [
        REPLICA_MAIN,
        ...['--cluster', 'test', '--shard', '0', '--ordinal', '0', '--shards', '1', '--replicas-per-shard', '1'],
        ...['--peers', '127.0.0.1:1', '--data-dir', path.join(sockets, 'data'), '--peer-socket-dir', sockets],
        ...['--tls-cert', `${files}.crt`, '--tls-key', `${files}.key`, '--tls-ca', ca.cert],
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(2);
    expect(stderr).toContain(`--peer-socket-dir ${sockets} has mode 755: with peer TLS it must be 0700`);
  });

  it('rotates every replica certificate with SIGHUP under load and loses no transfer', async () => {
    const files = (ordinal: number) => ({
      cert: path.join(certDir, `replica-s0-${ordinal}.crt`),
      key: path.join(certDir, `replica-s0-${ordinal}.key`),
    });
    const before = ITEMS.length * topology.initialBalance;
    let done = false;
    const outcomes: Outcome[] = [];
    const workload = Array.from({ length: 4 }, async (_, c) => {
      for (let r = 1; !done || r <= 10; r += 1) {
        const reply = await cluster.transfer(
          `app/rotate-${c}`,
          r,
          1 + ((c + r) % 20),
          1 + ((c + 3 * r + 1) % 20),
          1,
          90_000,
        );
        outcomes.push(reply.outcome);
        if (r > 200) break;
      }
    });
    try {
      for (const ordinal of [0, 1, 2]) {
        const paths = files(ordinal);
        await issueLeaf(ca, paths.cert, paths.key, {
          commonName: `test shard 0 replica ${ordinal} rotated`,
          uris: [replicaIdentityUri({ namespace: 'default', cluster: 'test', shard: 0, ordinal })],
          server: true,
        });
        await cachePems({ ...paths, ca: ca.cert });
        const expected = new X509Certificate(await readFile(paths.cert)).fingerprint256;
        cluster.replicas[0]![ordinal]!.child!.kill('SIGHUP');
        const prober = files((ordinal + 1) % 3);
        await pollUntil(`replica ${ordinal} to present its new certificate`, async () =>
          (await presentedFingerprint(cluster.replicas[0]![ordinal]!.address, prober)) === expected ? true : undefined,
        );
      }
      // A restarted replica reads the new files, and its peers dial it with their new ones:
      // every connection of the shard is then on the rotated certificates.
      const leader = await cluster.leaderOf(0);
      await cluster.restart(0, leader);
      await cluster.leaderOf(0, 90_000);
    } finally {
      done = true;
    }
    await Promise.all(workload);
    expect(outcomes.length).toBeGreaterThanOrEqual(40);
    expect(outcomes.every((outcome) => outcome === Outcome.COMMITTED)).toBe(true);
    expect((await cluster.readLinearizable(ITEMS)).reduce((a, b) => a + b, 0)).toBe(before);
    expect(await logsOf(cluster)).toContain('peer TLS files re-read');
  });
});
