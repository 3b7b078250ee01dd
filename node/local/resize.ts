// `shardbank up -f` with another replicasPerShard on a running local cluster (docs/CLI.md):
// the CLI writes the wanted size to <state>/resize-request.json and sends the supervisor
// SIGUSR2; the supervisor changes each shard's membership one step at a time (grow: start the
// next slot's process, add it as a learner, wait until caught up, promote; shrink: demote and
// remove the highest slot's member, then stop its process) and writes every step with its
// duration to <state>/resize-status.json, which the CLI prints as it goes. Rerunning continues
// where a stopped change left off: each step re-reads the membership first.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadClientTls, tlsChannelCredentials, tlsChannelOptions } from '../client/tls.js';
import type { AddressBook } from './address-book.js';
import {
  addVoter,
  grpcMembershipCalls,
  removeVoter,
  type DriverContext,
  type MembershipCalls,
} from './membership-driver.js';
import { MEMBERSHIP_CLIENT, type LocalSupervisor } from './supervisor.js';

export const RESIZE_REQUEST_FILE = 'resize-request.json';
export const RESIZE_STATUS_FILE = 'resize-status.json';

export interface ResizeStatus {
  /** Which request this answers (the CLI's token). */
  token: string;
  state: 'running' | 'done' | 'failed';
  lines: string[];
}

export function readResizeStatus(stateDir: string): ResizeStatus | undefined {
  const path = join(stateDir, RESIZE_STATUS_FILE);
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as ResizeStatus;
  } catch {
    return undefined; // being replaced: the next read sees it
  }
}

function writeJson(path: string, value: unknown): void {
  writeFileSync(`${path}.tmp`, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(`${path}.tmp`, path);
}

export function writeResizeRequest(stateDir: string, replicasPerShard: number, token: string): void {
  writeJson(join(stateDir, RESIZE_REQUEST_FILE), { replicasPerShard, token });
}

/** Membership calls as the CLI's admin client (TLS) or plaintext (an --insecure cluster). */
export function localMembershipCalls(book: AddressBook): MembershipCalls {
  if (book.security !== 'tls') return grpcMembershipCalls(book.cluster, () => grpc.credentials.createInsecure());
  const certs = join(book.stateDir, 'certs');
  const tls = loadClientTls({
    cert: join(certs, `client-${MEMBERSHIP_CLIENT}.crt`),
    key: join(certs, `client-${MEMBERSHIP_CLIENT}.key`),
    ca: join(certs, 'ca.crt'),
  });
  return grpcMembershipCalls(book.cluster, () => tlsChannelCredentials(tls), tlsChannelOptions);
}

/**
 * CLI side: asks the running supervisor of `book` for `target` replicas per shard and prints
 * its steps until it is done (0) or failed (1).
 */
export async function requestResize(
  book: AddressBook,
  target: number,
  output: { out: (line: string) => void; err: (line: string) => void },
  timeoutMs = 30 * 60_000,
): Promise<number> {
  const token = `${process.pid}-${Date.now()}`;
  if (target === 1) output.err('warning: 1 replica per shard survives no failure: for development only');
  writeResizeRequest(book.stateDir, target, token);
  process.kill(book.supervisorPid!, 'SIGUSR2');
  const deadline = Date.now() + timeoutMs;
  let printed = 0;
  for (;;) {
    const status = readResizeStatus(book.stateDir);
    if (status?.token === token) {
      for (const line of status.lines.slice(printed)) output.out(line);
      printed = status.lines.length;
      if (status.state !== 'running') return status.state === 'done' ? 0 : 1;
    }
    if (Date.now() > deadline) {
      output.err(`no answer from the supervisor in ${timeoutMs} ms; see ${book.supervisorLog ?? 'its log'}`);
      return 1;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Supervisor side: serves resize requests (SIGUSR2), one at a time. */
export function serveResizeRequests(supervisor: LocalSupervisor): void {
  let running: Promise<void> = Promise.resolve();
  process.on('SIGUSR2', () => {
    running = running.then(() => handleRequest(supervisor)).catch(() => undefined);
  });
}

async function handleRequest(supervisor: LocalSupervisor): Promise<void> {
  const path = join(supervisor.stateDir, RESIZE_REQUEST_FILE);
  if (!existsSync(path)) return;
  const request = JSON.parse(readFileSync(path, 'utf8')) as { replicasPerShard: number; token: string };
  const status: ResizeStatus = { token: request.token, state: 'running', lines: [] };
  const statusPath = join(supervisor.stateDir, RESIZE_STATUS_FILE);
  const note = (line: string) => {
    status.lines.push(line);
    supervisor.log(line);
    writeJson(statusPath, status);
  };
  note(`resize to ${request.replicasPerShard} replicas per shard`);
  try {
    await resize(supervisor, request.replicasPerShard, note);
    status.state = 'done';
    note(`done: ${request.replicasPerShard} replicas per shard`);
  } catch (error) {
    status.state = 'failed';
    note(`failed: ${(error as Error).message} (run 'shardbank up -f' again to continue)`);
  }
}

/** Every shard, one step at a time, to `target` replicas. */
export async function resize(supervisor: LocalSupervisor, target: number, note: (line: string) => void): Promise<void> {
  const book = supervisor.book;
  const calls = localMembershipCalls(book);
  try {
    for (let shard = 0; shard < book.topology.shards; shard += 1) {
      const slots = () => book.replicas.filter((entry) => entry.shard === shard);
      const context = (): DriverContext => ({
        cluster: book.cluster,
        shard,
        addresses: slots().map((entry) => entry.address),
        calls,
        log: note,
      });
      // Grow. Every slot below the target is made a voter: steps already done are skipped
      // (a rerun after a stopped change continues where it stopped).
      for (let slot = 0; slot < target; slot += 1) {
        let entry = slots()[slot];
        if (entry === undefined) {
          entry = await supervisor.addSlot(shard);
          note(`shard ${shard}: slot ${entry.ordinal} started at ${entry.address}`);
        }
        await addVoter(context(), entry.address);
      }
      while (slots().length > target) {
        const entry = slots().at(-1)!;
        await removeVoter(context(), entry.address);
        const started = Date.now();
        await supervisor.removeSlot(entry);
        note(`shard ${shard}: slot ${entry.ordinal} stopped and forgotten: done in ${Date.now() - started} ms`);
      }
    }
    supervisor.recordReplicasPerShard(target);
  } finally {
    calls.close?.();
  }
}
