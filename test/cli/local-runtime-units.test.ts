import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultBankCluster } from '../../node/cluster/bankcluster.js';
import { endpointsOf, readAddressBook, writeAddressBook, type AddressBook } from '../../node/local/address-book.js';
import { renderShardTable } from '../../node/local/live-table.js';
import { loadManifest, ManifestLoadError, parseManifestText } from '../../node/local/manifest.js';
import { findNatsServer, NATS_INSTALL_HELP } from '../../node/local/nats-binary.js';
import { freePorts } from '../../node/local/ports.js';
import { checkStateDir } from '../../node/local/supervisor.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'shardbank-cli-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function book(stateDir: string, overrides: Partial<AddressBook> = {}): AddressBook {
  return {
    version: 1,
    cluster: 'local',
    namespace: 'default',
    incarnation: 'i-1',
    natsUrl: 'nats://127.0.0.1:4222',
    natsManaged: true,
    natsPort: 4222,
    natsPid: null,
    topology: { shards: 1, itemsPerShard: 10, replicasPerShard: 1, initialBalance: 10 },
    maxTransferAmount: 100,
    replicas: [
      {
        shard: 0,
        ordinal: 0,
        address: '127.0.0.1:5000',
        httpAddress: '127.0.0.1:5001',
        grpcPort: 5000,
        httpPort: 5001,
        pid: null,
        dataDir: join(stateDir, 'data/s0-0'),
        logFile: join(stateDir, 'logs/s0-0.log'),
        restarts: 0,
      },
    ],
    supervisorPid: null,
    supervisorLog: null,
    stateDir,
    startedAtMs: null,
    ...overrides,
  };
}

describe('manifest loading', () => {
  it('defaults to a 3x3 cluster', () => {
    const manifest = loadManifest(undefined);
    expect(manifest.metadata.name).toBe('local');
    expect(manifest.spec).toMatchObject({ shards: 3, replicasPerShard: 3, itemsPerShard: 3000, initialBalance: 10 });
  });
  it('reads YAML and names every bad field', () => {
    const good = parseManifestText(
      'apiVersion: shardbank.io/v1alpha1\nkind: BankCluster\nmetadata: {name: demo}\nspec: {shards: 2, replicasPerShard: 1}\n',
      'm.yaml',
    );
    expect(good.spec.shards).toBe(2);
    let error: unknown;
    try {
      parseManifestText('metadata: {name: demo}\nspec: {shards: 0, replicasPerShard: 2}\n', 'm.yaml');
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ManifestLoadError);
    expect((error as Error).message).toMatch(/spec\.shards/);
    expect((error as Error).message).toMatch(/spec\.replicasPerShard/);
    expect(() => parseManifestText('a: [', 'x.yaml')).toThrow(/x\.yaml: not valid YAML/);
    expect(() => loadManifest('/nonexistent/bank.yaml')).toThrow(/cannot read the manifest/);
  });
});

describe('state dir checks', () => {
  it('refuses data written with another topology, and another cluster name', () => {
    const dir = tempDir();
    writeAddressBook(dir, book(dir));
    expect(() => checkStateDir(dir, defaultBankCluster())).toThrow(
      /written with topology \(1 shards x 1 replicas.*manifest asks for \(3 shards x 3 replicas/,
    );
    const other = defaultBankCluster('other');
    other.spec = { ...other.spec, shards: 1, replicasPerShard: 1, itemsPerShard: 10 };
    expect(() => checkStateDir(dir, other)).toThrow(/holds cluster "local"/);
  });
  it('refuses a state dir whose supervisor runs', () => {
    const dir = tempDir();
    writeAddressBook(dir, book(dir, { supervisorPid: process.ppid }));
    const same = defaultBankCluster();
    same.spec = { ...same.spec, shards: 1, replicasPerShard: 1, itemsPerShard: 10 };
    expect(() => checkStateDir(dir, same)).toThrow(/already running .* shardbank down/);
  });
  it('round-trips the address book and derives endpoints', () => {
    const dir = tempDir();
    writeAddressBook(dir, book(dir));
    const read = readAddressBook(dir)!;
    expect(endpointsOf(read)).toEqual([['127.0.0.1:5000']]);
    writeFileSync(join(dir, 'cluster.json'), '{"version": 9}');
    expect(() => readAddressBook(dir)).toThrow(/not a shardbank address book/);
  });
});

describe('local runtime helpers', () => {
  it('hands out distinct free ports', async () => {
    const ports = await freePorts(10);
    expect(new Set(ports).size).toBe(10);
  });
  it('says how to install nats-server when it is missing', () => {
    expect(findNatsServer({ PATH: '/nonexistent', SHARDBANK_NATS_SERVER: '/nonexistent/nats-server' })).toBeUndefined();
    expect(NATS_INSTALL_HELP).toMatch(/apt-get install nats-server/);
    expect(NATS_INSTALL_HELP).toMatch(/--nats/);
  });
  it('renders the live table', () => {
    const lines = renderShardTable({
      cluster: 'c',
      shards: [
        {
          shard: 0,
          items: [1, 3000],
          inflightTransactions: 0,
          voters: [0, 1, 2],
          learners: [],
          membershipChangeInFlight: false,
          leader: { ordinal: 1, ballot: [4, 1], address: '127.0.0.1:9' },
          replicas: [0, 1, 2].map((ordinal) => ({
            shard: 0,
            ordinal,
            role: ordinal === 1 ? 'leader' : 'follower',
            ready: ordinal !== 2,
            address: 'a',
            pid: null,
            commitIndex: 17,
            appliedIndex: 17,
            ballot: [4, 1],
            leaderOrdinal: 1,
            inflightTransactions: 0,
          })),
        },
      ],
    });
    expect(lines[0]).toMatch(/^SHARD\s+ITEMS\s+READY\s+LEADER\s+BALLOT\s+COMMIT INDEX/);
    expect(lines[1]).toMatch(/^0\s+1-3000\s+2\/3\s+1 \(127\.0\.0\.1:9\)\s+4\.1\s+17/);
  });
});
