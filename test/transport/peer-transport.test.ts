// The replica-to-replica transport over real sockets: length-prefixed frames on a port that
// also serves gRPC, frames for another cluster refused, re-dialling after a receiver goes
// away or falls silent.
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import {
  HealthClient,
  HealthService,
  HealthCheckResponse_ServingStatus,
} from '../../node/gen/grpc/health/v1/health.js';
import { PeerFrame, type PaxosMessage } from '../../node/gen/shardbank/v1/peer.js';
import { parseReplicaConfig } from '../../node/replica/replica-config.js';
import {
  FrameReader,
  PEER_MAGIC,
  PeerTransport,
  encodeFrame,
  encodeFramesWithinLimit,
  peerSocketPath,
  splitHostPort,
} from '../../node/transport/peer-transport.js';
import { listenSharedPort, type SharedPort } from '../../node/transport/shared-port.js';
import { pollUntil } from '../support/poll.js';

const logger = pino({ level: 'silent' });

function heartbeat(to: number, round: number): PaxosMessage {
  return {
    shard: 0,
    from: 1,
    to,
    ballot: { round, ordinal: 1 },
    body: {
      $case: 'reject',
      reject: { promised: { round, ordinal: 1 }, behind: false, snapshotIndex: 0, leaderHint: 0, hasLeaderHint: false },
    },
  };
}

function frame(cluster: string, round: number): PeerFrame {
  return { cluster, paxos: [heartbeat(0, round)], tx: [], senderShard: 0, senderOrdinal: 1, forwarded: false };
}

describe('FrameReader', () => {
  it('splits a byte stream into frames whatever the chunk boundaries', () => {
    const frames = [
      frame('c', 1),
      frame('c', 2),
      { ...frame('c', 3), paxos: Array.from({ length: 50 }, (_, i) => heartbeat(0, 100 + i)) },
    ];
    const stream = Buffer.concat(frames.map(encodeFrame));
    for (const chunkSize of [1, 3, 4, 5, 17, stream.length]) {
      const seen: number[] = [];
      const reader = new FrameReader((bytes) => {
        const decoded = PeerFrame.decode(bytes);
        seen.push(decoded.paxos.length === 1 ? decoded.paxos[0]!.ballot!.round : decoded.paxos.length);
        return true;
      });
      for (let offset = 0; offset < stream.length; offset += chunkSize)
        expect(reader.push(stream.subarray(offset, offset + chunkSize))).toBe(true);
      expect(seen, `chunks of ${chunkSize}`).toEqual([1, 2, 50]);
    }
  });

  it('refuses a length prefix above the message limit', () => {
    const reader = new FrameReader(() => true);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(0xffffffff, 0);
    expect(reader.push(head)).toBe(false);
  });

  it('parses host:port and [v6]:port, and names a bad address', () => {
    expect(splitHostPort('replica-0.svc:50051')).toEqual({ host: 'replica-0.svc', port: 50051 });
    expect(splitHostPort('[::1]:7')).toEqual({ host: '::1', port: 7 });
    expect(() => splitHostPort('nohost')).toThrow(/no port/);
    expect(() => splitHostPort('h:99999')).toThrow(/bad port/);
  });
});

