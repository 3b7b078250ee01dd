// The comparison workload's driver, shared by the PostgreSQL and etcd versions (README.md
// here): N clients in a closed loop for S seconds, each sending one transfer of amount 1
// between two distinct accounts drawn uniformly from 9000, then the next; one JSON line.
import { performance } from 'node:perf_hooks';

export const ACCOUNTS = 9000;
export const INITIAL_BALANCE = 10;
export const AMOUNT = 1;

/** What one transfer came to: applied, or refused for lack of funds (nothing applied). */
export type TransferDone = { applied: boolean; retries: number };

export interface BankConnection {
  transfer(from: number, to: number, amount: number): Promise<TransferDone>;
  close(): Promise<void>;
}

export interface WorkloadResult {
  system: string;
  clients: number;
  seconds: number;
  transfers: number;
  transfers_per_s: number;
  p50_ms: number;
  p99_ms: number;
  insufficient_funds: number;
  retries: number;
  errors: number;
}

export function parseWorkloadArgs(argv: readonly string[]): { clients: number; seconds: number } {
  const [clientsText = '1', secondsText = '10'] = argv;
  const clients = Number(clientsText);
  const seconds = Number(secondsText);
  if (!Number.isSafeInteger(clients) || clients < 1 || clients > 1024)
    throw new Error(`CLIENTS: expected an integer from 1 to 1024, got ${JSON.stringify(clientsText)}`);
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 3600)
    throw new Error(`SECONDS: expected a number from 0 to 3600, got ${JSON.stringify(secondsText)}`);
  return { clients, seconds };
}

/** Two distinct accounts, uniformly. */
export function randomPair(random: () => number = Math.random): [from: number, to: number] {
  const from = 1 + Math.floor(random() * ACCOUNTS);
  let to = 1 + Math.floor(random() * (ACCOUNTS - 1));
  if (to >= from) to += 1;
  return [from, to];
}

/** The q-quantile of sorted values (nearest rank). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

const round = (value: number, digits: number) => Number(value.toFixed(digits));

/** Runs the closed loop on connections already open; errors are counted and the loop goes on. */
export async function closedLoop(
  system: string,
  connections: readonly BankConnection[],
  seconds: number,
): Promise<WorkloadResult> {
  const latencies: number[] = [];
  let insufficient = 0;
  let retries = 0;
  let errors = 0;
  let firstError: unknown;
  const startedAt = performance.now();
  const endAt = startedAt + seconds * 1000;
  await Promise.all(
    connections.map(async (connection) => {
      while (performance.now() < endAt) {
        const [from, to] = randomPair();
        const sentAt = performance.now();
        try {
          const done = await connection.transfer(from, to, AMOUNT);
          latencies.push(performance.now() - sentAt);
          if (!done.applied) insufficient += 1;
          retries += done.retries;
        } catch (error) {
          errors += 1;
          firstError ??= error;
          if (errors > 1000) throw error;
        }
      }
    }),
  );
  const elapsedS = (performance.now() - startedAt) / 1000;
  if (firstError !== undefined)
    process.stderr.write(`${system}: ${errors} failed transfers, the first: ${String(firstError)}\n`);
  latencies.sort((a, b) => a - b);
  return {
    system,
    clients: connections.length,
    seconds: round(elapsedS, 2),
    transfers: latencies.length,
    transfers_per_s: round(latencies.length / elapsedS, 1),
    p50_ms: round(quantile(latencies, 0.5), 3),
    p99_ms: round(quantile(latencies, 0.99), 3),
    insufficient_funds: insufficient,
    retries,
    errors,
  };
}
