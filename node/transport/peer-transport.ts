// Replica-to-replica transport: one long-lived TCP connection per destination, carrying
// length-prefixed protobuf PeerFrames, each batching every Paxos and 2PC message produced in
// one event-loop turn. It shares the replica's gRPC port (see shared-port.ts): a connection
// that opens with PEER_MAGIC is a peer stream, anything else is handed to gRPC.
//
// Why not a gRPC stream: profiles showed about half of a leader's CPU in grpc-js, HTTP/2
// framing and its extra socket writes, and an HTTP/2 hop costs several times a TCP one. A
// frame here is one socket write of [u32 length][PeerFrame].
//
// Replicas on one host (the local runtime) may also listen on a Unix socket each, in a shared
// directory (`--peer-socket-dir`): peers then dial that path instead of loopback TCP, which
// spares every frame the TCP stack (measured here: a Node ping-pong costs 22 µs of CPU per
// round trip on each side over a Unix socket, 29-39 µs over loopback TCP). Same frames, same
// handshake; in Kubernetes replicas are on different hosts and use TCP.
//
// Delivery is best effort: the protocols above retransmit, so a broken connection just
// drops what it held and is re-opened on the next send. A receiver writes one byte back every
// second; a sender that hears nothing for LIVENESS_TIMEOUT_MS drops the connection and dials
// again (resolving the name again), so a peer that came back at a new address is found.
//
// With peer TLS (`--tls-*`, node/security/peer-tls.ts) a TCP connection opens with
// PEER_TLS_MAGIC instead; the acceptor answers TLS_ACK and both run a TLS 1.3 handshake with
// client certificates on the same socket (the ack keeps the dialer's ClientHello out of the
// bytes the port sniffer read, so the acceptor hands the raw socket to TLS untouched). Frames
// are read only once the peer's certificate is verified, and each must speak for that
// certificate's identity (frameRefusal). A Unix socket peer stays plaintext: the socket lives
// in the replicas' 0700 directory, so only this user can connect (docs/SECURITY.md).
import net from 'node:net';
import { join } from 'node:path';
import type tls from 'node:tls';
import type { Logger } from 'pino';
import { PeerFrame, type PaxosMessage, type TxMessage } from '../gen/shardbank/v1/peer.js';
import { frameRefusal, type ReplicaIdentity } from '../security/identity.js';
import type { PeerTls } from '../security/peer-tls.js';
import { NextTurn } from '../util/next-turn.js';
import { assert } from '../util/assert.js';
import { TRACING, traceStamp, paxosTraceName } from '../util/stage-trace.js';

/** Largest message on any replica connection (peer frames, client calls). */
export const MESSAGE_BYTES_MAX = 64 * 1024 * 1024;

/** The first bytes of a peer connection; no HTTP/2 connection starts this way. */
export const PEER_MAGIC = Buffer.from('SBPEER01', 'latin1');
/** The first bytes of a peer connection that continues as TLS (same length as PEER_MAGIC). */
export const PEER_TLS_MAGIC = Buffer.from('SBPEERT1', 'latin1');
/** The acceptor's answer to PEER_TLS_MAGIC: the dialer starts its TLS handshake on it. */
const TLS_ACK = Buffer.from([0x54]);

/** How a peer connection arrived (from the shared port's sniffer). */
export interface PeerConnectionKind {
  /** It opened with PEER_TLS_MAGIC. */
  tls: boolean;
  /** It came through the Unix socket (authenticated by the directory's permissions). */
  local: boolean;
}

/** Frames queued for a destination whose connection is not draining are dropped past this. */
const BUFFERED_BYTES_MAX = 32 * 1024 * 1024;
const RECONNECT_BACKOFF_MS_MAX = 1000;
const KEEPALIVE_INTERVAL_MS = 1000;
const LIVENESS_TIMEOUT_MS = 5000;
const KEEPALIVE_BYTE = Buffer.from([0]);
/** The same refusal (reason and certificate) is logged at most this often. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

/** Longest Unix socket path the kernel takes (sun_path is 108 bytes with its terminating NUL). */
export const UNIX_SOCKET_PATH_BYTES_MAX = 107;

