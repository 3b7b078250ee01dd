// Validation of client requests: pure, and every message names the field. Bad input changes
// nothing: it is refused before it reaches the log.
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { Topology } from '../cluster/topology.js';
import { isItem, itemCount } from '../cluster/topology.js';
import { SESSION_LIMITS } from '../bank/session-table.js';
import type { TransferInput } from '../shard/shard-node.js';

export const REQUEST_LIMITS = {
  batchEntriesMax: 10_000,
  balanceItemsMax: 10_000,
  clientIdBytesMax: SESSION_LIMITS.clientIdBytesMax,
} as const;

// A batch of one client id on one shard, and the one after it, must fit in the session's window
// of finished outcomes, or outcomes the client has not seen yet are trimmed.
if (!(SESSION_LIMITS.resultsPerSessionMax >= 2 * REQUEST_LIMITS.batchEntriesMax))
  throw new Error('SESSION_LIMITS.resultsPerSessionMax must hold two of the largest batches');

export type Invalid = { ok: false; code: 'invalid-argument' | 'failed-precondition'; message: string };
export type Checked<T> = { ok: true; value: T } | Invalid;

export interface ValidationContext {
  cluster: string;
  topology: Topology;
  maxTransferAmount: number;
}

/** The gRPC status a refused request ends with. */
export function grpcStatusOf(failure: Invalid): GrpcStatus {
  return failure.code === 'failed-precondition' ? GrpcStatus.FAILED_PRECONDITION : GrpcStatus.INVALID_ARGUMENT;
}

const invalid = (message: string): Invalid => ({ ok: false, code: 'invalid-argument', message });

export function checkCluster(cluster: string, context: ValidationContext): Invalid | undefined {
  if (cluster === '')
    return invalid(`cluster: must name the cluster (this replica belongs to ${JSON.stringify(context.cluster)})`);
  if (cluster !== context.cluster) {
    return {
      ok: false,
      code: 'failed-precondition',
      message: `cluster: request is for ${JSON.stringify(cluster)}, but this replica belongs to ${JSON.stringify(context.cluster)}`,
    };
  }
  return undefined;
}

export function checkClientId(clientId: string): Invalid | undefined {
  if (clientId.length === 0) return invalid('client_id: must not be empty');
  const bytes = Buffer.byteLength(clientId, 'utf8');
  if (bytes > REQUEST_LIMITS.clientIdBytesMax)
    return invalid(`client_id: at most ${REQUEST_LIMITS.clientIdBytesMax} bytes, got ${bytes}`);
  return undefined;
}

export function checkItem(field: string, item: number, topology: Topology): Invalid | undefined {
  if (!isItem(topology, item)) return invalid(`${field}: unknown item ${item} (items are 1..${itemCount(topology)})`);
  return undefined;
}

export function checkTransferFields(
  entry: {
    requestId: number;
    from: number;
    to: number;
    amount: number;
    acknowledgedBelow?: number;
    sessionEpoch?: number;
  },
  clientId: string,
  context: ValidationContext,
): Checked<TransferInput> {
  const failure =
    checkClientId(clientId) ??
    (Number.isSafeInteger(entry.requestId) && entry.requestId > 0
      ? undefined
      : invalid(`request_id: must be a positive integer, got ${entry.requestId}`)) ??
    checkItem('from', entry.from, context.topology) ??
    checkItem('to', entry.to, context.topology) ??
    (entry.from === entry.to ? invalid(`to: must differ from from (both are ${entry.from})`) : undefined) ??
    checkAmount(entry.amount, context.maxTransferAmount) ??
    ((entry.acknowledgedBelow ?? 0) >= entry.requestId
      ? invalid(`acknowledged_below: must be below request_id ${entry.requestId}, got ${entry.acknowledgedBelow}`)
      : undefined) ??
    checkSessionEpoch(entry.sessionEpoch ?? 0);
  if (failure) return failure;
  return {
    ok: true,
    value: {
      clientId,
      requestId: entry.requestId,
      from: entry.from,
      to: entry.to,
      amount: entry.amount,
      acknowledgedBelow: entry.acknowledgedBelow ?? 0,
      sessionEpoch: entry.sessionEpoch ?? 0,
    },
  };
}

/**
 * A transfer must name the epoch of its client's session on the shard of `from`
 * (OpenSession). 0 (unset) is refused with FAILED_PRECONDITION: there is no implicit session,
 * because a first request whose reply was lost could not be told from a new one once its
 * session was forgotten (docs/ARCHITECTURE.md "Sessions").
 */
export function checkSessionEpoch(epoch: number): Invalid | undefined {
  if (!Number.isSafeInteger(epoch) || epoch < 0)
    return invalid(`session_epoch: must be a positive integer, got ${epoch}`);
  if (epoch === 0)
    return {
      ok: false,
      code: 'failed-precondition',
      message:
        'session_epoch: missing; open a session on the shard of from (OpenSession) and send its epoch with every transfer',
    };
  return undefined;
}

export function checkAmount(amount: unknown, maxTransferAmount: number): Invalid | undefined {
  if (typeof amount !== 'number' || !Number.isSafeInteger(amount) || amount <= 0) {
    return invalid(`amount: must be a positive integer, got ${JSON.stringify(amount)}`);
  }
  if (amount > maxTransferAmount) return invalid(`amount: at most ${maxTransferAmount}, got ${amount}`);
  return undefined;
}
