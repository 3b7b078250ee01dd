// gRPC calls from one replica to another (forwarded client requests, status fan-out): one
// channel per address, reused. A forwarded request carries a header so it is never
// forwarded a second time.
import * as grpc from '@grpc/grpc-js';
import {
  BankClient,
  type BatchTransferReply,
  type BatchTransferRequest,
  type ClusterStatusReply,
  type GetBalanceReply,
  type GetBalanceRequest,
  type OpenSessionReply,
  type OpenSessionRequest,
  type TransferReply,
  type TransferRequest,
} from '../gen/shardbank/v1/bank.js';
import { MESSAGE_BYTES_MAX } from '../transport/peer-transport.js';

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': MESSAGE_BYTES_MAX,
  'grpc.max_send_message_length': MESSAGE_BYTES_MAX,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1_000,
  'grpc.enable_channelz': 0,
};

export const FORWARDED_HEADER = 'shardbank-forwarded';
const FORWARD_DEADLINE_MS = 15_000;
const STATUS_DEADLINE_MS = 1_500;

export interface AsyncBankClient {
  openSessionAsync(
    request: OpenSessionRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
  ): Promise<OpenSessionReply>;
  transferAsync(request: TransferRequest, metadata: grpc.Metadata, options: grpc.CallOptions): Promise<TransferReply>;
  batchTransferAsync(
    request: BatchTransferRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
  ): Promise<BatchTransferReply>;
  getBalanceAsync(
    request: GetBalanceRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
  ): Promise<GetBalanceReply>;
  clusterStatusAsync(
    request: { cluster: string; localOnly: boolean },
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
  ): Promise<ClusterStatusReply>;
}

function promisify<Req, Res>(
  client: BankClient,
  method: (
    request: Req,
    metadata: grpc.Metadata,
    options: Partial<grpc.CallOptions>,
    callback: (error: grpc.ServiceError | null, response: Res) => void,
  ) => unknown,
): (request: Req, metadata: grpc.Metadata, options: grpc.CallOptions) => Promise<Res> {
  return (request, metadata, options) =>
    new Promise<Res>((resolve, reject) => {
      method.call(client, request, metadata, options, (error, response) => (error ? reject(error) : resolve(response)));
    });
}

export function asyncBankClient(client: BankClient): AsyncBankClient {
  return {
    openSessionAsync: promisify(client, client.openSession as never),
    transferAsync: promisify(client, client.transfer as never),
    batchTransferAsync: promisify(client, client.batchTransfer as never),
    getBalanceAsync: promisify(client, client.getBalance as never),
    clusterStatusAsync: promisify(client, client.clusterStatus as never),
  };
}

/** Errors after which another replica of the shard may well succeed. */
export function isRetryableElsewhere(error: unknown): boolean {
  const code = (error as { code?: number }).code;
  return (
    code === grpc.status.UNAVAILABLE ||
    code === grpc.status.DEADLINE_EXCEEDED ||
    code === grpc.status.CANCELLED ||
    code === undefined
  );
}

export class Forwarder {
  private clients = new Map<string, AsyncBankClient & { raw: BankClient }>();

  /**
   * `credentials()` gives the channel credentials for a new channel: with TLS on, the
   * replica's own certificate (a replica identity may use any client_id, docs/SECURITY.md).
   */
  constructor(
    private readonly peers: string[][],
    private readonly credentials: () => grpc.ChannelCredentials = () => grpc.credentials.createInsecure(),
    private readonly channelOptions: (address: string) => grpc.ChannelOptions = () => ({}),
  ) {}

  /**
   * New channels from now on use new credentials (a rotated certificate); the old channels
   * are closed once the calls they carry can have finished.
   */
  renewChannels(): void {
    const old = this.clients;
    this.clients = new Map();
    setTimeout(() => {
      for (const client of old.values()) client.raw.close();
    }, FORWARD_DEADLINE_MS + 1_000).unref();
  }

  client(address: string): AsyncBankClient {
    let client = this.clients.get(address);
    if (!client) {
      const raw = new BankClient(address, this.credentials(), { ...CHANNEL_OPTIONS, ...this.channelOptions(address) });
      client = Object.assign(asyncBankClient(raw), { raw });
      this.clients.set(address, client);
    }
    return client;
  }

  /** Tries the known leader first, then every other replica of the shard, once each. */
  async call<T>(
    shard: number,
    leader: number | undefined,
    run: (client: AsyncBankClient, metadata: grpc.Metadata, options: grpc.CallOptions) => Promise<T>,
    servedBy?: (ordinal: number, address: string) => void,
    /** A leader known by address only (a member added at runtime, not in the peer table): tried first. */
    leaderAddress?: string,
  ): Promise<T> {
    const group = [...(this.peers[shard] ?? [])];
    const order = [...group.keys()];
    if (leader !== undefined && leader >= 0) order.sort((a, b) => (a === leader ? -1 : b === leader ? 1 : 0));
    if (leaderAddress !== undefined && !group.includes(leaderAddress)) {
      group.push(leaderAddress);
      order.unshift(group.length - 1);
    }
    let lastError: unknown = new Error(`no replica of shard ${shard} answered`);
    for (const ordinal of order) {
      const metadata = new grpc.Metadata();
      metadata.set(FORWARDED_HEADER, '1');
      try {
        const value = await run(this.client(group[ordinal]!), metadata, { deadline: Date.now() + FORWARD_DEADLINE_MS });
        servedBy?.(ordinal, group[ordinal]!);
        return value;
      } catch (error) {
        lastError = error;
        if (!isRetryableElsewhere(error)) throw passThrough(error);
      }
    }
    throw passThrough(lastError);
  }

  statusOf(address: string, cluster: string): Promise<ClusterStatusReply> {
    return this.client(address).clusterStatusAsync({ cluster, localOnly: true }, new grpc.Metadata(), {
      deadline: Date.now() + STATUS_DEADLINE_MS,
    });
  }

  close(): void {
    for (const client of this.clients.values()) client.raw.close();
    this.clients.clear();
  }
}

/** Keeps the remote gRPC status (and its metadata) when answering our own caller. */
function passThrough(error: unknown): Error {
  const e = error as grpc.ServiceError;
  if (typeof e?.code === 'number') {
    return Object.assign(new Error(e.details ?? e.message), {
      code: e.code,
      details: e.details,
      metadata: e.metadata,
      passThrough: true,
    });
  }
  return error instanceof Error ? error : new Error(String(error));
}
