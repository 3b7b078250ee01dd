// Cross-shard 2PC over peer mTLS: 2 shards x 3 real replica processes with certificates. The
// frame rules (a 2PC message names its sender, Paxos only within a shard, forwarding only within
// a shard) must let every legitimate message through, also across a leader crash: all
// transfers decide, the total is conserved, and no replica ever refused a peer frame.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Outcome } from '../../node/gen/shardbank/v1/bank.js';
import { ensureClusterCertificates } from '../../node/security/certs.js';
import { ReplicaCluster, pollUntil, tlsClusterOptions } from '../support/replica-cluster.js';

const topology = { shards: 2, replicasPerShard: 3, itemsPerShard: 10, initialBalance: 100 };
const ITEMS = Array.from({ length: topology.shards * topology.itemsPerShard }, (_, i) => i + 1);

describe('cross-shard transfers over peer mTLS (2 shards x 3 replicas)', () => {
  let certDir: string;
  let cluster: ReplicaCluster;

  beforeAll(async () => {
    certDir = await mkdtemp(path.join(os.tmpdir(), 'shardbank-certs-'));
    const certs = await ensureClusterCertificates(
      certDir,
      {
        namespace: 'default',
        cluster: 'test',
        shards: 2,
        replicasPerShard: 3,
      },
      { app: 'transfer' },
    );
    // The replicas' --tls-* also turn on client TLS: the test's calls are client `app`'s.
    cluster = await ReplicaCluster.start({ topology, ...tlsClusterOptions(certs, 'app') });
    await cluster.waitForLeaders();
  });

  afterAll(async () => {
    await cluster?.stop();
    if (certDir) await rm(certDir, { recursive: true, force: true });
  });

  it('commits cross-shard transfers through a leader crash and refuses no legitimate frame', async () => {
    let progress = 0;
    const outcomes: Outcome[] = [];
    const workload = Array.from({ length: 3 }, async (_, c) => {
      for (let r = 1; r <= 12; r += 1) {
        // Shard 0 items are 1..10, shard 1 items 11..20: every transfer crosses shards.
        const forward = (c + r) % 2 === 0;
        const a = 1 + ((c * 3 + r) % 10);
        const b = 11 + ((c * 7 + r * 3) % 10);
        const reply = await cluster.transfer(`app/x-${c}`, r, forward ? a : b, forward ? b : a, 1 + (r % 3), 120_000);
        outcomes.push(reply.outcome);
        progress += 1;
      }
    });
    const chaos = (async () => {
      await pollUntil('load to progress', () => progress >= 10 || undefined, 90_000, 20);
      const leader = await cluster.leaderOf(1);
      await cluster.kill(1, leader, 'SIGKILL');
      await cluster.leaderOf(1, 90_000, leader);
      cluster.spawn(cluster.replicas[1]![leader]!);
    })();
    await Promise.all([...workload, chaos]);
    expect(outcomes.length).toBe(36);
    expect(outcomes.filter((outcome) => outcome === Outcome.COMMITTED).length).toBeGreaterThan(0);
    await pollUntil(
      'the total to be conserved once every transaction finished',
      async () => {
        const total = (await cluster.readLinearizable(ITEMS)).reduce((x, y) => x + y, 0);
        return total === ITEMS.length * topology.initialBalance || undefined;
      },
      90_000,
      500,
    );
    const logs = await Promise.all(
      cluster.replicas.flat().map((r) => readFile(path.join(cluster.root, `s${r.shard}-${r.ordinal}.log`), 'utf8')),
    );
    const refusals = logs.join('\n').match(/.*peer (frame )?refused.*/g) ?? [];
    expect(refusals).toEqual([]);
    expect(logs.every((log) => log.includes('"peerTls":"on"'))).toBe(true);
  });
});
