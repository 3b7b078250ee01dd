// The NATS TLS and credentials flags: the replica's --nats-ca/--nats-creds (parsed, and a
// replica process with an unreadable file exits 2 naming the flag) and the CLI's, which are
// usage errors naming the flag when a file is unusable.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { endpointsTarget } from '../../node/cli/args.js';
import { UsageError } from '../../node/cli/cli-io.js';
import { ConfigError, parseReplicaConfig } from '../../node/replica/replica-config.js';

const REPLICA_MAIN = join(resolve(import.meta.dirname, '../..'), 'dist/node/replica/main.js');
const base = [
  '--cluster',
  'bank',
  '--shard',
  '0',
  '--ordinal',
  '0',
  '--shards',
  '1',
  '--replicas-per-shard',
  '1',
  '--insecure',
];
const peers = ['--peers', '127.0.0.1:50051'];
let directory = '';
let caFile = '';
let credentialsFile = '';

beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), 'shardbank-nats-flags-'));
  caFile = join(directory, 'ca.crt');
  writeFileSync(caFile, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  credentialsFile = join(directory, 'watcher.json');
  writeFileSync(credentialsFile, '{"user":"watcher","password":"p"}', { mode: 0o600 });
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

describe('replica --nats-ca and --nats-creds', () => {
  it('are parsed into natsSecurity, from flags or the environment, and need --nats-url', () => {
    const url = ['--nats-url', 'tls://127.0.0.1:4222'];
    expect(parseReplicaConfig([...base, ...peers, ...url], {}).natsSecurity).toEqual({});
    expect(
      parseReplicaConfig([...base, ...peers, ...url, '--nats-ca', 'ca.crt', '--nats-creds', 'r.json'], {}).natsSecurity,
    ).toEqual({ caFile: 'ca.crt', credentialsFile: 'r.json' });
    expect(
      parseReplicaConfig([...base, ...peers, ...url], { SHARDBANK_NATS_CA: 'ca.crt', SHARDBANK_NATS_CREDS: 'r.json' })
        .natsSecurity,
    ).toEqual({ caFile: 'ca.crt', credentialsFile: 'r.json' });
    expect(() => parseReplicaConfig([...base, ...peers, '--nats-creds', 'r.json'], {})).toThrow(
      new ConfigError('--nats-creds needs --nats-url'),
    );
  });

  it('a replica with an unreadable --nats-creds exits 2 naming the flag and the file', async () => {
    const missing = join(directory, 'missing.json');
    const run = await new Promise<{ code: number | null; stderr: string }>((done) => {
      execFile(
        process.execPath,
        [REPLICA_MAIN, ...base, ...peers, '--data-dir', join(directory, 'data'), '--nats-url', 'tls://127.0.0.1:1'],
        { timeout: 60_000, env: { ...process.env, SHARDBANK_NATS_CA: caFile, SHARDBANK_NATS_CREDS: missing } },
        (error, _stdout, stderr) => done({ code: error ? ((error as { code?: number }).code ?? null) : 0, stderr }),
      );
    });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`--nats-creds ${missing}: cannot read the NATS credentials`);
  });
});

describe('CLI --nats-ca and --nats-creds', () => {
  const endpoints = { endpoints: 'a:1', cluster: 'bank', 'nats-url': 'tls://127.0.0.1:4222' };

  it('pass the files to the client', () => {
    const target = endpointsTarget({ ...endpoints, 'nats-ca': caFile, 'nats-creds': credentialsFile });
    expect(target.options.natsSecurity).toEqual({ caFile, credentialsFile });
    expect(endpointsTarget(endpoints).options.natsSecurity).toBeUndefined();
  });

  it('are usage errors naming the flag when a file is unusable', () => {
    const missing = join(directory, 'nope.json');
    expect(() => endpointsTarget({ ...endpoints, 'nats-creds': missing })).toThrow(UsageError);
    expect(() => endpointsTarget({ ...endpoints, 'nats-creds': missing })).toThrow(`--nats-creds ${missing}:`);
    expect(() => endpointsTarget({ ...endpoints, 'nats-ca': credentialsFile })).toThrow(
      `--nats-ca ${credentialsFile}: not a PEM certificate`,
    );
  });
});
