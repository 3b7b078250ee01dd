// TLS and client authentication on the gRPC API with real certificates (openssl) and real
// replica processes (one shard of three, --tls-*): refused credentials and calls get the
// right status naming what was wrong and change nothing (balances and sessions, read back by
// an allowed identity); allowed identities transfer and read, also through a follower
// (forwarding over TLS with the replica's certificate); rotating every replica certificate
// and the client's under load (files replaced, SIGHUP) loses no transfer.
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BankClient,
  Consistency,
  Outcome,
  type TransferStreamReply,
  type TransferStreamRequest,
} from '../../node/gen/shardbank/v1/bank.js';
import { HealthClient } from '../../node/gen/grpc/health/v1/health.js';
import { asyncBankClient } from '../../node/replica/forwarder.js';
import { ShardbankClient } from '../../node/client/bank-client.js';
import { loadClientTls, tlsChannelCredentials, tlsChannelOptions } from '../../node/client/tls.js';
import {
  ensureCa,
  ensureClusterCertificates,
  ensureLeaf,
  issueLeaf,
  type ClusterCertificates,
  type PemPaths,
} from '../../node/security/certs.js';
import { clientIdentityUri, replicaIdentityUri } from '../../node/security/identity.js';
import { ReplicaCluster, pollUntil, tlsClusterOptions } from '../support/replica-cluster.js';

const topology = { shards: 1, replicasPerShard: 3, itemsPerShard: 20, initialBalance: 100 };
const ITEMS = Array.from({ length: topology.itemsPerShard }, (_, i) => i + 1);
const identity = { namespace: 'default', cluster: 'test', shards: 1, replicasPerShard: 3 };

type Credential = { kind: 'plaintext' } | { kind: 'no-certificate' } | { kind: 'certificate'; files: PemPaths };

function channelCredentials(credential: Credential, ca: string): grpc.ChannelCredentials {
  if (credential.kind === 'plaintext') return grpc.credentials.createInsecure();
  if (credential.kind === 'no-certificate') return grpc.credentials.createSsl(caPem.get(ca)!);
  return tlsChannelCredentials(loadClientTls(credential.files));
}
const caPem = new Map<string, Buffer>();

interface CallError {
  code: grpc.status;
  details: string;
}

function stub(address: string, credential: Credential, ca: string): BankClient {
  return new BankClient(address, channelCredentials(credential, ca), {
    'grpc.enable_retries': 0,
    ...(credential.kind === 'plaintext' ? {} : tlsChannelOptions(address)),
  });
}

/** Runs one TransferStream message and resolves with the stream's error (or undefined if it answered). */
function streamOnce(client: BankClient, request: TransferStreamRequest): Promise<CallError | undefined> {
  return new Promise((resolve) => {
    const call = client.transferStream(new grpc.Metadata(), { deadline: Date.now() + 20_000 });
    call.on('data', (_reply: TransferStreamReply) => {
      call.end();
    });
    call.on('error', (error: grpc.ServiceError) => resolve({ code: error.code, details: error.details }));
    call.on('end', () => resolve(undefined));
    call.write(request);
  });
}

function callError(promise: Promise<unknown>): Promise<CallError | undefined> {
  return promise.then(
    () => undefined,
    (error: grpc.ServiceError) => ({ code: error.code, details: error.details }),
  );
}

