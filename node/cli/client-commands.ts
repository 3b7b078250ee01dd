// `shardbank transfer`, `balance` and `status`: one request each against the local
// cluster (address book) or --endpoints.
import {
  Consistency,
  MAX_TRANSFER_AMOUNT_DEFAULT,
  ShardbankClient,
  type TransferResult,
} from '../client/bank-client.js';
import { statusJson, type ClusterView } from '../client/status-view.js';
import {
  checkAmount,
  checkClientId,
  checkItem,
  checkTransferInput,
  parseIntegerArgument,
} from '../client/transfer-input.js';
import { renderShardTable } from '../local/live-table.js';
import { assertNever } from '../util/assert.js';
import { parseCommandArgs, parseDurationMs, resolveTarget, TARGET_HELP, TARGET_OPTIONS } from './args.js';
import { EXIT, reportError, UnavailableError, UsageError, type CliIo } from './cli-io.js';

const NO_ANSWER = 'cannot reach the cluster: no replica answered';

export const TRANSFER_HELP = `Usage: shardbank transfer FROM TO AMOUNT [--client-id ID --request-id N [--session-epoch E]] [--json]

Moves AMOUNT (a positive integer) from item FROM to item TO. Exit code 0 for a definite
answer (COMMITTED or INSUFFICIENT_FUNDS), 1 refused or ABORTED (nothing was applied), 2 bad
input (nothing was sent), 3 cluster unreachable, 4 UNKNOWN (no definite answer: retry with the
printed --client-id/--request-id/--session-epoch). A retry the cluster had already decided
says "deduplicated" (JSON "deduplicated": true): the outcome is the earlier one, applied
once. Without --client-id each call
is a new request. Given the same --client-id, --request-id and --session-epoch (printed by
the first call, "session E"), a repeated transfer is a safe retry however much later: it has
at most one effect, and once the cluster has forgotten the session it is refused
(FAILED_PRECONDITION "session expired"), never run again. Without --session-epoch a repeat
finds the client's session while the shard still remembers it (it keeps 10,000 sessions,
least recently used first out); after that it would open a new one and run as new.

Options:
  --client-id ID       client session id (default: a random one)
  --request-id N       request id, increasing per client (default: from the clock with --client-id)
  --session-epoch E    the session epoch an earlier call with this client id printed
  --timeout DURATION   overall deadline including retries (default 30s)
  --json               print {"outcome": ..., "deduplicated": false, ...}; errors as JSON on stderr
${TARGET_HELP}`;

export const BALANCE_HELP = `Usage: shardbank balance ITEM... [--consistency linearizable|any-replica] [--json]

Prints the balance of each item. --json prints {"balances": {"1001": 0, ...}}.
A read of several items is not a snapshot across shards.

Options:
  --consistency C      linearizable (default: never stale) or any-replica (may be stale)
  --json               machine-readable output
${TARGET_HELP}`;

export const STATUS_HELP = `Usage: shardbank status [--json]

Asks every replica about itself and prints, per shard, the leader, its ballot and each
replica's role, readiness and commit index (and, for a local cluster, its /metrics URL).
A replica that does not answer is "down".
Exit code 0 when every shard has a ready leader and a quorum of replicas up, 5 when some
shard has no leader or has lost its quorum (the output says which), 3 when no replica
answered at all. The output is printed in full in every case.

Options:
  --json               the stable JSON shape (pid only for local clusters), plus "healthy"
                       and "problems" (one string per degraded shard)
${TARGET_HELP}`;

const TRANSFER_OPTIONS = {
  ...TARGET_OPTIONS,
  'client-id': { type: 'string' },
  'request-id': { type: 'string' },
  'session-epoch': { type: 'string' },
  timeout: { type: 'string' },
} as const;