describe('peer connections on the gRPC port', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  async function receiver(
    cluster: string,
    port = 0,
  ): Promise<{ port: SharedPort; frames: PeerFrame[]; server: grpc.Server }> {
    const frames: PeerFrame[] = [];
    const server = new grpc.Server();
    server.addService(HealthService, {
      check: (_call: unknown, callback: grpc.sendUnaryData<{ status: number }>) =>
        callback(null, { status: HealthCheckResponse_ServingStatus.SERVING }),
    } as never);
    const transport = new PeerTransport(cluster, { shard: 0, ordinal: 0 }, [], logger);
    const shared = await listenSharedPort('127.0.0.1', port, server, (socket, rest) =>
      transport.acceptConnection(socket, rest, { onFrame: (f) => frames.push(f) }),
    );
    cleanups.push(() => {
      transport.close();
      shared.destroy();
      server.forceShutdown();
    });
    return { port: shared, frames, server };
  }

  function sender(cluster: string, port: number): PeerTransport {
    const transport = new PeerTransport(cluster, { shard: 0, ordinal: 1 }, [[`127.0.0.1:${port}`]], logger);
    cleanups.push(() => transport.close());
    return transport;
  }

  it('serves gRPC calls and peer frames on one port, frames in order', async () => {
    const { port, frames } = await receiver('bank');
    const client = new HealthClient(`127.0.0.1:${port.port}`, grpc.credentials.createInsecure());
    cleanups.push(() => client.close());
    const status = await new Promise<number>((resolve, reject) =>
      client.check({ service: '' }, (error, reply) => (error ? reject(error) : resolve(reply.status))),
    );
    expect(status).toBe(HealthCheckResponse_ServingStatus.SERVING);

    const transport = sender('bank', port.port);
    for (let round = 1; round <= 200; round += 1) {
      transport.sendPaxos(0, 0, heartbeat(0, round));
      if (round % 7 === 0) await new Promise((resolve) => setImmediate(resolve)); // several frames
    }
    await pollUntil('200 messages delivered', () => frames.flatMap((f) => f.paxos).length === 200, 30_000);
    expect(frames.flatMap((f) => f.paxos.map((m) => m.ballot!.round))).toEqual(
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
    expect(frames.length).toBeGreaterThan(1);
    expect(frames.every((f) => f.cluster === 'bank' && f.senderOrdinal === 1)).toBe(true);
  });

  it('carries peer frames over a Unix socket in a shared directory, and removes the socket file on close', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'sb-sock-'));
    cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
    const path = peerSocketPath(directory, 0, 0);
    writeFileSync(path, 'left by a replica that died'); // a stale file is replaced
    const frames: PeerFrame[] = [];
    const server = new grpc.Server();
    const receiving = new PeerTransport('bank', { shard: 0, ordinal: 0 }, [], logger);
    // TCP port 0 and an address nobody listens on for the sender: only the socket can work.
    const shared = await listenSharedPort(
      '127.0.0.1',
      0,
      server,
      (socket, rest) => receiving.acceptConnection(socket, rest, { onFrame: (f) => frames.push(f) }),
      path,
    );
    cleanups.push(() => {
      receiving.close();
      shared.destroy();
      server.forceShutdown();
    });
    expect(statSync(path).isSocket()).toBe(true);
    const sending = new PeerTransport('bank', { shard: 0, ordinal: 1 }, [['127.0.0.1:1']], logger, directory);
    cleanups.push(() => sending.close());
    for (let round = 1; round <= 50; round += 1) sending.sendPaxos(0, 0, heartbeat(0, round));
    await pollUntil('50 messages over the Unix socket', () => frames.flatMap((f) => f.paxos).length === 50, 30_000);
    expect(frames.flatMap((f) => f.paxos.map((m) => m.ballot!.round))).toEqual(
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
    shared.destroy();
    await pollUntil('socket file removed', () => !existsSync(path), 10_000);
  });

  it('refuses a socket directory whose paths the kernel would not take, naming the flag', () => {
    const base = [
      '--cluster',
      'c',
      '--shard',
      '0',
      '--ordinal',
      '0',
      '--peers',
      '127.0.0.1:1,127.0.0.1:2,127.0.0.1:3;127.0.0.1:4,127.0.0.1:5,127.0.0.1:6;127.0.0.1:7,127.0.0.1:8,127.0.0.1:9',
      '--insecure',
    ];
    expect(parseReplicaConfig([...base, '--peer-socket-dir', '/tmp/s'], {}).peerSocketDir).toBe('/tmp/s');
    expect(parseReplicaConfig(base, {}).peerSocketDir).toBeUndefined();
    expect(() => parseReplicaConfig([...base, '--peer-socket-dir', `/tmp/${'x'.repeat(120)}`], {})).toThrow(
      /--peer-socket-dir .* longer than 107 bytes/,
    );
  });

  it('closes a connection whose frames name another cluster, delivering none of them', async () => {
    const { port, frames } = await receiver('bank');
    const socket = net.connect(port.port, '127.0.0.1');
    cleanups.push(() => socket.destroy());
    socket.write(Buffer.concat([PEER_MAGIC, encodeFrame(frame('other-bank', 1)), encodeFrame(frame('bank', 2))]));
    await new Promise<void>((resolve) => socket.on('close', () => resolve()));
    expect(frames).toEqual([]);
  });

  it('closes a connection that sends a length above the limit', async () => {
    const { port, frames } = await receiver('bank');
    const socket = net.connect(port.port, '127.0.0.1');
    cleanups.push(() => socket.destroy());
    const head = Buffer.alloc(4);
    head.writeUInt32BE(0x7fffffff, 0);
    socket.write(Buffer.concat([PEER_MAGIC, head]));
    await new Promise<void>((resolve) => socket.on('close', () => resolve()));
    expect(frames).toEqual([]);
  });

  it('re-dials a receiver that went away and came back on the same port', async () => {
    const first = await receiver('bank');
    const portNumber = first.port.port;
    const transport = sender('bank', portNumber);
    transport.sendPaxos(0, 0, heartbeat(0, 1));
    await pollUntil('first message', () => first.frames.length === 1, 30_000);
    first.port.destroy();
    const second = await receiver('bank', portNumber);
    // Sends before the sender notices the old connection closed may be lost: the protocols
    // above retransmit, so keep sending until one arrives.
    let round = 2;
    await pollUntil(
      'a message through the new connection',
      () => {
        transport.sendPaxos(0, 0, heartbeat(0, round++));
        return second.frames.length > 0;
      },
      30_000,
    );
  });

  it('drops and re-dials a connection whose receiver stays silent (half-open)', async () => {
    let accepted = 0;
    const silent = net.createServer((socket) => {
      accepted += 1;
      socket.on('error', () => undefined); // reads and never answers
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => silent.close());
    const transport = sender('bank', (silent.address() as net.AddressInfo).port);
    let round = 1;
    await pollUntil(
      'a second connection',
      () => {
        transport.sendPaxos(0, 0, heartbeat(0, round++));
        return accepted >= 2;
      },
      60_000,
      250,
    );
  });
});