describe('TLS and client authentication on the gRPC API', () => {
  let certDir: string;
  let certs: ClusterCertificates;
  let cluster: ReplicaCluster;
  let issued = 0;

  /** A client certificate (of `signer`), the server verified against the cluster CA. */
  async function leaf(
    uris: string[],
    signer = certs.ca,
    extra: { validity?: { notBefore: Date; notAfter: Date } } = {},
  ) {
    issued += 1;
    const files = await ensureLeaf(certDir, signer, `extra-${issued}`, {
      commonName: `extra ${issued}`,
      uris,
      server: false,
      ...extra,
    });
    return { ...files, ca: certs.ca.cert };
  }

  beforeAll(async () => {
    certDir = await mkdtemp(path.join(os.tmpdir(), 'shardbank-client-certs-'));
    certs = await ensureClusterCertificates(certDir, identity, {
      app: 'transfer',
      mallory: 'transfer',
      reader: 'read',
    });
    caPem.set(certs.ca.cert, await readFile(certs.ca.cert));
    cluster = await ReplicaCluster.start({ topology, ...tlsClusterOptions(certs, 'app') });
    await cluster.waitForLeaders();
  });

  afterAll(async () => {
    await cluster?.stop();
    if (certDir) await rm(certDir, { recursive: true, force: true });
  });

  it('lets a transfer identity transfer and a read identity read, also through a follower', async () => {
    const reply = await cluster.transfer('app/first', 1, 1, 2, 5);
    expect(reply.outcome).toBe(Outcome.COMMITTED);
    const leader = await cluster.leaderOf(0);
    const follower = cluster.replicas[0]![(leader + 1) % 3]!.address;
    // Through a follower: it forwards to the leader over TLS with its replica certificate.
    const viaFollower = asyncBankClient(stub(follower, { kind: 'certificate', files: certs.clients.app! }, ''));
    const { sessionEpoch } = await viaFollower.openSessionAsync(
      { cluster: 'test', clientId: 'app/follower', shard: 0 },
      new grpc.Metadata(),
      { deadline: Date.now() + 20_000 },
    );
    const forwarded = await viaFollower.transferAsync(
      {
        cluster: 'test',
        clientId: 'app/follower',
        requestId: 1,
        from: 3,
        to: 4,
        amount: 2,
        acknowledgedBelow: 0,
        sessionEpoch,
      },
      new grpc.Metadata(),
      { deadline: Date.now() + 20_000 },
    );
    expect(forwarded.outcome).toBe(Outcome.COMMITTED);
    const reader = asyncBankClient(stub(follower, { kind: 'certificate', files: certs.clients.reader! }, ''));
    const read = await reader.getBalanceAsync(
      { cluster: 'test', items: [1, 2, 3, 4], consistency: Consistency.LINEARIZABLE },
      new grpc.Metadata(),
      { deadline: Date.now() + 20_000 },
    );
    expect(read.balances.map((b) => b.balance)).toEqual([95, 105, 98, 102]);
    const status = await reader.clusterStatusAsync({ cluster: 'test', localOnly: true }, new grpc.Metadata(), {
      deadline: Date.now() + 20_000,
    });
    expect(status.shards[0]?.replicas.length).toBe(1);
    // The client library with the same files: generated client ids carry the identity's name.
    const library = new ShardbankClient({
      cluster: 'test',
      topology,
      endpoints: [cluster.replicas[0]!.map((r) => r.address)],
      tls: certs.clients.app!,
    });
    try {
      expect(library.session.clientId.startsWith('app/c-')).toBe(true);
      const result = await library.transfer({ from: 5, to: 6, amount: 1 });
      expect(result.outcome).toBe('COMMITTED');
    } finally {
      library.close();
    }
  });

  it('refuses bad credentials and unauthorized calls with the right status, and changes nothing', async () => {
    const leader = await cluster.leaderOf(0);
    const address = cluster.replicas[0]![leader]!.address;
    // The victim: a session of client app/victim; its epoch must stay valid.
    const victimEpoch = await cluster.sessionEpoch('app/victim', 0);
    const before = await cluster.readLinearizable(ITEMS);

    const otherCa = await ensureCa(await mkdtemp(path.join(certDir, 'other-ca-')), 'another CA');
    const hour = 3_600_000;
    const credentials: Record<string, Credential> = {
      plaintext: { kind: 'plaintext' },
      'no certificate': { kind: 'no-certificate' },
      'another CA': {
        kind: 'certificate',
        files: await leaf([clientIdentityUri({ ...identity, role: 'transfer', name: 'app' })], otherCa),
      },
      expired: {
        kind: 'certificate',
        files: await leaf([clientIdentityUri({ ...identity, role: 'transfer', name: 'app' })], certs.ca, {
          validity: { notBefore: new Date(Date.now() - 48 * hour), notAfter: new Date(Date.now() - 24 * hour) },
        }),
      },
      'another cluster': {
        kind: 'certificate',
        files: await leaf([clientIdentityUri({ ...identity, cluster: 'other', role: 'transfer', name: 'app' })]),
      },
      'no shardbank identity': { kind: 'certificate', files: await leaf(['spiffe://example.org/app']) },
      'a replica outside the topology': {
        kind: 'certificate',
        files: await leaf([replicaIdentityUri({ ...identity, shard: 0, ordinal: 9 })]),
      },
      reader: { kind: 'certificate', files: certs.clients.reader! },
      mallory: { kind: 'certificate', files: certs.clients.mallory! },
    };
    const transfer = (clientId: string, cluster = 'test') => ({
      cluster,
      clientId,
      requestId: 1,
      from: 7,
      to: 8,
      amount: 50,
      acknowledgedBelow: 0,
      sessionEpoch: victimEpoch,
    });
    const unauthenticated: [string, string][] = [
      ['plaintext', 'this cluster requires TLS'],
      ['no certificate', 'no client certificate'],
      ['another CA', "not signed by this cluster's CA (UNABLE_TO_VERIFY_LEAF_SIGNATURE)"],
      ['expired', 'the client certificate expired on'],
      ['another cluster', 'names cluster default/other, this is default/test'],
      ['no shardbank identity', 'names 0 shardbank identities, expected one'],
      ['a replica outside the topology', 'shard 0 replica 9, outside the topology'],
    ];
    const cases: {
      name: string;
      run: (client: BankClient) => Promise<CallError | undefined>;
      code: grpc.status;
      says: string;
    }[] = [];
    for (const [name, says] of unauthenticated) {
      const code = grpc.status.UNAUTHENTICATED;
      cases.push(
        // Refused before validation: a wrong cluster name is not what the answer is about.
        {
          name: `${name}: Transfer`,
          run: (c) =>
            callError(asyncBankClient(c).transferAsync(transfer('app/victim', 'nope'), new grpc.Metadata(), {})),
          code,
          says,
        },
        {
          name: `${name}: OpenSession`,
          run: (c) =>
            callError(
              asyncBankClient(c).openSessionAsync(
                { cluster: 'test', clientId: 'app/victim', shard: 0 },
                new grpc.Metadata(),
                {},
              ),
            ),
          code,
          says,
        },
        {
          name: `${name}: GetBalance`,
          run: (c) =>
            callError(
              asyncBankClient(c).getBalanceAsync(
                { cluster: 'test', items: [7], consistency: Consistency.ANY_REPLICA },
                new grpc.Metadata(),
                {},
              ),
            ),
          code,
          says,
        },
        {
          name: `${name}: TransferStream`,
          run: (c) => streamOnce(c, { cluster: 'test', tags: [1], entries: [transfer('app/victim')] }),
          code,
          says,
        },
      );
    }
    const denied = grpc.status.PERMISSION_DENIED;
    const readOnly = 'client reader (role read) may only read (balances, status); this call changes state';
    cases.push(
      {
        name: 'reader: Transfer',
        run: (c) => callError(asyncBankClient(c).transferAsync(transfer('reader'), new grpc.Metadata(), {})),
        code: denied,
        says: readOnly,
      },
      {
        name: 'reader: OpenSession',
        run: (c) =>
          callError(
            asyncBankClient(c).openSessionAsync(
              { cluster: 'test', clientId: 'reader', shard: 0 },
              new grpc.Metadata(),
              {},
            ),
          ),
        code: denied,
        says: readOnly,
      },
      {
        name: 'reader: BatchTransfer',
        run: (c) =>
          callError(
            asyncBankClient(c).batchTransferAsync(
              { cluster: 'test', clientId: 'reader', entries: [transfer('reader')] },
              new grpc.Metadata(),
              {},
            ),
          ),
        code: denied,
        says: readOnly,
      },
      {
        name: 'reader: TransferStream',
        run: (c) => streamOnce(c, { cluster: 'test', tags: [1], entries: [transfer('reader')] }),
        code: denied,
        says: readOnly,
      },
    );
    const foreign = (clientId: string) =>
      `client mallory (role transfer) may use client_id mallory or mallory/..., not ${JSON.stringify(clientId)}`;
    for (const clientId of ['app/victim', 'app', 'malloryx', 'mallory/']) {
      cases.push(
        {
          name: `mallory as ${clientId}: Transfer`,
          run: (c) => callError(asyncBankClient(c).transferAsync(transfer(clientId), new grpc.Metadata(), {})),
          code: denied,
          says: foreign(clientId),
        },
        {
          name: `mallory as ${clientId}: OpenSession`,
          run: (c) =>
            callError(
              asyncBankClient(c).openSessionAsync({ cluster: 'test', clientId, shard: 0 }, new grpc.Metadata(), {}),
            ),
          code: denied,
          says: foreign(clientId),
        },
      );
    }
    cases.push(
      // One foreign entry among its own refuses the whole batch and the whole stream message.
      {
        name: 'mallory: BatchTransfer with a foreign entry',
        run: (c) =>
          callError(
            asyncBankClient(c).batchTransferAsync(
              { cluster: 'test', clientId: 'mallory/a', entries: [transfer('mallory/a'), transfer('app/victim')] },
              new grpc.Metadata(),
              {},
            ),
          ),
        code: denied,
        says: foreign('app/victim'),
      },
      {
        name: 'mallory: BatchTransfer with the request client_id foreign',
        run: (c) =>
          callError(
            asyncBankClient(c).batchTransferAsync(
              { cluster: 'test', clientId: 'app/victim', entries: [{ ...transfer(''), clientId: '' }] },
              new grpc.Metadata(),
              {},
            ),
          ),
        code: denied,
        says: foreign('app/victim'),
      },
      {
        name: 'mallory: TransferStream with a foreign entry',
        run: (c) =>
          streamOnce(c, { cluster: 'test', tags: [1, 2], entries: [transfer('mallory/a'), transfer('app/victim')] }),
        code: denied,
        says: foreign('app/victim'),
      },
    );
    const clients = new Map<string, BankClient>();
    try {
      for (const attempt of cases) {
        const who = attempt.name.split(':')[0]!.split(' as ')[0]!;
        let client = clients.get(who);
        if (!client) {
          client = stub(address, credentials[who]!, certs.ca.cert);
          clients.set(who, client);
        }
        const error = await attempt.run(client);
        expect(error, attempt.name).toBeDefined();
        expect({ name: attempt.name, code: grpc.status[error!.code] }).toEqual({
          name: attempt.name,
          code: grpc.status[attempt.code],
        });
        expect(error!.details, attempt.name).toContain(attempt.says);
      }
      // Health, too, needs a certificate.
      const health = new HealthClient(address, grpc.credentials.createInsecure());
      const healthError = await new Promise<CallError | undefined>((resolve) =>
        health.check({ service: '' }, (error) =>
          resolve(error ? { code: error.code, details: error.details } : undefined),
        ),
      );
      health.close();
      expect(healthError?.code).toBe(grpc.status.UNAUTHENTICATED);
    } finally {
      for (const client of clients.values()) client.close();
    }
    // Nothing changed: the balances, and the victim's session (a new epoch would refuse it).
    expect(await cluster.readLinearizable(ITEMS)).toEqual(before);
    const reply = await cluster
      .client(address)
      .transferAsync({ ...transfer('app/victim'), amount: 1 }, new grpc.Metadata(), { deadline: Date.now() + 20_000 });
    expect(reply.outcome).toBe(Outcome.COMMITTED);
    expect(reply.deduplicated ?? false).toBe(false);
    // Mallory's own client ids work: the refusals were about the ids, not the identity.
    const own = asyncBankClient(stub(address, credentials.mallory!, certs.ca.cert));
    const session = await own.openSessionAsync(
      { cluster: 'test', clientId: 'mallory/a', shard: 0 },
      new grpc.Metadata(),
      {},
    );
    const mine = await own.transferAsync(
      { ...transfer('mallory/a'), sessionEpoch: session.sessionEpoch, amount: 1 },
      new grpc.Metadata(),
      {},
    );
    expect(mine.outcome).toBe(Outcome.COMMITTED);
  });

  it('rotates every replica certificate and the client certificate under load with SIGHUP, losing no transfer', async () => {
    const total = ITEMS.length * topology.initialBalance;
    const endpoints = [cluster.replicas[0]!.map((r) => r.address)];
    const first = new ShardbankClient({ cluster: 'test', topology, endpoints, tls: certs.clients.app! });
    let second: ShardbankClient | undefined;
    let done = false;
    const outcomes: string[] = [];
    const load = (client: ShardbankClient, c: number) =>
      (async () => {
        for (let r = 1; !done || r <= 10; r += 1) {
          const result = await client.transfer({ from: 1 + ((c + r) % 20), to: 1 + ((c + 3 * r + 1) % 20), amount: 1 });
          outcomes.push(result.outcome === 'COMMITTED' ? 'COMMITTED' : `${result.outcome}: ${result.message ?? ''}`);
        }
      })();
    const workload = [0, 1, 2, 3].map((c) => load(first, c));
    try {
      for (const ordinal of [0, 1, 2]) {
        const files = certs.replicas[0]![ordinal]!;
        await issueLeaf(certs.ca, files.cert, files.key, {
          commonName: `test shard 0 replica ${ordinal} rotated`,
          uris: [replicaIdentityUri({ ...identity, shard: 0, ordinal })],
          server: true,
        });
        const expected = new X509Certificate(await readFile(files.cert)).fingerprint256;
        cluster.replicas[0]![ordinal]!.child!.kill('SIGHUP');
        const address = cluster.replicas[0]![ordinal]!.address;
        await pollUntil(`replica ${ordinal} to present its new certificate to clients`, async () =>
          (await presentedFingerprint(address, certs.ca.cert)) === expected ? true : undefined,
        );
      }
      // The client's certificate: new files, and a client made from them joins the load.
      const app = certs.clients.app!;
      await issueLeaf(certs.ca, app.cert, app.key, {
        commonName: 'test client app rotated',
        uris: [clientIdentityUri({ ...identity, role: 'transfer', name: 'app' })],
        server: false,
      });
      second = new ShardbankClient({ cluster: 'test', topology, endpoints, tls: app });
      workload.push(load(second, 4), load(second, 5));
      await pollUntil('the rotated client to commit transfers', async () =>
        outcomes.filter((o) => o === 'COMMITTED').length > 60 ? true : undefined,
      );
    } finally {
      done = true;
    }
    await Promise.all(workload);
    first.close();
    second?.close();
    expect(outcomes.length).toBeGreaterThanOrEqual(60);
    expect(outcomes.filter((o) => o !== 'COMMITTED')).toEqual([]);
    expect((await cluster.readLinearizable(ITEMS)).reduce((a, b) => a + b, 0)).toBe(total);
    const logs = (
      await Promise.all([0, 1, 2].map((o) => readFile(path.join(cluster.root, `s0-${o}.log`), 'utf8')))
    ).join('\n');
    expect(logs).toContain('client TLS files re-read');
  });
});

/** The SHA-256 fingerprint of the certificate a replica presents to a new client TLS connection. */
async function presentedFingerprint(address: string, ca: string): Promise<string> {
  const [host, port] = address.split(':') as [string, string];
  return new Promise<string>((resolve, reject) => {
    const socket = tls.connect({
      host,
      port: Number(port),
      ca: caPem.get(ca)!,
      ALPNProtocols: ['h2'],
      servername: 'localhost',
    });
    socket.once('secureConnect', () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.destroy();
    });
    socket.once('error', reject);
  });
}