/** Where a replica listens for peers in a shared socket directory. */
export function peerSocketPath(directory: string, shard: number, ordinal: number): string {
  return join(directory, `s${shard}-${ordinal}.sock`);
}

/**
 * The longest socket path of a cluster of this shape in `directory` if it is too long for
 * the kernel (one check for the replica's flag and the local supervisor); undefined if all fit.
 */
export function peerSocketPathTooLong(
  directory: string,
  shape: { shards: number; replicasPerShard: number },
): string | undefined {
  const longest = peerSocketPath(directory, shape.shards - 1, shape.replicasPerShard - 1);
  return Buffer.byteLength(longest) > UNIX_SOCKET_PATH_BYTES_MAX ? longest : undefined;
}

interface Destination {
  shard: number;
  /** Its slot in the static peer table; undefined for a member known by its address only. */
  ordinal: number | undefined;
  host: string;
  port: number;
  /** A Unix socket to dial instead of host:port (replicas sharing a socket directory). */
  socketPath: string | undefined;
  socket: net.Socket | undefined;
  /** Frames may be written to `socket` (false while a TLS connection is being set up). */
  writable: boolean;
  connected: boolean;
  /** The last reason a TLS dial failed, logged once until it changes. */
  lastRefusal: string | undefined;
  lastHeardMs: number;
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
  private readonly accepted = new Set<net.Socket>();
  private readonly flushNextTurn = new NextTurn(() => this.flush());
  private closed = false;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** Refusal -> when it was last logged and how often it happened since (a re-dialling peer). */
  private readonly refusals = new Map<string, { loggedMs: number; since: number }>();
  framesSent = 0;
  /** Stage-trace prefix of this process's stamps (set by the replica when tracing). */
  traceWho: () => string = () => 'peer';
  /**
   * Member id -> peer address in this replica's own shard (docs/ARCHITECTURE.md, "Membership"):
   * the shard's configurations first, the static peer table for the founding ids. Set by the
   * replica; an id with no address yet gets its messages dropped (Paxos resends).
   */
  memberAddress: (member: number) => string | undefined = (member) => this.peers[this.self.shard]?.[member];
  /** Found addresses by member id: an id is never reused, so its address never changes. */
  private readonly memberAddresses = new Map<number, string>();

  constructor(
    private readonly cluster: string,
    private readonly self: { shard: number; ordinal: number },
    private readonly peers: string[][],
    private readonly logger: Logger,
    /** A directory where every peer listens on peerSocketPath(); TCP when undefined. */
    private readonly socketDirectory?: string,
    /** Peer TLS: TCP connections both ways are TLS with verified identities. */
    private readonly tls?: PeerTls,
  ) {}

