// An in-process gRPC Bank server whose behaviour each test scripts: enough to test the
// client's routing, retries and output shapes without replicas.
import {
  Metadata,
  Server,
  ServerCredentials,
  status,
  type sendUnaryData,
  type ServerDuplexStream,
  type ServerUnaryCall,
} from '@grpc/grpc-js';
import {
  BankService,
  Outcome,
  type BatchTransferReply,
  type BatchTransferRequest,
  type ClusterStatusReply,
  type ClusterStatusRequest,
  type GetBalanceReply,
  type GetBalanceRequest,
  type OpenSessionReply,
  type OpenSessionRequest,
  type TransferReply,
  type TransferRequest,
  type TransferStreamReply,
  type TransferStreamRequest,
} from '../../node/gen/shardbank/v1/bank.js';

export type Reply<T> = { value: T } | { error: { code: status; details: string; leaderHint?: string } };

export interface FakeBehaviour {
  /** Unset: every open answers session epoch FAKE_SESSION_EPOCH for the requested shard. */
  openSession?(request: OpenSessionRequest): Reply<OpenSessionReply>;
  transfer?(request: TransferRequest): Reply<TransferReply>;
  batchTransfer?(request: BatchTransferRequest): Reply<BatchTransferReply>;
  getBalance?(request: GetBalanceRequest): Reply<GetBalanceReply>;
  clusterStatus?(request: ClusterStatusRequest): Reply<ClusterStatusReply>;
  /** One result per entry of a stream message, sent back at once; unset: UNIMPLEMENTED (an older server). */
  transferStream?(request: TransferStreamRequest): TransferReply[];
}

export interface FakeReplica {
  readonly address: string;
  readonly calls: { method: string; request: unknown }[];
  /** OpenSession calls, kept apart from `calls` (which tests count per transfer call). */
  readonly opens: OpenSessionRequest[];
  behaviour: FakeBehaviour;
  stop(): Promise<void>;
}

function answer<T>(reply: Reply<T> | undefined, callback: sendUnaryData<T>): void {
  if (reply === undefined) {
    callback({ code: status.UNIMPLEMENTED, details: 'not scripted' }, null);
    return;
  }
  if ('value' in reply) {
    callback(null, reply.value);
    return;
  }
  const metadata = new Metadata();
  if (reply.error.leaderHint) metadata.set('shardbank-leader', reply.error.leaderHint);
  callback({ code: reply.error.code, details: reply.error.details, metadata }, null);
}

export async function startFakeReplica(behaviour: FakeBehaviour = {}): Promise<FakeReplica> {
  const server = new Server();
  const calls: { method: string; request: unknown }[] = [];
  const opens: OpenSessionRequest[] = [];
  const replica = { behaviour } as { behaviour: FakeBehaviour };
  const handler =
    <Req, Res>(method: keyof FakeBehaviour) =>
    (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      calls.push({ method, request: call.request });
      const fn = replica.behaviour[method] as ((request: Req) => Reply<Res>) | undefined;
      answer(fn?.(call.request), callback);
    };
  server.addService(BankService, {
    openSession: (
      call: ServerUnaryCall<OpenSessionRequest, OpenSessionReply>,
      callback: sendUnaryData<OpenSessionReply>,
    ) => {
      opens.push(call.request);
      const scripted = replica.behaviour.openSession;
      answer(
        scripted ? scripted(call.request) : { value: { sessionEpoch: FAKE_SESSION_EPOCH, shard: call.request.shard } },
        callback,
      );
    },
    transfer: handler('transfer'),
    batchTransfer: handler('batchTransfer'),
    getBalance: handler('getBalance'),
    clusterStatus: handler('clusterStatus'),
    transferStream: (call: ServerDuplexStream<TransferStreamRequest, TransferStreamReply>) => {
      calls.push({ method: 'transferStream', request: undefined });
      if (replica.behaviour.transferStream === undefined) {
        call.emit('error', { code: status.UNIMPLEMENTED, details: 'not scripted', metadata: new Metadata() });
        return;
      }
      call.on('data', (request: TransferStreamRequest) => {
        calls.push({ method: 'transferStream.message', request });
        const results = replica.behaviour.transferStream?.(request) ?? [];
        call.write({ tags: request.tags.slice(0, results.length), results, leaderHint: '' });
      });
      call.on('end', () => call.end());
      call.on('error', () => {});
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  return Object.assign(replica, {
    address: `127.0.0.1:${port}`,
    calls,
    opens,
    stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  }) as FakeReplica;
}

export const FAKE_SESSION_EPOCH = 7;

export function committed(decisionIndex = 7, coordinatorShard = 0): Reply<TransferReply> {
  return { value: { outcome: Outcome.COMMITTED, decisionIndex, coordinatorShard, message: '' } };
}

export function unavailable(details = 'not the leader', leaderHint?: string): Reply<never> {
  return { error: { code: status.UNAVAILABLE, details, ...(leaderHint ? { leaderHint } : {}) } };
}

/** A local_only ClusterStatus answer of one replica. */
export function replicaStatus(
  shard: number,
  ordinal: number,
  role: string,
  extra: { round?: number; commitIndex?: number; inflight?: number; pid?: number } = {},
): Reply<ClusterStatusReply> {
  return {
    value: {
      cluster: 'test',
      shards: [
        {
          shard,
          firstItem: 0,
          lastItem: 0,
          leaderOrdinal: role === 'leader' ? ordinal : -1,
          leaderBallot: undefined,
          leaderAddress: '',
          inflightTransactions: extra.inflight ?? 0,
          voters: [ordinal],
          learners: [],
          membershipChangeInFlight: false,
          replicas: [
            {
              shard,
              ordinal,
              role,
              ready: role !== 'candidate',
              address: '',
              commitIndex: extra.commitIndex ?? 5,
              appliedIndex: extra.commitIndex ?? 5,
              ballot: { round: extra.round ?? 1, ordinal: role === 'leader' ? ordinal : 0 },
              leaderOrdinal: -1,
              inflightTransactions: extra.inflight ?? 0,
              pid: extra.pid ?? 0,
              snapshotIndex: 0,
              shardTotal: 0,
              voting: 'voter',
              memberRole: 'voter',
              memberId: 0,
              voters: [],
              learners: [],
              membershipChangeInFlight: false,
            },
          ],
        },
      ],
    },
  };
}
