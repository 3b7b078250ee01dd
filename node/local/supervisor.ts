// The local runtime's supervisor: nats-server (unless an existing one is given) and every
// replica as supervised child processes, each replica with its own data dir and log
// file, and the address book kept up to date with their pids.
import { randomUUID } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import type { BankCluster } from '../cluster/bankcluster.js';
import type { Topology } from '../cluster/topology.js';
import { formatEndpoints } from '../client/endpoints.js';
import { assert } from '../util/assert.js';
import { isProcessAlive } from '../util/process-alive.js';
import { peerSocketPathTooLong } from '../transport/peer-transport.js';
import {
  ADDRESS_BOOK_VERSION,
  readAddressBook,
  writeAddressBook,
  type AddressBook,
  type ReplicaEntry,
} from './address-book.js';
import { describeTopology, manifestTopology, sameTopology } from './manifest.js';
import { findNatsServer, NATS_INSTALL_HELP } from './nats-binary.js';
import { prepareNatsSecurity, waitForSecureNats, type LocalNatsSecurity } from './nats-security-files.js';
import { freePorts, isPortFree, LOOPBACK_HOST, waitForPort } from './ports.js';
import { SupervisedProcess } from './supervised-process.js';
import { ensureClusterCertificates } from '../security/certs.js';

export const NATS_READY_TIMEOUT_MS = 15_000;
export const LOCK_FILE = 'supervisor.lock';
export const TOPOLOGY_MARKER_FILE = 'topology.json';

export class LocalRuntimeError extends Error {
  override name = 'LocalRuntimeError';
}

export interface SupervisorOptions {
  readonly stateDir: string;
  readonly manifest: BankCluster;
  /** An existing NATS; otherwise the supervisor runs nats-server. */
  readonly natsUrl?: string;
  readonly replicaMain: string;
  readonly logLevel?: string;
  readonly log: (line: string) => void;
  /**
   * 'tls' (default): TLS for clients and peers with certificates in <stateDir>/certs, and a
   * managed nats-server with TLS and the replica/watcher users (docs/SECURITY.md).
   * 'insecure': all of it plaintext, NATS without users.
   */
  readonly security?: 'tls' | 'insecure';
}

/** Refuses a state dir whose cluster is running, or whose data was written for another cluster or topology. */
export function checkStateDir(stateDir: string, manifest: BankCluster): void {
  const book = readAddressBook(stateDir);
  const topology = manifestTopology(manifest);
  if (book !== undefined) {
    if (isProcessAlive(book.supervisorPid) && book.supervisorPid !== process.pid) {
      throw new LocalRuntimeError(
        `a cluster is already running from ${stateDir} (supervisor pid ${book.supervisorPid}); stop it with: shardbank down --state-dir ${stateDir}`,
      );
    }
    if (book.cluster !== manifest.metadata.name) {
      throw new LocalRuntimeError(
        `${stateDir} holds cluster "${book.cluster}", the manifest names "${manifest.metadata.name}"; use another --state-dir`,
      );
    }
  }
  const marker = readTopologyMarker(stateDir);
  const recorded = marker ?? book?.topology;
  if (recorded !== undefined && !sameTopology(recorded, topology)) {
    throw new LocalRuntimeError(
      `the data in ${stateDir} was written with topology (${describeTopology(recorded)}), the manifest asks for (${describeTopology(topology)}); ` +
        'a running ledger cannot be re-sharded: use another --state-dir, or delete this one to start from scratch',
    );
  }
}

interface DataMarker {
  cluster: string;
  topology: Topology;
  incarnation?: string;
}

/** What the data dir was written for; survives a lost address book. */
function readDataMarker(stateDir: string): DataMarker | undefined {
  const path = join(stateDir, 'data', TOPOLOGY_MARKER_FILE);
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as DataMarker;
  } catch (error) {
    throw new LocalRuntimeError(
      `${path}: unreadable (${(error as Error).message}); it records which topology the data was written with`,
    );
  }
}

function readTopologyMarker(stateDir: string): Topology | undefined {
  return readDataMarker(stateDir)?.topology;
}