  /**
   * Takes over an accepted connection whose first bytes were PEER_MAGIC or PEER_TLS_MAGIC;
   * `rest` holds what was read after the magic. Frames for another cluster close the
   * connection; with peer TLS, so does a plaintext TCP peer or one whose certificate fails.
   */
  acceptConnection(
    socket: net.Socket,
    rest: Buffer,
    sink: FrameSink,
    kind: PeerConnectionKind = { tls: false, local: false },
  ): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    const peer = kind.local ? 'unix socket' : `${socket.remoteAddress}:${socket.remotePort}`;
    if (kind.tls) {
      if (!this.tls || rest.length > 0) {
        const message = this.tls
          ? 'TLS peer connection sent bytes before the acknowledgement: closing the connection'
          : 'TLS peer connection refused: this replica has no peer certificate (--tls-cert)';
        const repeats = this.refusalRepeats(`${message}|${socket.remoteAddress}`);
        if (repeats !== undefined) this.logger.warn({ peer, repeats }, message);
        socket.destroy();
        return;
      }
      socket.setNoDelay(true);
      socket.on('error', () => undefined);
      this.tls.accept(socket, {
        onIdentity: (secure, identity) => this.serveFrames(secure, Buffer.alloc(0), sink, identity),
        onRefused: (secure, reason, certificate) => {
          secure.destroy();
          const repeats = this.refusalRepeats(`${reason}|${certificate.subjectAltName}|${certificate.subject}`);
          if (repeats === undefined) return;
          this.logger.warn(
            {
              peer,
              subject: certificate.subject,
              issuer: certificate.issuer,
              san: certificate.subjectAltName ?? null,
              repeats,
            },
            `peer refused: ${reason}`,
          );
        },
        onFailed: (error) => {
          const repeats = this.refusalRepeats(`${error.message}|${socket.remoteAddress}`);
          if (repeats !== undefined)
            this.logger.warn(
              { peer, err: error.message, repeats },
              'peer TLS handshake failed: closing the connection',
            );
        },
      });
      socket.write(TLS_ACK);
      return;
    }
    if (this.tls && !kind.local) {
      const message = 'plaintext peer connection refused: this replica requires TLS from its peers (--tls-cert)';
      const repeats = this.refusalRepeats(`${message}|${socket.remoteAddress}`);
      if (repeats !== undefined) this.logger.warn({ peer, repeats }, message);
      socket.destroy();
      return;
    }
    this.serveFrames(socket, rest, sink, undefined);
  }

  /**
   * undefined if this refusal was logged within REFUSAL_LOG_INTERVAL_MS (a refused peer
   * re-dials every second); otherwise how often it happened since it was last logged.
   */
  private refusalRepeats(key: string): number | undefined {
    const now = Date.now();
    const seen = this.refusals.get(key);
    if (seen && now - seen.loggedMs < REFUSAL_LOG_INTERVAL_MS) {
      seen.since += 1;
      return undefined;
    }
    if (this.refusals.size > 1000) this.refusals.clear();
    this.refusals.set(key, { loggedMs: now, since: 0 });
    return seen?.since ?? 0;
  }

  /** Reads frames from a peer; with an authenticated `identity`, each must speak for it. */
  private serveFrames(
    socket: net.Socket | tls.TLSSocket,
    rest: Buffer,
    sink: FrameSink,
    identity: ReplicaIdentity | undefined,
  ): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    this.accepted.add(socket);
    this.startHeartbeat();
    socket.on('close', () => this.accepted.delete(socket));
    socket.on('error', () => undefined);
    const reader = new FrameReader((bytes) => {
      let frame: PeerFrame;
      try {
        frame = PeerFrame.decode(bytes);
      } catch (error) {
        this.logger.warn(
          { err: (error as Error).message, peer: socket.remoteAddress },
          'undecodable peer frame: closing the connection',
        );
        socket.destroy();
        return false;
      }
      if (frame.cluster !== this.cluster) {
        this.logger.warn(
          { peer: socket.remoteAddress, cluster: frame.cluster },
          `peer frame for cluster ${frame.cluster}, this replica belongs to ${this.cluster}: closing the connection`,
        );
        socket.destroy();
        return false;
      }
      if (identity) {
        const refusal = frameRefusal(frame, identity, this.self.shard);
        if (refusal !== undefined) {
          this.logger.warn(
            { peer: `shard ${identity.shard} replica ${identity.ordinal}`, address: socket.remoteAddress },
            `peer frame refused: ${refusal}: closing the connection`,
          );
          socket.destroy();
          return false;
        }
      }
      sink.onFrame(frame);
      return true;
    });
    const onData = (chunk: Buffer) => {
      if (!reader.push(chunk)) socket.destroy();
    };
    if (rest.length > 0) onData(rest);
    socket.on('data', onData);
    socket.resume();
  }

  /** A Paxos message to a member of this replica's shard (`member`: its id in the configuration). */
  sendPaxos(shard: number, member: number, message: PaxosMessage): void {
    assert(shard === this.self.shard, 'Paxos messages stay within the shard');
    const destination = this.memberDestination(member);
    if (destination === undefined) return;
    destination.paxos.push(message);
    this.flushNextTurn.request();
  }

  /** A 2PC message to the replica in `ordinal` (its slot in the static peer table) of `shard`. */
  sendTx(shard: number, ordinal: number, message: TxMessage, forwarded = false): void {
    const address = this.peers[shard]?.[ordinal];
    if (address === undefined) return; // a slot this replica has no address for (a newer member): the router rotates on
    this.pushTx(this.destination(shard, ordinal, address), message, forwarded);
  }

  /** A 2PC message passed on to a member of this replica's own shard (its leader). */
  sendTxToMember(member: number, message: TxMessage, forwarded: boolean): void {
    const destination = this.memberDestination(member);
    if (destination !== undefined) this.pushTx(destination, message, forwarded);
  }

  private pushTx(destination: Destination, message: TxMessage, forwarded: boolean): void {
    destination.tx.push(message);
    destination.forwarded ||= forwarded;
    this.flushNextTurn.request();
  }

  /** The address of a member of this shard, as the transport resolves it. */
  addressOfMember(member: number): string | undefined {
    let address = this.memberAddresses.get(member);
    if (address === undefined) {
      address = this.memberAddress(member);
      if (address !== undefined) this.memberAddresses.set(member, address);
    }
    return address;
  }

  /**
   * A frame from `slot` of this shard carried Paxos messages from `member`: if no configuration
   * this replica knows gives that member's address yet (a new learner has only the founding
   * configuration until the log reaches it, and its leader may be a member added since), the
   * slot's address in the static table is where it answers. Frames are authenticated per slot
   * (docs/SECURITY.md), and an id's address never changes, so the first one found stays.
   */
  noteMemberSlot(member: number, slot: number): void {
    if (this.memberAddresses.has(member) || this.addressOfMember(member) !== undefined) return;
    const address = this.peers[this.self.shard]?.[slot];
    if (address !== undefined) this.memberAddresses.set(member, address);
  }

  /** The slot of this shard's static peer table holding `address`, or undefined. */
  slotOfAddress(address: string): number | undefined {
    const slot = this.peers[this.self.shard]?.indexOf(address) ?? -1;
    return slot >= 0 ? slot : undefined;
  }

  private memberDestination(member: number): Destination | undefined {
    const address = this.addressOfMember(member);
    if (address === undefined) return undefined;
    return this.destination(this.self.shard, this.slotOfAddress(address), address);
  }

  /** Whether the connection to a replica is up or worth trying (used to skip dead replicas when routing). */
  isReachable(shard: number, ordinal: number): boolean {
    const address = this.peers[shard]?.[ordinal];
    if (address === undefined) return false;
    const destination = this.destinations.get(`${shard}@${address}`);
    if (!destination) return true;
    return destination.connected || destination.openFailures < 3;
  }

  close(): void {
    this.closed = true;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    for (const destination of this.destinations.values()) destination.socket?.destroy();
    for (const socket of this.accepted) socket.destroy();
    this.destinations.clear();
    this.accepted.clear();
  }

  private destination(shard: number, ordinal: number | undefined, address: string): Destination {
    const key = `${shard}@${address}`;
    let destination = this.destinations.get(key);
    if (!destination) {
      const { host, port } = splitHostPort(address);
      const socketPath =
        this.socketDirectory === undefined || ordinal === undefined
          ? undefined
          : peerSocketPath(this.socketDirectory, shard, ordinal);
      destination = {
        shard,
        ordinal,
        host,
        port,
        socketPath,
        socket: undefined,
        writable: false,
        connected: false,
        lastRefusal: undefined,
        lastHeardMs: 0,
        paxos: [],
        tx: [],
        forwarded: false,
        lastOpenAttemptMs: 0,
        openFailures: 0,
      };
      this.destinations.set(key, destination);
      this.startHeartbeat();
    }
    return destination;
  }

  /**
   * Writes every queued message now instead of at the next turn of the event loop. The replica
   * calls this at the end of each run of its Ready loop (everything that run produced is
   * queued by then, so frames are as full as before) and before it blocks in a durable write:
   * an Accept must be on its way while the leader's own write runs.
   */
  flushNow(): void {
    this.flush();
  }

  private flush(): void {
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
      const socket = this.openConnection(destination);
      if (!socket || !destination.writable) continue; // a TLS connection being set up: dropped
      if (socket.writableLength > BUFFERED_BYTES_MAX) continue; // the peer is not keeping up: drop
      const { frames, dropped } = encodeFramesWithinLimit(frame, MESSAGE_BYTES_MAX);
      if (dropped > 0)
        this.logger.error(
          { dropped },
          `peer messages larger than the ${MESSAGE_BYTES_MAX}-byte frame limit were dropped`,
        );
      if (TRACING) {
        const who = this.traceWho();
        for (const message of frame.paxos) traceStamp(`${who}.send-${paxosTraceName(message)}`);
        for (const message of frame.tx) traceStamp(`${who}.send-${message.body?.$case}`);
      }
      for (const bytes of frames) socket.write(bytes);
      if (TRACING) traceStamp(`${this.traceWho()}.frame-written`);
      this.framesSent += frames.length;
    }
  }

  private openConnection(destination: Destination): net.Socket | undefined {
    if (destination.socket) return destination.socket;
    const now = Date.now();
    const backoff = Math.min(RECONNECT_BACKOFF_MS_MAX, 50 * 2 ** destination.openFailures);
    if (now - destination.lastOpenAttemptMs < backoff) return undefined;
    destination.lastOpenAttemptMs = now;
    destination.lastHeardMs = now;
    const peerTls = destination.socketPath === undefined ? this.tls : undefined;
    const raw =
      destination.socketPath !== undefined
        ? net.connect({ path: destination.socketPath })
        : net.connect({ host: destination.host, port: destination.port, noDelay: true });
    const address = destination.socketPath ?? `${destination.host}:${destination.port}`;
    destination.socket = raw;
    destination.connected = false;
    destination.writable = peerTls === undefined;
    const onUp = (socket: net.Socket) => {
      if (destination.socket !== socket) return;
      destination.connected = true;
      destination.writable = true;
      destination.openFailures = 0;
      destination.lastHeardMs = Date.now();
      destination.lastRefusal = undefined;
    };
    const watch = (socket: net.Socket, handshake: boolean) => {
      socket.on('error', (error) => {
        if (handshake && error.message !== destination.lastRefusal) {
          // A certificate problem repeats on every re-dial: log it once until it changes.
          destination.lastRefusal = error.message;
          this.logger.warn({ peer: address, err: error.message }, 'peer TLS connection failed');
        } else {
          this.logger.debug({ peer: address, err: error.message }, 'peer connection failed');
        }
      });
      socket.on('close', () => {
        if (destination.socket !== socket) return;
        if (!destination.connected) destination.openFailures += 1;
        destination.socket = undefined;
        destination.connected = false;
        destination.writable = false;
      });
    };
    if (!peerTls) {
      raw.write(PEER_MAGIC);
      raw.on('connect', () => onUp(raw));
      raw.on('data', () => {
        destination.lastHeardMs = Date.now();
      });
      watch(raw, false);
      return raw;
    }
    raw.write(PEER_TLS_MAGIC);
    watch(raw, false);
    raw.once('data', (ack) => {
      if (destination.socket !== raw) return;
      raw.pause();
      if (!ack.equals(TLS_ACK)) {
        this.logger.warn({ peer: address }, 'peer did not acknowledge TLS (a replica without peer TLS?)');
        raw.destroy();
        return;
      }
      raw.removeAllListeners('close');
      raw.removeAllListeners('error');
      raw.on('error', () => undefined);
      const secure = peerTls.connect(raw, { shard: destination.shard, ordinal: destination.ordinal });
      destination.socket = secure;
      secure.on('secureConnect', () => onUp(secure));
      secure.on('data', () => {
        destination.lastHeardMs = Date.now();
      });
      watch(secure, true);
    });
    return raw;
  }

  /**
   * Once a second: one byte to every peer that connected to us, and a re-dial of every
   * connection of ours whose receiver has been silent too long (a half-open TCP connection
   * never errors).
   */
  private startHeartbeat(): void {
    if (this.heartbeatTimer) return;
    this.heartbeatTimer = setInterval(() => {
      for (const socket of this.accepted) socket.write(KEEPALIVE_BYTE);
      const now = Date.now();
      for (const destination of this.destinations.values()) {
        if (destination.socket && now - destination.lastHeardMs > LIVENESS_TIMEOUT_MS) {
          this.logger.debug(
            { peer: destination.socketPath ?? `${destination.host}:${destination.port}` },
            'peer connection silent: re-dialling',
          );
          destination.socket.destroy();
        }
      }
    }, KEEPALIVE_INTERVAL_MS);
    this.heartbeatTimer.unref();
  }
}