export function transferJson(result: TransferResult): Record<string, unknown> {
  return {
    outcome: result.outcome,
    clientId: result.clientId,
    requestId: result.requestId,
    from: result.from,
    to: result.to,
    amount: result.amount,
    ...(result.decisionIndex !== undefined ? { decisionIndex: result.decisionIndex } : {}),
    ...(result.coordinatorShard !== undefined ? { coordinatorShard: result.coordinatorShard } : {}),
    ...(result.sessionEpoch !== undefined ? { sessionEpoch: result.sessionEpoch } : {}),
    ...(result.outcome === 'COMMITTED' || result.outcome === 'INSUFFICIENT_FUNDS'
      ? { deduplicated: result.deduplicated === true }
      : {}),
    attempts: result.attempts,
    ...(result.message ? { message: result.message } : {}),
  };
}

export function transferExitCode(result: TransferResult): number {
  if (result.outcome === 'COMMITTED' || result.outcome === 'INSUFFICIENT_FUNDS') return EXIT.ok;
  if (result.outcome === 'UNKNOWN') return EXIT.unknown;
  return result.outcome === 'INVALID_ARGUMENT' && result.attempts === 0 ? EXIT.usage : EXIT.failure;
}

function parseRequestIdentity(
  clientId: string | undefined,
  requestIdText: string | undefined,
  sessionEpochText: string | undefined,
): { clientId?: string; requestId?: number; sessionEpoch?: number } {
  if (requestIdText !== undefined && clientId === undefined)
    throw new UsageError('--request-id needs --client-id (a request is named by both)');
  if (sessionEpochText !== undefined && requestIdText === undefined)
    throw new UsageError('--session-epoch needs --client-id and --request-id (it makes a retry of that request safe)');
  if (clientId === undefined) return {};
  if (sessionEpochText !== undefined) {
    const sessionEpoch = parseIntegerArgument(sessionEpochText);
    if (typeof sessionEpoch !== 'number' || sessionEpoch <= 0)
      throw new UsageError(`--session-epoch: must be a positive integer, got ${JSON.stringify(sessionEpochText)}`);
    return { ...parseRequestIdentity(clientId, requestIdText, undefined), sessionEpoch };
  }
  if (requestIdText === undefined) {
    // A fresh id above any this client id used before from this machine's clock.
    return { clientId, requestId: Date.now() * 1000 + Math.floor(Math.random() * 1000) };
  }
  const requestId = parseIntegerArgument(requestIdText);
  if (typeof requestId !== 'number' || requestId <= 0)
    throw new UsageError(`--request-id: must be a positive integer, got ${JSON.stringify(requestIdText)}`);
  return { clientId, requestId };
}

export async function transferCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, TRANSFER_OPTIONS, true);
  if (values.help) {
    io.out(TRANSFER_HELP);
    return EXIT.ok;
  }
  if (positionals.length !== 3)
    throw new UsageError(`transfer takes FROM TO AMOUNT, got ${positionals.length} arguments`);
  const [from, to, amount] = positionals.map(parseIntegerArgument) as [number, number, number];
  // Bad input is refused here, on stderr, before anything is sent (never an outcome on stdout).
  const amountCheck = checkAmount(amount, Number.MAX_SAFE_INTEGER);
  if (!amountCheck.ok) throw new UsageError(amountCheck.message, amountCheck.field);
  if (values['client-id'] !== undefined) {
    const clientCheck = checkClientId(values['client-id']);
    if (!clientCheck.ok) throw new UsageError(clientCheck.message.replace(/^client_id/, '--client-id'), '--client-id');
  }
  const identity = parseRequestIdentity(values['client-id'], values['request-id'], values['session-epoch']);
  const deadlineMs = values.timeout === undefined ? undefined : parseDurationMs('timeout', values.timeout);
  const target = await resolveTarget(values, true);
  const inputCheck = checkTransferInput(
    target.options.topology,
    { from, to, amount },
    target.options.maxTransferAmount ?? MAX_TRANSFER_AMOUNT_DEFAULT,
  );
  if (!inputCheck.ok) throw new UsageError(inputCheck.message, inputCheck.field);
  // One transfer: the plain Transfer call (coalescing only pays when many are in flight).
  const client = await ShardbankClient.connect({ ...target.options, coalesce: false });
  try {
    const result = await client.transfer({ from, to, amount, ...identity }, deadlineMs ? { deadlineMs } : {});
    if (values.json) io.out(JSON.stringify(transferJson(result)));
    else io.out(describeTransfer(result));
    return transferExitCode(result);
  } finally {
    await client.close();
  }
}