function acquireLock(stateDir: string): void {
  const path = join(stateDir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = Number(readFileSync(path, 'utf8'));
      if (isProcessAlive(owner) && owner !== process.pid) {
        throw new LocalRuntimeError(
          `a cluster is already running from ${stateDir} (supervisor pid ${owner}); stop it with: shardbank down --state-dir ${stateDir}`,
        );
      }
      rmSync(path, { force: true });
    }
  }
  throw new LocalRuntimeError(`could not take the lock ${path}`);
}

export class LocalSupervisor {
  private readonly replicas: SupervisedProcess[] = [];
  private nats: SupervisedProcess | undefined;
  /** Set when the managed nats-server runs with TLS and users. */
  private natsSecurity: LocalNatsSecurity | undefined;
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly book: AddressBook,
    private readonly options: SupervisorOptions,
  ) {}

  static async start(options: SupervisorOptions): Promise<LocalSupervisor> {
    const { stateDir, manifest } = options;
    for (const directory of [stateDir, join(stateDir, 'data'), join(stateDir, 'logs')])
      mkdirSync(directory, { recursive: true });
    checkStateDir(stateDir, manifest);
    acquireLock(stateDir);
    try {
      const book = await planAddressBook(options);
      book.security = options.security ?? 'tls';
      if (book.security === 'tls') await ensureLocalCertificates(stateDir, book);
      const supervisor = new LocalSupervisor(book, options);
      const marker: DataMarker = { cluster: book.cluster, topology: book.topology, incarnation: book.incarnation };
      writeFileSync(join(stateDir, 'data', TOPOLOGY_MARKER_FILE), `${JSON.stringify(marker, null, 2)}\n`);
      await supervisor.startNats();
      supervisor.save();
      supervisor.startReplicas();
      return supervisor;
    } catch (error) {
      rmSync(join(stateDir, LOCK_FILE), { force: true });
      throw error;
    }
  }

  private save(): void {
    writeAddressBook(this.options.stateDir, this.book);
  }

  private async startNats(): Promise<void> {
    if (!this.book.natsManaged) return;
    const binary = findNatsServer();
    if (binary === undefined) throw new LocalRuntimeError(NATS_INSTALL_HELP);
    const port = this.book.natsPort!;
    const storeDir = join(this.options.stateDir, 'nats');
    mkdirSync(storeDir, { recursive: true });
    const args = await this.natsServerArgs(port, storeDir);
    const spawnError: { value?: NodeJS.ErrnoException } = {};
    this.nats = new SupervisedProcess(
      {
        name: 'nats-server',
        command: binary,
        args,
        logFile: join(this.options.stateDir, 'logs', 'nats-server.log'),
      },
      {
        onStart: (pid) => {
          this.book.natsPid = pid;
          this.save();
          this.options.log(`nats-server started (pid ${pid}, ${this.book.natsUrl})`);
        },
        onExit: (code, signal, willRestart) => {
          this.book.natsPid = null;
          this.save();
          if (willRestart) this.options.log(`nats-server exited (${signal ?? `code ${code}`}); restarting`);
        },
        onSpawnError: (error) => {
          spawnError.value = error;
        },
      },
    );
    this.nats.start();
    const ready = this.natsSecurity
      ? await waitForSecureNats(this.book.natsUrl!, this.natsSecurity, NATS_READY_TIMEOUT_MS)
      : await waitForPort(port, NATS_READY_TIMEOUT_MS);
    if (!ready) {
      await this.nats.stop(1000);
      if (spawnError.value?.code === 'ENOENT') throw new LocalRuntimeError(NATS_INSTALL_HELP);
      throw new LocalRuntimeError(
        `nats-server did not listen on ${LOOPBACK_HOST}:${port} within ${NATS_READY_TIMEOUT_MS} ms; see ${join(this.options.stateDir, 'logs', 'nats-server.log')}`,
      );
    }
  }

  /** Plain flags (insecure), or a config file with TLS and the two users (the default). */
  private async natsServerArgs(port: number, storeDir: string): Promise<string[]> {
    if (this.options.security === 'insecure') {
      return ['-js', '-a', LOOPBACK_HOST, '-p', String(port), '-sd', storeDir];
    }
    this.natsSecurity = await prepareNatsSecurity(this.options.stateDir, this.book, { port, storeDir });
    this.book.natsUrl = `tls://${LOOPBACK_HOST}:${port}`;
    this.book.natsCa = this.natsSecurity.caFile;
    this.book.natsCreds = this.natsSecurity.watcherCredentials;
    return ['-c', this.natsSecurity.configFile];
  }

  private startReplicas(): void {
    const peers = formatEndpoints(endpointsFromEntries(this.book));
    for (const entry of this.book.replicas) this.startReplica(entry, peers);
  }

  /** Starts (and supervises) the replica of one address book entry with this peer list. */
  private startReplica(entry: ReplicaEntry, peers: string): void {
    {
      mkdirSync(entry.dataDir, { recursive: true });
      const process = new SupervisedProcess(
        {
          name: `replica s${entry.shard}-${entry.ordinal}`,
          command: globalThis.process.execPath,
          args: this.replicaArgs(entry, peers),
          logFile: entry.logFile,
        },
        {
          onStart: (pid) => {
            entry.pid = pid;
            this.save();
            if (entry.restarts > 0)
              this.options.log(
                `replica s${entry.shard}-${entry.ordinal} started again (pid ${pid}, restart ${entry.restarts})`,
              );
          },
          onExit: (code, signal, willRestart) => {
            entry.pid = null;
            entry.restarts += willRestart ? 1 : 0;
            this.save();
            if (willRestart)
              this.options.log(
                `replica s${entry.shard}-${entry.ordinal} exited (${signal ?? `code ${code}`}); restarting`,
              );
          },
        },
      );
      this.replicas.push(process);
      this.processes.set(entry, process);
      process.start();
    }
  }

  private readonly processes = new Map<ReplicaEntry, SupervisedProcess>();

  /**
   * Membership changes (node/local/resize.ts): a new slot's entry (ports, data dir, its
   * certificate) started with the full peer list; the running replicas keep theirs (they learn
   * its address from the shard's configuration).
   */
  async addSlot(shard: number): Promise<ReplicaEntry> {
    const ordinal = this.book.replicas.filter((entry) => entry.shard === shard).length;
    const [grpcPort, httpPort] = (await freePorts(2)) as [number, number];
    const entry: ReplicaEntry = {
      shard,
      ordinal,
      grpcPort,
      httpPort,
      pid: null,
      restarts: 0,
      address: `${LOOPBACK_HOST}:${grpcPort}`,
      httpAddress: `${LOOPBACK_HOST}:${httpPort}`,
      dataDir: join(this.options.stateDir, 'data', `s${shard}-${ordinal}`),
      logFile: join(this.options.stateDir, 'logs', `s${shard}-${ordinal}.log`),
    };
    // A slot used before (a shrink, then a grow) starts empty: its old member was removed.
    rmSync(entry.dataDir, { recursive: true, force: true });
    this.book.replicas.push(entry);
    if (this.book.security === 'tls') await ensureLocalCertificates(this.options.stateDir, this.book, ordinal + 1);
    this.save();
    this.startReplica(entry, formatEndpoints(endpointsFromEntries(this.book)));
    return entry;
  }

  /** The replica of the highest slot of `shard` (already removed from the configuration): stopped, its data dir and entry gone. */
  async removeSlot(entry: ReplicaEntry): Promise<void> {
    const process = this.processes.get(entry);
    if (process !== undefined) {
      await process.stop();
      this.processes.delete(entry);
      this.replicas.splice(this.replicas.indexOf(process), 1);
    }
    rmSync(entry.dataDir, { recursive: true, force: true });
    this.book.replicas.splice(this.book.replicas.indexOf(entry), 1);
    this.save();
  }

  /** The current size is recorded once every shard has it (the data marker too). */
  recordReplicasPerShard(replicasPerShard: number): void {
    this.book.topology = { ...this.book.topology, replicasPerShard };
    this.save();
    const marker: DataMarker = {
      cluster: this.book.cluster,
      topology: this.book.topology,
      incarnation: this.book.incarnation,
    };
    writeFileSync(
      join(this.options.stateDir, 'data', TOPOLOGY_MARKER_FILE),
      `${JSON.stringify(marker, null, 2)}
`,
    );
  }

  get stateDir(): string {
    return this.options.stateDir;
  }

  get log(): (line: string) => void {
    return this.options.log;
  }

  private replicaArgs(entry: ReplicaEntry, peers: string): string[] {
    const { book, manifest } = { book: this.book, manifest: this.options.manifest };
    const args = [
      this.options.replicaMain,
      '--cluster',
      book.cluster,
      '--namespace',
      book.namespace,
      '--incarnation',
      book.incarnation,
      '--shard',
      String(entry.shard),
      '--ordinal',
      String(entry.ordinal),
      '--shards',
      String(book.topology.shards),
      '--replicas-per-shard',
      String(book.topology.replicasPerShard),
      '--founding-replicas',
      String(book.foundingReplicas ?? book.topology.replicasPerShard),
      '--items-per-shard',
      String(book.topology.itemsPerShard),
      '--initial-balance',
      String(book.topology.initialBalance),
      '--max-transfer-amount',
      String(manifest.spec.maxTransferAmount),
      '--peers',
      peers,
      '--data-dir',
      entry.dataDir,
      '--listen-host',
      LOOPBACK_HOST,
      '--grpc-port',
      String(entry.grpcPort),
      '--http-port',
      String(entry.httpPort),
      '--log-level',
      this.options.logLevel ?? 'info',
    ];
    if (book.natsUrl) args.push('--nats-url', book.natsUrl);
    args.push(...replicaSecurityArgs(this.options.stateDir, book, entry));
    if (this.natsSecurity !== undefined) {
      args.push('--nats-ca', this.natsSecurity.caFile, '--nats-creds', this.natsSecurity.replicaCredentials);
    }
    const socketDirectory = this.peerSocketDirectory();
    if (socketDirectory !== undefined) args.push('--peer-socket-dir', socketDirectory);
    return args;
  }

  /**
   * Every replica runs on this host, so peers talk over Unix sockets in the state directory
   * (cheaper than loopback TCP; see peer-transport.ts). A state directory whose socket paths
   * would be too long for the kernel keeps TCP.
   */
  private peerSocketDirectory(): string | undefined {
    const directory = join(this.options.stateDir, 'sockets');
    if (peerSocketPathTooLong(directory, this.book.topology) !== undefined) return undefined;
    // 0700: a peer on a Unix socket is authenticated by the file system (docs/SECURITY.md).
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    chmodSync(directory, 0o700);
    return directory;
  }

  /** Stops replicas (SIGTERM, in parallel), then nats-server; idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.options.log('stopping replicas');
      await Promise.all(this.replicas.map((replica) => replica.stop()));
      if (this.nats) {
        this.options.log('stopping nats-server');
        await this.nats.stop(5000);
      }
      this.book.supervisorPid = null;
      this.book.natsPid = null;
      for (const entry of this.book.replicas) entry.pid = null;
      this.save();
      rmSync(join(this.options.stateDir, LOCK_FILE), { force: true });
      this.options.log('stopped');
    })();
    return this.stopping;
  }
}

function endpointsFromEntries(book: AddressBook): string[][] {
  const endpoints: string[][] = Array.from({ length: book.topology.shards }, () => []);
  for (const entry of book.replicas) endpoints[entry.shard]![entry.ordinal] = entry.address;
  return endpoints;
}

/** Reuses the ports and incarnation of a previous run (resume), or chooses free ports. */
async function planAddressBook(options: SupervisorOptions): Promise<AddressBook> {
  const { stateDir, manifest } = options;
  const previous = readAddressBook(stateDir);
  const topology = manifestTopology(manifest);
  const externalNats = options.natsUrl ?? manifest.spec.nats.url;
  const replicaCount = topology.shards * topology.replicasPerShard;
  const fresh = await freePorts(replicaCount * 2 + 1);
  const natsPort = externalNats
    ? null
    : ((previous?.natsManaged ? previous.natsPort : null) ?? fresh[replicaCount * 2]!);
  const replicas: ReplicaEntry[] = [];
  for (let shard = 0; shard < topology.shards; shard += 1) {
    for (let ordinal = 0; ordinal < topology.replicasPerShard; ordinal += 1) {
      const index = shard * topology.replicasPerShard + ordinal;
      const old = previous?.replicas.find((entry) => entry.shard === shard && entry.ordinal === ordinal);
      const grpcPort = old?.grpcPort ?? fresh[index * 2]!;
      const httpPort = old?.httpPort ?? fresh[index * 2 + 1]!;
      replicas.push({
        shard,
        ordinal,
        grpcPort,
        httpPort,
        pid: null,
        restarts: 0,
        address: `${LOOPBACK_HOST}:${grpcPort}`,
        httpAddress: `${LOOPBACK_HOST}:${httpPort}`,
        dataDir: join(stateDir, 'data', `s${shard}-${ordinal}`),
        logFile: join(stateDir, 'logs', `s${shard}-${ordinal}.log`),
      });
    }
  }
  await checkPortsFree(
    [...replicas.flatMap((entry) => [entry.grpcPort, entry.httpPort]), ...(natsPort === null ? [] : [natsPort])],
    stateDir,
  );
  assert(replicas.length === replicaCount, 'one address book entry per replica');
  return {
    version: ADDRESS_BOOK_VERSION,
    cluster: manifest.metadata.name,
    namespace: manifest.metadata.namespace ?? 'default',
    incarnation: previous?.incarnation ?? readDataMarker(stateDir)?.incarnation ?? randomUUID(),
    natsUrl: externalNats ?? `nats://${LOOPBACK_HOST}:${natsPort}`,
    natsManaged: externalNats === undefined,
    natsPort,
    natsPid: null,
    topology,
    foundingReplicas: previous?.foundingReplicas ?? previous?.topology.replicasPerShard ?? topology.replicasPerShard,
    maxTransferAmount: manifest.spec.maxTransferAmount,
    replicas,
    supervisorPid: process.pid,
    supervisorLog: previous?.supervisorLog ?? null,
    stateDir,
    startedAtMs: Date.now(),
  };
}