/**
 * Encodes a turn's messages for one destination as frames of at most `bytesMax` bytes each (a
 * receiver drops the connection on a longer one, and the sender would resend the same frame
 * forever). Usually one frame; a frame too long is split in halves until each part fits. A
 * single message too long for any frame is dropped and counted (the cores bound their
 * messages by bytes, so this only guards against a bug).
 */
export function encodeFramesWithinLimit(frame: PeerFrame, bytesMax: number): { frames: Buffer[]; dropped: number } {
  const frames: Buffer[] = [];
  let dropped = 0;
  const work: PeerFrame[] = [frame];
  while (work.length > 0) {
    const part = work.pop()!;
    const bytes = encodeFrame(part);
    if (bytes.length - 4 <= bytesMax) {
      frames.push(bytes);
      continue;
    }
    const count = part.paxos.length + part.tx.length;
    if (count <= 1) {
      dropped += count;
      continue;
    }
    const paxosHalf = Math.ceil(part.paxos.length / 2);
    const txHalf = part.paxos.length > 1 ? 0 : Math.ceil(part.tx.length / 2);
    // Later parts go on the stack first, so frames keep the messages' order.
    work.push({ ...part, paxos: part.paxos.slice(paxosHalf), tx: part.tx.slice(txHalf) });
    work.push({ ...part, paxos: part.paxos.slice(0, paxosHalf), tx: part.tx.slice(0, txHalf) });
  }
  return { frames, dropped };
}