export function describeTransfer(result: TransferResult): string {
  const what = `${result.from} -> ${result.to} amount ${result.amount}`;
  const request = `client ${result.clientId}, request ${result.requestId}${result.sessionEpoch !== undefined ? `, session ${result.sessionEpoch}` : ''}`;
  const retry = `--client-id ${result.clientId} --request-id ${result.requestId}${result.sessionEpoch !== undefined ? ` --session-epoch ${result.sessionEpoch}` : ''}`;
  const dedup =
    result.deduplicated === true ? ', deduplicated: decided by an earlier call with these ids, applied once' : '';
  switch (result.outcome) {
    case 'COMMITTED':
      return `COMMITTED ${what} (${request}; decision index ${result.decisionIndex} on shard ${result.coordinatorShard}${dedup})`;
    case 'INSUFFICIENT_FUNDS':
      return `INSUFFICIENT_FUNDS ${what}: item ${result.from} does not hold ${result.amount} (${request}${dedup})`;
    case 'UNKNOWN':
      return `UNKNOWN ${what}: no definite answer before the deadline (${result.errorCode ?? 'error'}: ${result.message ?? ''}); retry with ${retry}`;
    case 'ABORTED':
      return `ABORTED ${what}: conflicts persisted, nothing was applied; retry with ${retry}: ${result.message ?? ''}`;
    case 'INVALID_ARGUMENT':
    case 'FAILED_PRECONDITION':
      return `${result.outcome} ${what}: ${result.message ?? ''} (${request})`;
    default:
      return assertNever(result.outcome, 'transfer outcome');
  }
}

const BALANCE_OPTIONS = { ...TARGET_OPTIONS, consistency: { type: 'string' }, timeout: { type: 'string' } } as const;

function parseConsistency(text: string | undefined): Consistency {
  if (text === undefined || text === 'linearizable') return Consistency.LINEARIZABLE;
  if (text === 'any-replica' || text === 'any_replica') return Consistency.ANY_REPLICA;
  throw new UsageError(`--consistency: expected linearizable or any-replica, got ${JSON.stringify(text)}`);
}

export async function balanceCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, BALANCE_OPTIONS, true);
  if (values.help) {
    io.out(BALANCE_HELP);
    return EXIT.ok;
  }
  if (positionals.length === 0) throw new UsageError('balance takes at least one ITEM');
  const consistency = parseConsistency(values.consistency);
  const deadlineMs = values.timeout === undefined ? undefined : parseDurationMs('timeout', values.timeout);
  const target = await resolveTarget(values, true);
  const items = positionals.map(parseIntegerArgument);
  for (const item of items) {
    const check = checkItem(target.options.topology, 'item', item);
    if (!check.ok) throw new UsageError(check.message);
  }
  const client = await ShardbankClient.connect(target.options);
  try {
    const balances = await client.balance(items as number[], consistency, deadlineMs ? { deadlineMs } : {});
    if (values.json) io.out(JSON.stringify(balanceJson(items as number[], balances)));
    else for (const item of items as number[]) io.out(`${item}\t${balances.get(item)}`);
    return EXIT.ok;
  } finally {
    await client.close();
  }
}

export function balanceJson(
  items: readonly number[],
  balances: ReadonlyMap<number, number>,
): { balances: Record<string, number> } {
  const result: Record<string, number> = {};
  for (const item of items) {
    const balance = balances.get(item);
    if (balance !== undefined) result[String(item)] = balance;
  }
  return { balances: result };
}

