// The server side of TransferStream: a long-lived stream of tagged transfers from one client
// library to this shard's leader. Unlike a BatchTransfer call, whose reply waits for its slowest
// entry, each result goes back as soon as its entry is decided, batched per event-loop turn
// (the entries of one applied slot finish together, so they share one message). And a stream
// message costs far less than a call (no call set-up, headers or trailers on either side).
//
// Only the ready leader of the shard that owns an entry's `from` serves it. Any other entry is
// answered UNAVAILABLE with a leader hint and never forwarded: the client then goes back to its
// BatchTransfer path, which knows how to find a leader. A broken or cancelled stream only stops
// the replies: submitted entries still run, and the client retries them with the same ids
// (exactly-once makes that safe), getting their recorded outcomes.
import * as grpc from '@grpc/grpc-js';
import { shardOfItem } from '../cluster/topology.js';
import {
  Outcome,
  type TransferReply,
  type TransferStreamReply,
  type TransferStreamRequest,
} from '../gen/shardbank/v1/bank.js';
import type { ClientReply, ErrorCode, TransferInput } from '../shard/shard-node.js';
import { NextTurn } from '../util/next-turn.js';
import { TRACING, traceStamp } from '../util/stage-trace.js';
import {
  checkCluster,
  checkTransferFields,
  grpcStatusOf,
  REQUEST_LIMITS,
  type ValidationContext,
} from './request-validation.js';

export interface TransferStreamHost {
  readonly context: ValidationContext;
  readonly shard: number;
  /** True while this replica is its shard's leader and may take client requests. */
  isReadyLeader(): boolean;
  /** `<ordinal>,<host:port>` of the leader this replica knows, or '' when it knows none. */
  leaderHint(): string;
  submit(input: TransferInput, done: (reply: ClientReply) => void): void;
  /** Counts a stream message and its entries (the replica's metrics). */
  countMessage(entries: number): void;
  /**
   * With TLS on, why the stream's identity may not use an entry's client_id (undefined: it
   * may). One refused entry ends the stream PERMISSION_DENIED before any entry of its message
   * is submitted.
   */
  entryRefusal?: ((clientId: string) => string | undefined) | undefined;
}

const OUTCOME_BY_ERROR: Record<ErrorCode, Outcome> = {
  'not-leader': Outcome.UNAVAILABLE,
  aborted: Outcome.ABORTED,
  stale: Outcome.FAILED_PRECONDITION,
  expired: Outcome.FAILED_PRECONDITION,
  mismatch: Outcome.INVALID_ARGUMENT,
  unavailable: Outcome.UNAVAILABLE,
};

/** A decided (or refused) transfer as the client API reports it per entry. */
export function entryResultOf(reply: ClientReply, shard: number): TransferReply {
  return reply.kind === 'transfer'
    ? reply.deduplicated
      ? { outcome: reply.outcome, decisionIndex: reply.index, coordinatorShard: shard, message: '', deduplicated: true }
      : { outcome: reply.outcome, decisionIndex: reply.index, coordinatorShard: shard, message: '' }
    : {
        outcome: reply.kind === 'error' ? OUTCOME_BY_ERROR[reply.code] : Outcome.UNAVAILABLE,
        decisionIndex: 0,
        coordinatorShard: shard,
        message: reply.kind === 'error' ? reply.message : '',
      };
}

export function serveTransferStream(
  call: grpc.ServerDuplexStream<TransferStreamRequest, TransferStreamReply>,
  host: TransferStreamHost,
): void {
  let open = true;
  let clientDone = false;
  let unanswered = 0;
  let out: TransferStreamReply = { tags: [], results: [], leaderHint: '' };

  const finishIfDone = () => {
    if (open && clientDone && unanswered === 0 && out.tags.length === 0) {
      open = false;
      call.end();
    }
  };
  const flush = new NextTurn(() => {
    if (out.tags.length > 0) {
      const message = out;
      out = { tags: [], results: [], leaderHint: '' };
      if (TRACING) traceStamp(`s${host.shard}L.stream-write`);
      if (open) call.write(message);
      if (TRACING) traceStamp(`s${host.shard}L.stream-written`);
    }
    finishIfDone();
  });
  const answer = (tag: number, result: TransferReply) => {
    out.tags.push(tag);
    out.results.push(result);
    if (result.outcome === Outcome.UNAVAILABLE && out.leaderHint === '') out.leaderHint = host.leaderHint();
    flush.request();
  };
  const fail = (code: grpc.status, details: string) => {
    if (!open) return;
    open = false;
    call.emit('error', { code, details, metadata: new grpc.Metadata() });
  };

  call.on('data', (request: TransferStreamRequest) => {
    if (TRACING) traceStamp(`s${host.shard}L.stream-data`);
    host.countMessage(request.entries.length);
    if (!open) return;
    const { entryRefusal } = host;
    if (entryRefusal) {
      for (const entry of request.entries) {
        const refused = entryRefusal(entry.clientId);
        if (refused !== undefined) {
          fail(grpc.status.PERMISSION_DENIED, refused);
          return;
        }
      }
    }
    const wrongCluster = checkCluster(request.cluster, host.context);
    if (wrongCluster) {
      fail(grpcStatusOf(wrongCluster), wrongCluster.message);
      return;
    }
    if (request.tags.length !== request.entries.length) {
      fail(
        grpc.status.INVALID_ARGUMENT,
        `tags: one per entry, got ${request.tags.length} tags for ${request.entries.length} entries`,
      );
      return;
    }
    if (request.entries.length > REQUEST_LIMITS.batchEntriesMax) {
      fail(
        grpc.status.INVALID_ARGUMENT,
        `entries: at most ${REQUEST_LIMITS.batchEntriesMax} per message, got ${request.entries.length}`,
      );
      return;
    }
    const { shard } = host;
    for (let index = 0; index < request.entries.length; index += 1) {
      const entry = request.entries[index]!;
      const tag = request.tags[index]!;
      const checked = checkTransferFields(entry, entry.clientId, host.context);
      if (!checked.ok) {
        answer(tag, {
          outcome: checked.code === 'failed-precondition' ? Outcome.FAILED_PRECONDITION : Outcome.INVALID_ARGUMENT,
          decisionIndex: 0,
          coordinatorShard: 0,
          message: checked.message,
        });
        continue;
      }
      const target = shardOfItem(host.context.topology, entry.from);
      if (target !== shard || !host.isReadyLeader()) {
        answer(tag, {
          outcome: Outcome.UNAVAILABLE,
          decisionIndex: 0,
          coordinatorShard: target,
          message: `not leader: replica does not lead shard ${target}; use BatchTransfer`,
        });
        continue;
      }
      unanswered += 1;
      host.submit(checked.value, (reply) => {
        unanswered -= 1;
        answer(tag, entryResultOf(reply, shard));
      });
    }
  });
  call.on('end', () => {
    clientDone = true;
    flush.request();
  });
  call.on('error', () => {
    open = false;
  });
  call.on('cancelled', () => {
    open = false;
  });
}
