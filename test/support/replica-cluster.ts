// Integration-test support: a cluster of real replica processes on loopback, each with its
// own data dir, talking real gRPC (and optionally a real nats-server). Tests kill and restart
// replicas with real signals.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  BankClient,
  Consistency,
  type ClusterStatusReply,
  type ReplicaStatus,
  type TransferReply,
} from '../../node/gen/shardbank/v1/bank.js';
import type { Topology } from '../../node/cluster/topology.js';
import { shardOfItem } from '../../node/cluster/topology.js';
import { asyncBankClient, type AsyncBankClient } from '../../node/replica/forwarder.js';
import { loadClientTls, tlsChannelCredentials, tlsChannelOptions } from '../../node/client/tls.js';
import type { ClusterCertificates } from '../../node/security/certs.js';
import { freeListeningPorts } from '../../node/util/listen-ports.js';
import { pollUntil } from './poll.js';

export { pollUntil };

const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const REPLICA_MAIN = path.join(REPO.endsWith('dist') ? path.dirname(REPO) : REPO, 'dist/node/replica/main.js');

// Replica processes must not outlive the test process that started them, even when it dies.
const liveChildren = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

export interface ReplicaProcess {
  shard: number;
  ordinal: number;
  address: string;
  httpPort: number;
  dataDir: string;
  child: ChildProcess | undefined;
  exited: Promise<number | null> | undefined;
}

export interface ClusterOptions {
  cluster?: string;
  topology: Topology;
  natsUrl?: string;
  maxTransferAmount?: number;
  extraArgs?: string[];
  /** Flags for one replica (e.g. its own certificate). */
  replicaArgs?: (shard: number, ordinal: number) => string[];
  env?: Record<string, string>;
  /** Node flags for the replica processes (e.g. --cpu-prof for profiling runs). */
  nodeArgs?: string[];
  /** The test's own gRPC calls (default plaintext; a TLS cluster needs a client certificate). */
  clientCredentials?: () => grpc.ChannelCredentials;
}

/**
 * Runs every replica on its own certificate of `certs` (`--tls-*`: peer and client TLS) and
 * the test's own calls as client `client` of `certs`.
 */
export function tlsClusterOptions(
  certs: ClusterCertificates,
  client: string,
): Pick<ClusterOptions, 'clientCredentials' | 'replicaArgs'> {
  const credentials = loadClientTls(certs.clients[client]!);
  return {
    clientCredentials: () => tlsChannelCredentials(credentials),
    replicaArgs: (shard, ordinal) => {
      const files = certs.replicas[shard]![ordinal]!;
      return ['--tls-cert', files.cert, '--tls-key', files.key, '--tls-ca', files.ca];
    },
  };
}

export class ReplicaCluster {
  readonly cluster: string;
  readonly replicas: ReplicaProcess[][] = [];
  private readonly clients = new Map<string, { raw: BankClient; async: AsyncBankClient }>();
  private readonly lastServed = new Map<number, ReplicaProcess>();

  private constructor(
    readonly options: ClusterOptions,
    readonly root: string,
  ) {
    this.cluster = options.cluster ?? 'test';
  }

  static async start(options: ClusterOptions): Promise<ReplicaCluster> {
    const root = await mkdtemp(path.join(os.tmpdir(), 'shardbank-it-'));
    const cluster = new ReplicaCluster(options, root);
    const { topology } = options;
    const ports = await freeListeningPorts(topology.shards * topology.replicasPerShard * 2);
    for (let shard = 0; shard < topology.shards; shard += 1) {
      const group: ReplicaProcess[] = [];
      for (let ordinal = 0; ordinal < topology.replicasPerShard; ordinal += 1) {
        const [port, httpPort] = ports.splice(0, 2) as [number, number];
        group.push({
          shard,
          ordinal,
          address: `127.0.0.1:${port}`,
          httpPort,
          dataDir: path.join(root, `s${shard}-${ordinal}`),
          child: undefined,
          exited: undefined,
        });
      }
      cluster.replicas.push(group);
    }
    for (const group of cluster.replicas) for (const replica of group) cluster.spawn(replica);
    return cluster;
  }

  /**
   * A new replica process in the next slot of `shard`, on an empty data dir (a membership
   * change: it asks the shard what it is, and waits until it is added). The running replicas
   * keep their flags: they learn its address from the configuration.
   */
  async addReplica(shard: number): Promise<ReplicaProcess> {
    const group = this.replicas[shard]!;
    const [port, httpPort] = (await freeListeningPorts(2)) as [number, number];
    const replica: ReplicaProcess = {
      shard,
      ordinal: group.length,
      address: `127.0.0.1:${port}`,
      httpPort,
      dataDir: path.join(this.root, `s${shard}-${group.length}`),
      child: undefined,
      exited: undefined,
    };
    group.push(replica);
    this.spawn(replica);
    return replica;
  }

