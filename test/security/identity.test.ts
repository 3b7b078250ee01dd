// The identity rules of peer mTLS (node/security/identity.ts), the replica's peer TLS flags,
// and the socket directory check, without processes (test/replica/peer-tls.test.ts runs them
// with real TLS and real replicas).
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PeerFrame, TxMessage } from '../../node/gen/shardbank/v1/peer.js';
import { ConfigError, parseReplicaConfig } from '../../node/replica/replica-config.js';
import {
  authorizePeer,
  clientIdentityUri,
  frameRefusal,
  parseIdentityUri,
  replicaIdentityUri,
} from '../../node/security/identity.js';
import { privateDirectoryProblem } from '../../node/security/peer-tls.js';
import { clientIdAllowed } from '../../node/security/client-tls.js';
import { tlsChannelOptions } from '../../node/client/tls.js';

const policy = { namespace: 'default', cluster: 'bank', shards: 2, replicasPerShard: 3 };
const san = (uri: string) => `URI:${uri}, DNS:localhost, IP Address:127.0.0.1`;

describe('identity URIs', () => {
  it('round-trips replica and client identities and rejects anything else', () => {
    const replica = { namespace: 'default', cluster: 'bank', shard: 1, ordinal: 2 };
    expect(replicaIdentityUri(replica)).toBe('shardbank://default/bank/shard/1/replica/2');
    expect(parseIdentityUri(replicaIdentityUri(replica))).toEqual({ kind: 'replica', ...replica });
    const client = { namespace: 'prod', cluster: 'bank', role: 'read' as const, name: 'reports' };
    expect(parseIdentityUri(clientIdentityUri(client))).toEqual({ kind: 'client', ...client });
    for (const bad of [
      'https://default/bank/shard/1/replica/2',
      'shardbank://default/bank/shard/01/replica/2',
      'shardbank://default/bank/shard/1/replica/-1',
      'shardbank://default/bank/shard/1/replica/2/extra',
      'shardbank://Default/bank/shard/1/replica/2',
      'shardbank://default/bank/client/root/reports',
      'shardbank://default/bank/client/read/',
    ])
      expect(parseIdentityUri(bad), bad).toBeUndefined();
  });
});

describe('authorizePeer', () => {
  it('accepts a slot above the current size (a member being added or removed: any slot below MEMBERS_MAX)', () => {
    expect(authorizePeer(san('shardbank://default/bank/shard/0/replica/4'), policy)).toEqual({
      identity: { kind: 'replica', namespace: 'default', cluster: 'bank', shard: 0, ordinal: 4 },
    });
    const admin = { namespace: 'default', cluster: 'bank', role: 'admin' as const, name: 'ops' };
    expect(parseIdentityUri(clientIdentityUri(admin))).toEqual({ kind: 'client', ...admin });
  });

  it('accepts a member of the topology', () => {
    expect(authorizePeer(san('shardbank://default/bank/shard/1/replica/2'), policy)).toEqual({
      identity: { kind: 'replica', namespace: 'default', cluster: 'bank', shard: 1, ordinal: 2 },
    });
  });

  it.each([
    ['another cluster', 'shardbank://default/other/shard/0/replica/0', 'names cluster default/other'],
    ['another namespace', 'shardbank://prod/bank/shard/0/replica/0', 'names cluster prod/bank'],
    ['a shard outside the topology', 'shardbank://default/bank/shard/2/replica/0', 'names shard 2'],
    ['a slot no shard can have', 'shardbank://default/bank/shard/0/replica/9', 'names replica slot 9'],
    ['a client', 'shardbank://default/bank/client/transfer/app', 'names a client'],
  ])('refuses %s', (_name, uri, reason) => {
    const verdict = authorizePeer(san(uri), policy);
    expect('refused' in verdict && verdict.refused).toContain(reason);
  });

  it('refuses a certificate with no identity or two', () => {
    expect(authorizePeer('DNS:localhost', policy)).toEqual({
      refused: 'the certificate names 0 shardbank identities, expected one',
    });
    const two = 'URI:shardbank://default/bank/shard/0/replica/0, URI:shardbank://default/bank/shard/0/replica/1';
    expect(authorizePeer(two, policy)).toEqual({
      refused: 'the certificate names 2 shardbank identities, expected one',
    });
  });
});

describe('frameRefusal', () => {
  const peer = { namespace: 'default', cluster: 'bank', shard: 1, ordinal: 2 };
  const tx = (fromShard: number, fromOrdinal: number): TxMessage => ({
    fromShard,
    toShard: 0,
    fromOrdinal,
    body: { $case: 'inquiry', inquiry: { txid: undefined } } as TxMessage['body'],
  });
  const frame = (over: Partial<PeerFrame>): PeerFrame => ({
    cluster: 'bank',
    paxos: [],
    tx: [],
    senderShard: 1,
    senderOrdinal: 2,
    forwarded: false,
    ...over,
  });
  const paxos = [{ shard: 1, from: 2, to: 0, ballot: { round: 1, ordinal: 2 }, body: undefined }];

  it('accepts frames that speak for the connection', () => {
    expect(frameRefusal(frame({ tx: [tx(1, 2)] }), peer, 0)).toBeUndefined();
    expect(frameRefusal(frame({ paxos }), peer, 1)).toBeUndefined();
    expect(frameRefusal(frame({ tx: [tx(0, 1)], forwarded: true }), peer, 1)).toBeUndefined();
  });

  it('refuses a frame claiming another sender', () => {
    expect(frameRefusal(frame({ senderOrdinal: 0 }), peer, 0)).toContain('claims to come from shard 1 replica 0');
    expect(frameRefusal(frame({ senderShard: 0 }), peer, 0)).toContain('claims to come from shard 0 replica 2');
  });

  it('refuses Paxos messages from another shard', () => {
    expect(frameRefusal(frame({ paxos }), peer, 0)).toBe('Paxos messages from shard 1, this replica is in shard 0');
  });

  it('refuses a 2PC message naming another sender, and forwarding from another shard', () => {
    expect(frameRefusal(frame({ tx: [tx(1, 2), tx(1, 0)] }), peer, 0)).toContain(
      'a 2PC message claims to come from shard 1 replica 0',
    );
    expect(frameRefusal(frame({ tx: [tx(0, 1)], forwarded: true }), peer, 0)).toBe(
      'forwarded 2PC messages from shard 1',
    );
  });
});