describe('frames within the size limit', () => {
  const accept = (to: number, bytes: number): PaxosMessage => ({
    shard: 0,
    from: 0,
    to,
    ballot: { round: 1, ordinal: 0 },
    body: {
      $case: 'accept',
      accept: {
        entries: [{ slot: 1, value: Buffer.alloc(bytes, 7) }],
        commitIndex: 0,
        readSeq: 0,
        promiseQuorumMask: 0,
        readyIndex: 0,
      },
    },
  });
  const frameOf = (paxos: PaxosMessage[]): PeerFrame => ({
    cluster: 'c',
    paxos,
    tx: [],
    senderShard: 0,
    senderOrdinal: 0,
    forwarded: false,
  });

  it('a turn whose messages exceed one frame goes as several frames, in order, none over the limit', () => {
    const messages = Array.from({ length: 10 }, (_, i) => accept(i, 3000));
    const { frames, dropped } = encodeFramesWithinLimit(frameOf(messages), 10_000);
    expect(dropped).toBe(0);
    expect(frames.length).toBeGreaterThan(1);
    const decoded = frames.map((bytes) => {
      expect(bytes.readUInt32BE(0)).toBeLessThanOrEqual(10_000);
      return PeerFrame.decode(bytes.subarray(4));
    });
    expect(decoded.flatMap((f) => f.paxos.map((m) => m.to))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('a single message longer than any frame is dropped and counted, the rest still go', () => {
    const { frames, dropped } = encodeFramesWithinLimit(
      frameOf([accept(1, 100), accept(2, 50_000), accept(3, 100)]),
      10_000,
    );
    expect(dropped).toBe(1);
    expect(frames.flatMap((bytes) => PeerFrame.decode(bytes.subarray(4)).paxos.map((m) => m.to))).toEqual([1, 3]);
  });
});

describe('member addresses (issue 19: member ids are not slots)', () => {
  const peers = [['10.0.0.1:1', '10.0.0.2:1', '10.0.0.3:1', '10.0.0.4:1', '10.0.0.5:1']];

  it('resolves a member from the configuration, a founding id from the table, and learns an unknown leader from its frames', () => {
    const transport = new PeerTransport('bank', { shard: 0, ordinal: 4 }, peers, logger);
    const known: Record<number, string> = { 0: '10.0.0.1:1', 1: '10.0.0.2:1', 2: '10.0.0.3:1', 7: '10.0.0.9:1' };
    transport.memberAddress = (member) => known[member];
    expect(transport.addressOfMember(7)).toBe('10.0.0.9:1');
    expect(transport.slotOfAddress('10.0.0.9:1')).toBeUndefined();
    // A new learner knows only the founding configuration; its leader, member 3 on slot 3, is
    // reachable through the slot its frames come from.
    expect(transport.addressOfMember(3)).toBeUndefined();
    transport.noteMemberSlot(3, 3);
    expect(transport.addressOfMember(3)).toBe('10.0.0.4:1');
    // What a configuration says is never overridden by a frame.
    transport.noteMemberSlot(7, 1);
    expect(transport.addressOfMember(7)).toBe('10.0.0.9:1');
    // Unknown slots route nowhere (and are not reachable), not to an exception.
    expect(transport.isReachable(0, 8)).toBe(false);
    transport.close();
  });
});
