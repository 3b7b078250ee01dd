// The running local cluster's address book, `<state>/cluster.json`: how every other
// command (transfer, status, chaos, down, a second up) finds the cluster. Written
// atomically (temp file + rename) so a reader never sees half a file.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Topology } from '../cluster/topology.js';
import { isProcessAlive } from '../util/process-alive.js';

export const ADDRESS_BOOK_FILE = 'cluster.json';
export const ADDRESS_BOOK_VERSION = 1;

export interface ReplicaEntry {
  shard: number;
  ordinal: number;
  address: string;
  httpAddress: string;
  grpcPort: number;
  httpPort: number;
  pid: number | null;
  dataDir: string;
  logFile: string;
  restarts: number;
}

export interface AddressBook {
  version: number;
  cluster: string;
  namespace: string;
  incarnation: string;
  natsUrl: string | null;
  /** True when the supervisor runs nats-server itself (and restarts it). */
  natsManaged: boolean;
  natsPort: number | null;
  natsPid: number | null;
  /**
   * NATS TLS and credentials every CLI command connects with (the `watcher` user), when the
   * supervisor runs nats-server with TLS and users; absent or null for a plaintext NATS.
   */
  natsCa?: string | null;
  natsCreds?: string | null;
  topology: Topology;
  /**
   * The size the shards were founded with (`--founding-replicas`): the Paxos core's initial
   * configuration forever; `topology.replicasPerShard` is the current size. Absent in books
   * written before membership changes: equal to topology.replicasPerShard.
   */
  foundingReplicas?: number;
  maxTransferAmount: number;
  replicas: ReplicaEntry[];
  supervisorPid: number | null;
  supervisorLog: string | null;
  stateDir: string;
  startedAtMs: number | null;
  /**
   * How clients and peers talk (docs/SECURITY.md): 'tls' (certificates in <stateDir>/certs) or
   * 'insecure' (`up --insecure`); absent in books written before TLS (plaintext).
   */
  security?: 'tls' | 'insecure';
}

export class AddressBookError extends Error {
  override name = 'AddressBookError';
}

export function addressBookPath(stateDir: string): string {
  return join(stateDir, ADDRESS_BOOK_FILE);
}

export function readAddressBook(stateDir: string): AddressBook | undefined {
  const path = addressBookPath(stateDir);
  if (!existsSync(path)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new AddressBookError(`${path}: not valid JSON (${(error as Error).message})`, { cause: error });
  }
  const book = parsed as Partial<AddressBook>;
  if (
    book.version !== ADDRESS_BOOK_VERSION ||
    typeof book.cluster !== 'string' ||
    !Array.isArray(book.replicas) ||
    typeof book.topology !== 'object'
  ) {
    throw new AddressBookError(`${path}: not a shardbank address book (version ${ADDRESS_BOOK_VERSION})`);
  }
  return book as AddressBook;
}

export function writeAddressBook(stateDir: string, book: AddressBook): void {
  const path = addressBookPath(stateDir);
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(book, null, 2)}\n`);
  renameSync(temporary, path);
}

/** Endpoints by `[shard][ordinal]`, as the client takes them. */
export function endpointsOf(book: AddressBook): string[][] {
  const endpoints: string[][] = Array.from({ length: book.topology.shards }, () => []);
  for (const replica of book.replicas) endpoints[replica.shard]![replica.ordinal] = replica.address;
  return endpoints;
}

/** A supervisor is running when its pid is alive and still a node process (pids get reused). */
export function isSupervisorRunning(book: AddressBook): boolean {
  if (!isProcessAlive(book.supervisorPid)) return false;
  try {
    const commandLine = readFileSync(`/proc/${book.supervisorPid}/cmdline`, 'utf8');
    return commandLine.includes('node') || commandLine.includes('shardbank');
  } catch {
    return true;
  }
}