describe('replica peer TLS flags', () => {
  const base = ['--cluster', 'bank', '--shard', '0', '--ordinal', '0', '--shards', '1', '--replicas-per-shard', '1'];
  const peers = ['--peers', '127.0.0.1:50051'];

  it('takes all three files or none', () => {
    expect(parseReplicaConfig([...base, ...peers, '--insecure'], {}).peerTls).toBeUndefined();
    const files = ['--tls-cert', 'c.crt', '--tls-key', 'c.key', '--tls-ca', 'ca.crt'];
    expect(parseReplicaConfig([...base, ...peers, ...files], {}).peerTls).toEqual({
      cert: 'c.crt',
      key: 'c.key',
      ca: 'ca.crt',
    });
    expect(() => parseReplicaConfig([...base, ...peers, '--tls-cert', 'c.crt'], {})).toThrow(
      new ConfigError('TLS needs --tls-cert, --tls-key and --tls-ca; missing --tls-key, --tls-ca'),
    );
  });

  it('reads them from the environment too', () => {
    const env = { SHARDBANK_TLS_CERT: 'a', SHARDBANK_TLS_KEY: 'b', SHARDBANK_TLS_CA: 'c' };
    expect(parseReplicaConfig([...base, ...peers], env).peerTls).toEqual({ cert: 'a', key: 'b', ca: 'c' });
  });

  it('refuses to start with neither TLS files nor --insecure (secure by default)', () => {
    expect(() => parseReplicaConfig([...base, ...peers], {})).toThrow(
      new ConfigError(
        'a replica runs TLS: give --tls-cert, --tls-key and --tls-ca (its certificate, docs/SECURITY.md), or --insecure for plaintext with no authentication',
      ),
    );
  });

  it('takes --insecure alone, and refuses it with a TLS file, naming both', () => {
    expect(parseReplicaConfig([...base, ...peers, '--insecure'], {}).insecure).toBe(true);
    expect(
      parseReplicaConfig([...base, ...peers, ...['--tls-cert', 'c', '--tls-key', 'k', '--tls-ca', 'a']], {}).insecure,
    ).toBe(false);
    expect(parseReplicaConfig([...base, ...peers], { SHARDBANK_INSECURE: '1' }).insecure).toBe(true);
    expect(() => parseReplicaConfig([...base, ...peers, '--insecure', '--tls-ca', 'ca.crt'], {})).toThrow(
      new ConfigError('--insecure and --tls-ca contradict each other: give the TLS files or --insecure, not both'),
    );
    const files = ['--tls-cert', 'c.crt', '--tls-key', 'c.key', '--tls-ca', 'ca.crt'];
    expect(() => parseReplicaConfig([...base, ...peers, ...files], { SHARDBANK_INSECURE: 'true' })).toThrow(
      '--insecure and --tls-cert, --tls-key, --tls-ca contradict each other',
    );
  });
});

describe('client identities and client_ids', () => {
  it('allows <name> and <name>/<anything>, nothing else', () => {
    expect(clientIdAllowed('app', 'app')).toBe(true);
    expect(clientIdAllowed('app', 'app/c-1')).toBe(true);
    expect(clientIdAllowed('app', 'app/a/b')).toBe(true);
    expect(clientIdAllowed('app', 'app/')).toBe(false);
    expect(clientIdAllowed('app', 'appx')).toBe(false);
    expect(clientIdAllowed('app', 'ap')).toBe(false);
    expect(clientIdAllowed('app', 'other/app')).toBe(false);
    expect(clientIdAllowed('app', '')).toBe(false);
  });

  it('checks loopback IPs as localhost (replica certificates name it), other hosts as they are', () => {
    expect(tlsChannelOptions('127.0.0.1:5000')).toEqual({ 'grpc.ssl_target_name_override': 'localhost' });
    expect(tlsChannelOptions('[::1]:5000')).toEqual({ 'grpc.ssl_target_name_override': 'localhost' });
    expect(tlsChannelOptions('bank-s0-1.bank.default.svc:50051')).toEqual({});
    expect(tlsChannelOptions('10.0.0.7:50051')).toEqual({});
  });
});

describe('privateDirectoryProblem', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'shardbank-sockets-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('accepts a 0700 directory of this user and refuses one open to others', async () => {
    await chmod(dir, 0o700);
    expect(privateDirectoryProblem(dir)).toBeUndefined();
    await chmod(dir, 0o755);
    expect(privateDirectoryProblem(dir)).toBe(
      `--peer-socket-dir ${dir} has mode 755: with peer TLS it must be 0700 (its sockets skip TLS)`,
    );
    expect(privateDirectoryProblem(path.join(dir, 'missing'))).toContain('ENOENT');
  });
});
