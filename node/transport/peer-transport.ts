// Replica-to-replica transport: one long-lived gRPC client stream per destination, carrying
// frames that batch every Paxos and 2PC message produced in one event-loop turn. Delivery is
// best effort: the protocols above retransmit, so a broken stream just drops what it held and
// is re-opened on the next send.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { PeerClient, type PaxosMessage, type PeerFrame, type PeerServer, type TxMessage } from '../gen/shardbank/v1/peer.js';

export const GRPC_MESSAGE_BYTES_MAX = 64 * 1024 * 1024;

/** Frames queued for a destination whose stream is not draining are dropped past this. */
const BUFFERED_BYTES_MAX = 32 * 1024 * 1024;
const RECONNECT_BACKOFF_MS_MAX = 1000;

export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': GRPC_MESSAGE_BYTES_MAX,
  'grpc.max_send_message_length': GRPC_MESSAGE_BYTES_MAX,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': RECONNECT_BACKOFF_MS_MAX,
};

interface Destination {
  address: string;
  client: PeerClient;
  stream: grpc.ClientWritableStream<PeerFrame> | undefined;
  paxos: PaxosMessage[];
  tx: TxMessage[];
  forwarded: boolean;
  lastOpenAttemptMs: number;
  openFailures: number;
}

export interface FrameSink {
  onFrame(frame: PeerFrame): void;
}

export class PeerTransport {
  private readonly destinations = new Map<string, Destination>();
  private flushScheduled = false;
  private closed = false;
  framesSent = 0;

  constructor(
    private readonly cluster: string,
    private readonly self: { shard: number; ordinal: number },
    private readonly peers: string[][],
    private readonly logger: Logger,
  ) {}

  /** The gRPC service implementation that receives frames from peers. */
  serverImplementation(sink: FrameSink): PeerServer {
    return {
      stream: (call, callback) => {
        call.on('data', (frame: PeerFrame) => {
          if (frame.cluster !== this.cluster) {
            call.destroy(new Error(`cluster: frame for ${frame.cluster}, this replica belongs to ${this.cluster}`));
            return;
          }
          sink.onFrame(frame);
        });
        call.on('end', () => callback(null, {}));
        call.on('error', () => undefined);
      },
    };
  }

  sendPaxos(shard: number, ordinal: number, message: PaxosMessage): void {
    this.destination(shard, ordinal).paxos.push(message);
    this.scheduleFlush();
  }

  sendTx(shard: number, ordinal: number, message: TxMessage, forwarded = false): void {
    const destination = this.destination(shard, ordinal);
    destination.tx.push(message);
    destination.forwarded ||= forwarded;
    this.scheduleFlush();
  }

  /** Whether the channel to a replica is up (used to skip dead replicas when routing). */
  isReachable(shard: number, ordinal: number): boolean {
    const destination = this.destinations.get(`${shard}/${ordinal}`);
    if (!destination) return true;
    const state = destination.client.getChannel().getConnectivityState(false);
    return state !== grpc.connectivityState.TRANSIENT_FAILURE && destination.openFailures < 3;
  }

  close(): void {
    this.closed = true;
    for (const destination of this.destinations.values()) {
      destination.stream?.end();
      destination.client.close();
    }
    this.destinations.clear();
  }

  private destination(shard: number, ordinal: number): Destination {
    const key = `${shard}/${ordinal}`;
    let destination = this.destinations.get(key);
    if (!destination) {
      const address = this.peers[shard]?.[ordinal];
      if (!address) throw new Error(`no address for shard ${shard} replica ${ordinal}`);
      destination = {
        address,
        client: new PeerClient(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS),
        stream: undefined,
        paxos: [],
        tx: [],
        forwarded: false,
        lastOpenAttemptMs: 0,
        openFailures: 0,
      };
      this.destinations.set(key, destination);
    }
    return destination;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.closed) return;
    for (const destination of this.destinations.values()) {
      if (destination.paxos.length === 0 && destination.tx.length === 0) continue;
      const frame: PeerFrame = {
        cluster: this.cluster,
        paxos: destination.paxos,
        tx: destination.tx,
        senderShard: this.self.shard,
        senderOrdinal: this.self.ordinal,
        forwarded: destination.forwarded,
      };
      destination.paxos = [];
      destination.tx = [];
      destination.forwarded = false;
      const stream = this.openStream(destination);
      if (!stream) continue;
      if (stream.writableLength > BUFFERED_BYTES_MAX) continue; // the peer is not keeping up: drop
      stream.write(frame);
      this.framesSent += 1;
    }
  }

  private openStream(destination: Destination): grpc.ClientWritableStream<PeerFrame> | undefined {
    if (destination.stream) return destination.stream;
    const now = Date.now();
    const backoff = Math.min(RECONNECT_BACKOFF_MS_MAX, 50 * 2 ** destination.openFailures);
    if (now - destination.lastOpenAttemptMs < backoff) return undefined;
    destination.lastOpenAttemptMs = now;
    const stream = destination.client.stream((error) => {
      if (destination.stream === stream) destination.stream = undefined;
      if (error && error.code !== grpc.status.CANCELLED) {
        destination.openFailures += 1;
        this.logger.debug({ peer: destination.address, err: error.message }, 'peer stream ended');
      }
    });
    stream.on('error', () => {
      if (destination.stream === stream) destination.stream = undefined;
    });
    // A stream that carried data resets the failure count once the channel is ready.
    destination.client.getChannel().getConnectivityState(true);
    destination.stream = stream;
    setTimeout(() => {
      if (destination.stream === stream) destination.openFailures = 0;
    }, 500).unref();
    return stream;
  }
}