export async function statusCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(argv, TARGET_OPTIONS, false);
  if (values.help) {
    io.out(STATUS_HELP);
    return EXIT.ok;
  }
  const target = await resolveTarget(values, false);
  // Status asks every replica itself: no NATS watcher needed.
  const client = new ShardbankClient({ ...target.options, natsUrl: undefined });
  try {
    const view = await client.clusterStatus();
    const problems = statusProblems(view);
    const answered = view.shards.some((shard) => shard.replicas.some((replica) => replica.role !== 'down'));
    const code = problems.length === 0 ? EXIT.ok : answered ? EXIT.degraded : EXIT.unavailable;
    if (values.json) {
      io.out(
        JSON.stringify({
          ...(statusJson(view, target.book !== undefined) as object),
          healthy: problems.length === 0,
          problems,
          security: target.options.tls === undefined ? 'insecure' : 'tls',
        }),
      );
      if (!answered) reportError(io, 'status', new UnavailableError(NO_ANSWER), true);
      return code;
    }
    const state =
      target.book === undefined
        ? ''
        : target.running
          ? ` (local, ${target.stateDir})`
          : ` (local, NOT RUNNING, ${target.stateDir})`;
    // Plaintext is said in the header: a local book without TLS, or a remote cluster without --ca.
    const insecure = target.options.tls === undefined ? ' INSECURE (plaintext, no authentication)' : '';
    io.out(`cluster ${view.cluster}${state}${insecure}`);
    const book = target.book;
    const restartsOf = (shard: number) =>
      book?.replicas.filter((r) => r.shard === shard).reduce((sum, r) => sum + r.restarts, 0) ?? 0;
    for (const line of renderShardTable(view, restartsOf)) io.out(line);
    io.out('');
    for (const shard of view.shards) {
      const ids = (list: number[]) => (list.length === 0 ? '-' : list.join(','));
      const change = shard.membershipChangeInFlight ? ' (membership change in flight)' : '';
      io.out(`s${shard.shard} members: voters ${ids(shard.voters)} learners ${ids(shard.learners)}${change}`);
    }
    io.out('');
    for (const shard of view.shards) {
      for (const replica of shard.replicas) {
        const pid = replica.pid === null ? '' : ` pid ${replica.pid}`;
        const http = book?.replicas.find((r) => r.shard === shard.shard && r.ordinal === replica.ordinal)?.httpAddress;
        const metrics = http ? ` metrics http://${http}/metrics` : '';
        io.out(
          `s${shard.shard}-${replica.ordinal}  ${replica.role.padEnd(9)} ${replica.ready ? 'ready    ' : 'not ready'} ${replica.address}${pid} commit ${replica.commitIndex ?? '-'} applied ${replica.appliedIndex ?? '-'}${metrics}`,
        );
      }
    }
    io.out('');
    io.out(
      problems.length === 0
        ? 'health: ok (every shard has a ready leader and a quorum)'
        : `health: DEGRADED: ${problems.join('; ')}`,
    );
    if (!answered) reportError(io, 'status', new UnavailableError(NO_ANSWER), false);
    return code;
  } finally {
    await client.close();
  }
}

/** Per degraded shard, what is wrong: no (ready) leader, or fewer replicas up than a quorum. */
export function statusProblems(view: ClusterView): string[] {
  const problems: string[] = [];
  for (const shard of view.shards) {
    const up = shard.replicas.filter((replica) => replica.role !== 'down').length;
    const quorum = Math.floor(shard.replicas.length / 2) + 1;
    if (up < quorum)
      problems.push(
        `shard ${shard.shard} lost its quorum (${up} of ${shard.replicas.length} replicas up, ${quorum} needed)`,
      );
    if (shard.leader === null) problems.push(`shard ${shard.shard} has no leader`);
    else if (!shard.replicas.find((replica) => replica.ordinal === shard.leader!.ordinal)?.ready)
      problems.push(`shard ${shard.shard}: leader ${shard.leader.ordinal} is not ready`);
  }
  return problems;
}
