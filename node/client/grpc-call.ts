// One unary call on a Bank stub, as a value: grpc-js callbacks turned into
// `{ok: true, value} | {ok: false, error}` (grpc-js StatusOr style), plus the
// classification of gRPC status codes the client's retry loop needs.
import { Metadata, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import type { BankClient as BankStub } from '../gen/shardbank/v1/bank.js';

export type CallResult<T> = { ok: true; value: T; leaderHint?: LeaderHint } | { ok: false; error: CallError };

export interface CallError {
  readonly code: GrpcStatus;
  readonly codeName: string;
  readonly details: string;
  /** `shardbank-leader: <ordinal>,<host:port>` trailing metadata, when the replica had a hint. */
  readonly leaderHint: LeaderHint | undefined;
}

export interface LeaderHint {
  readonly ordinal: number;
  readonly address: string | undefined;
}

export const LEADER_HINT_METADATA_KEY = 'shardbank-leader';

export function codeName(code: number): string {
  return (GrpcStatus as unknown as Record<number, string>)[code] ?? `CODE_${code}`;
}

/** Parses `<ordinal>,<host:port>` (the address part may be missing). */
export function parseLeaderHint(value: string): LeaderHint | undefined {
  const [ordinalText, address] = value.split(',', 2);
  const ordinal = Number(ordinalText);
  if (!Number.isInteger(ordinal) || ordinal < 0) return undefined;
  const trimmed = address?.trim();
  return { ordinal, address: trimmed && trimmed.length > 0 ? trimmed : undefined };
}

function hintOf(metadata: Metadata | undefined): LeaderHint | undefined {
  const values = metadata?.get(LEADER_HINT_METADATA_KEY) ?? [];
  for (const value of values) {
    const hint = parseLeaderHint(typeof value === 'string' ? value : value.toString('utf8'));
    if (hint !== undefined) return hint;
  }
  return undefined;
}

export function toCallError(error: ServiceError | Error): CallError {
  const service = error as Partial<ServiceError>;
  const code = typeof service.code === 'number' ? service.code : GrpcStatus.UNAVAILABLE;
  return {
    code,
    codeName: codeName(code),
    details: service.details ?? error.message,
    leaderHint: hintOf(service.metadata),
  };
}

/**
 * Codes after which the request may or may not have run, or certainly did not run for a
 * reason that can pass (no leader, connection refused): retry with the same id.
 */
const RETRYABLE_CODES: ReadonlySet<number> = new Set([
  GrpcStatus.UNAVAILABLE,
  GrpcStatus.DEADLINE_EXCEEDED,
  GrpcStatus.CANCELLED,
  GrpcStatus.UNKNOWN,
  GrpcStatus.INTERNAL,
  GrpcStatus.RESOURCE_EXHAUSTED,
]);

export function isRetryable(code: number): boolean {
  return RETRYABLE_CODES.has(code);
}

type UnaryMethod = 'openSession' | 'transfer' | 'batchTransfer' | 'getBalance' | 'clusterStatus';

export function unaryCall<Request, Reply>(
  stub: BankStub,
  method: UnaryMethod,
  request: Request,
  timeoutMs: number,
): Promise<CallResult<Reply>> {
  return new Promise((resolve) => {
    // A success resolves on the status event, which carries the trailing metadata naming
    // the replica that served the call (the callback comes just before it).
    let reply: Reply | undefined;
    let failed = false;
    const callback = (error: ServiceError | null, value: Reply) => {
      if (error) {
        failed = true;
        resolve({ ok: false, error: toCallError(error) });
      } else reply = value;
    };
    const invoke = stub[method] as unknown as (
      request: Request,
      metadata: Metadata,
      options: { deadline: number },
      callback: (error: ServiceError | null, reply: Reply) => void,
    ) => { on(event: 'status', listener: (status: { code: number; metadata: Metadata }) => void): unknown };
    try {
      const call = invoke.call(
        stub,
        request,
        new Metadata(),
        { deadline: Date.now() + Math.max(1, timeoutMs) },
        callback,
      );
      call.on('status', (status) => {
        if (failed || status.code !== GrpcStatus.OK || reply === undefined) return;
        const leaderHint = hintOf(status.metadata);
        resolve(leaderHint ? { ok: true, value: reply, leaderHint } : { ok: true, value: reply });
      });
    } catch (error) {
      resolve({ ok: false, error: toCallError(error as Error) });
    }
  });
}