/** The CLI's client certificate for membership changes (role admin), in <stateDir>/certs. */
export const MEMBERSHIP_CLIENT = 'membership';

/**
 * The CA, every replica's certificate (`slots` per shard), the CLI's client certificate
 * `admin` (role transfer) and `membership` (role admin: `up -f` changing the replica count)
 * in <stateDir>/certs, made where missing (docs/SECURITY.md).
 */
async function ensureLocalCertificates(stateDir: string, book: AddressBook, slots?: number): Promise<void> {
  await ensureClusterCertificates(
    join(stateDir, 'certs'),
    {
      namespace: book.namespace,
      cluster: book.cluster,
      shards: book.topology.shards,
      replicasPerShard: Math.max(slots ?? 0, book.topology.replicasPerShard),
    },
    { admin: 'transfer', [MEMBERSHIP_CLIENT]: 'admin' },
  );
}

/** `--tls-*` with the replica's own certificate, or `--insecure`. */
function replicaSecurityArgs(stateDir: string, book: AddressBook, entry: ReplicaEntry): string[] {
  if (book.security !== 'tls') return ['--insecure'];
  const file = join(stateDir, 'certs', `replica-s${entry.shard}-${entry.ordinal}`);
  return ['--tls-cert', `${file}.crt`, '--tls-key', `${file}.key`, '--tls-ca', join(stateDir, 'certs', 'ca.crt')];
}

async function checkPortsFree(ports: readonly number[], stateDir: string): Promise<void> {
  const busy: number[] = [];
  for (const port of ports) if (!(await isPortFree(port))) busy.push(port);
  if (busy.length > 0) {
    throw new LocalRuntimeError(
      `ports ${busy.join(', ')} recorded in ${join(stateDir, 'cluster.json')} are in use by another process (replicas left by a supervisor that was killed? 'shardbank down --state-dir ${stateDir}' stops them); free them and run up again`,
    );
  }
}