  get peersFlag(): string {
    return this.replicas.map((group) => group.map((r) => r.address).join(',')).join(';');
  }

  spawn(replica: ReplicaProcess): void {
    const { topology } = this.options;
    const args = [
      ...(this.options.nodeArgs ?? []),
      REPLICA_MAIN,
      '--cluster',
      this.cluster,
      '--incarnation',
      `it-${path.basename(this.root)}`,
      '--shard',
      String(replica.shard),
      '--ordinal',
      String(replica.ordinal),
      '--shards',
      String(topology.shards),
      '--replicas-per-shard',
      String(topology.replicasPerShard),
      '--items-per-shard',
      String(topology.itemsPerShard),
      '--initial-balance',
      String(topology.initialBalance),
      '--max-transfer-amount',
      String(this.options.maxTransferAmount ?? 1_000_000),
      '--peers',
      this.peersFlag,
      '--data-dir',
      replica.dataDir,
      '--listen-host',
      '127.0.0.1',
      '--grpc-port',
      replica.address.split(':')[1]!,
      '--http-port',
      String(replica.httpPort),
      ...(this.options.natsUrl ? ['--nats-url', this.options.natsUrl] : []),
      ...(this.options.extraArgs ?? []),
      ...(this.options.replicaArgs?.(replica.shard, replica.ordinal) ?? []),
      ...(process.env.SHARDBANK_TEST_REPLICA_ARGS ? process.env.SHARDBANK_TEST_REPLICA_ARGS.split(' ') : []),
    ];
    // A replica refuses to start without TLS files or an explicit --insecure.
    if (!args.some((arg) => arg.startsWith('--tls-') || arg === '--insecure')) args.push('--insecure');
    const log = createWriteStream(path.join(this.root, `s${replica.shard}-${replica.ordinal}.log`), { flags: 'a' });
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.options.env },
    });
    liveChildren.add(child);
    child.once('exit', () => liveChildren.delete(child));
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    replica.child = child;
    replica.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  async kill(shard: number, ordinal: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    const replica = this.replicas[shard]![ordinal]!;
    const child = replica.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return null;
    child.kill(signal);
    const code = await replica.exited;
    replica.child = undefined;
    return code ?? null;
  }

  async restart(shard: number, ordinal: number, options: { wipe?: boolean } = {}): Promise<void> {
    const replica = this.replicas[shard]![ordinal]!;
    await this.kill(shard, ordinal);
    if (options.wipe) await rm(replica.dataDir, { recursive: true, force: true });
    this.spawn(replica);
  }

  client(address: string): AsyncBankClient {
    let entry = this.clients.get(address);
    if (!entry) {
      const tls = this.options.clientCredentials;
      const raw = tls
        ? new BankClient(address, tls(), tlsChannelOptions(address))
        : new BankClient(address, grpc.credentials.createInsecure());
      entry = { raw, async: asyncBankClient(raw) };
      this.clients.set(address, entry);
    }
    return entry.async;
  }

  rawClient(address: string): BankClient {
    this.client(address);
    return this.clients.get(address)!.raw;
  }

  async replicaStatus(shard: number, ordinal: number): Promise<ReplicaStatus | undefined> {
    const address = this.replicas[shard]![ordinal]!.address;
    const reply: ClusterStatusReply = await this.client(address).clusterStatusAsync(
      { cluster: this.cluster, localOnly: true },
      new grpc.Metadata(),
      { deadline: Date.now() + 2000 },
    );
    return reply.shards[0]?.replicas[0];
  }

  /** The ordinal of the shard's ready leader, polling until there is exactly one. */
  async leaderOf(shard: number, timeoutMs = 60_000, excluding = -1): Promise<number> {
    return pollUntil(
      `a leader of shard ${shard}`,
      async () => {
        const statuses = await Promise.all(
          this.replicas[shard]!.map((r) =>
            r.child ? this.replicaStatus(shard, r.ordinal).catch(() => undefined) : undefined,
          ),
        );
        const leaders = statuses.filter((s) => s?.role === 'leader' && s.ready && s.ordinal !== excluding);
        return leaders.length === 1 ? leaders[0]!.ordinal : undefined;
      },
      timeoutMs,
    );
  }

  async waitForLeaders(timeoutMs = 90_000): Promise<number[]> {
    const result: number[] = [];
    for (let shard = 0; shard < this.replicas.length; shard += 1) result.push(await this.leaderOf(shard, timeoutMs));
    return result;
  }

  private readonly sessionEpochs = new Map<string, number>();

  /** The client's session epoch on the shard (OpenSession through any replica, once). */
  async sessionEpoch(clientId: string, shard: number, timeoutMs = 60_000): Promise<number> {
    const key = `${shard}/${clientId}`;
    const known = this.sessionEpochs.get(key);
    if (known !== undefined) return known;
    const reply = await pollUntil(
      `a session for ${clientId} on shard ${shard}`,
      async () => {
        for (const replica of this.replicas[shard]!.filter((r) => r.child)) {
          try {
            return await this.client(replica.address).openSessionAsync(
              { cluster: this.cluster, clientId, shard },
              new grpc.Metadata(),
              { deadline: Date.now() + 10_000 },
            );
          } catch {
            // another replica, or the next round
          }
        }
        return undefined;
      },
      timeoutMs,
    );
    this.sessionEpochs.set(key, reply.sessionEpoch);
    return reply.sessionEpoch;
  }

  /** Transfer through any replica of the owning shard, retrying with the same id until a definite answer. */
  async transfer(
    clientId: string,
    requestId: number,
    from: number,
    to: number,
    amount: number,
    timeoutMs = 60_000,
  ): Promise<TransferReply> {
    const shard = shardOfItem(this.options.topology, from);
    const sessionEpoch = await this.sessionEpoch(clientId, shard, timeoutMs);
    const deadline = Date.now() + timeoutMs;
    let attempt = 0;
    let lastError: unknown;
    while (Date.now() < deadline) {
      const group = this.replicas[shard]!.filter((r) => r.child);
      // The replica that last served this shard first (usually the leader), then round robin.
      const cached = this.lastServed.get(shard);
      const replica = attempt === 0 && cached?.child ? cached : group[attempt % Math.max(1, group.length)];
      attempt += 1;
      if (!replica) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      try {
        const reply = await this.client(replica.address).transferAsync(
          { cluster: this.cluster, clientId, requestId, from, to, amount, acknowledgedBelow: 0, sessionEpoch },
          new grpc.Metadata(),
          { deadline: Date.now() + 10_000 },
        );
        this.lastServed.set(shard, replica);
        return reply;
      } catch (error) {
        lastError = error;
        this.lastServed.delete(shard);
        const code = (error as { code?: number }).code;
        if (code === grpc.status.INVALID_ARGUMENT || code === grpc.status.FAILED_PRECONDITION) throw error;
        await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 100));
      }
    }
    throw new Error(`transfer ${clientId}/${requestId} had no definite outcome: ${String(lastError)}`);
  }

  async balances(
    shard: number,
    ordinal: number,
    items: number[],
    consistency = Consistency.ANY_REPLICA,
  ): Promise<number[]> {
    const reply = await this.client(this.replicas[shard]![ordinal]!.address).getBalanceAsync(
      { cluster: this.cluster, items, consistency },
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
    );
    return reply.balances.map((b) => b.balance);
  }

  /**
   * Linearizable balances through the shard's current leader, retried across leader changes
   * (a loaded machine can starve a leader into an election at any time).
   */
  async readLinearizable(items: number[], timeoutMs = 60_000): Promise<number[]> {
    const result: number[] = [];
    for (const item of items) {
      const shard = shardOfItem(this.options.topology, item);
      const [balance] = await pollUntil(
        `a linearizable read of item ${item}`,
        async () => {
          const leader = await this.leaderOf(shard, timeoutMs);
          return this.balances(shard, leader, [item], Consistency.LINEARIZABLE);
        },
        timeoutMs,
        100,
      );
      result.push(balance!);
    }
    return result;
  }

  async stop(): Promise<void> {
    for (const { raw } of this.clients.values()) raw.close();
    this.clients.clear();
    const exits: Promise<unknown>[] = [];
    for (const group of this.replicas) {
      for (const replica of group) {
        if (replica.child && replica.child.exitCode === null) {
          replica.child.kill('SIGKILL');
          exits.push(replica.exited!);
        }
      }
    }
    await Promise.all(exits);
    if (!process.env.SHARDBANK_KEEP_TEST_DIRS) await rm(this.root, { recursive: true, force: true });
  }
}