export function encodeFrame(frame: PeerFrame): Buffer {
  const body = PeerFrame.encode(frame).finish();
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.set(body, 4);
  return out;
}

/**
 * Splits a byte stream into length-prefixed frames. `onFrame` returns false to stop (the
 * connection is being closed); `push` returns false on a frame longer than MESSAGE_BYTES_MAX.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private stopped = false;

  constructor(private readonly onFrame: (bytes: Uint8Array) => boolean) {}

  push(chunk: Buffer): boolean {
    if (this.stopped) return true;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (this.buffered >= 4) {
      const head = this.chunks[0]!.length >= 4 ? this.chunks[0]! : this.coalesce();
      const length = head.readUInt32BE(0);
      if (length > MESSAGE_BYTES_MAX) {
        this.stopped = true;
        return false;
      }
      if (this.buffered < 4 + length) return true;
      const all = this.chunks.length === 1 ? this.chunks[0]! : this.coalesce();
      const bytes = all.subarray(4, 4 + length);
      const rest = all.subarray(4 + length);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.buffered = rest.length;
      if (!this.onFrame(bytes)) {
        this.stopped = true;
        return true;
      }
    }
    return true;
  }

  private coalesce(): Buffer {
    const all = Buffer.concat(this.chunks, this.buffered);
    this.chunks = [all];
    return all;
  }
}

/** "host:port", "[v6]:port". */
export function splitHostPort(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  if (colon <= 0) throw new Error(`peer address ${JSON.stringify(address)} has no port`);
  let host = address.slice(0, colon);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const port = Number(address.slice(colon + 1));
  if (!Number.isInteger(port) || port <= 0 || port > 65535)
    throw new Error(`peer address ${JSON.stringify(address)} has a bad port`);
  return { host, port };
}
