#!/usr/bin/env node
// What peer TLS costs per frame, without a cluster: two PeerTransports in this process, one
// sending Accept-like frames to the other over loopback TCP through a real shared port,
// plaintext and then TLS (certificates made by node/security/certs.ts). Prints CPU time (user +
// system of this process, both ends) and wall time per frame for a few frame sizes; CPU time is
// the number to read on a loaded machine. Needs `npx tsc` first (uses dist/).
//
//   node scripts/peer-tls-cost.mjs [frames-per-size]
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';

const dist = path.join(path.dirname(new URL(import.meta.url).pathname), '../dist/node');
const { PeerTransport } = await import(path.join(dist, 'transport/peer-transport.js'));
const { listenSharedPort } = await import(path.join(dist, 'transport/shared-port.js'));
const { PeerTls } = await import(path.join(dist, 'security/peer-tls.js'));
const { ensureClusterCertificates } = await import(path.join(dist, 'security/certs.js'));
const { freeListeningPorts } = await import(path.join(dist, 'util/listen-ports.js'));

const FRAMES = Number(process.argv[2] ?? 4000);
const SIZES = [256, 4096, 32768];
const logger = pino({ level: 'silent' });
const policy = { namespace: 'default', cluster: 'bench', shards: 1, replicasPerShard: 3 };
const dir = await mkdtemp(path.join(os.tmpdir(), 'shardbank-tls-cost-'));
const certs = await ensureClusterCertificates(dir, policy);

async function run(secure, size) {
  const [portA, portB] = await freeListeningPorts(2);
  const peers = [[`127.0.0.1:${portA}`, `127.0.0.1:${portB}`, '127.0.0.1:1']];
  const tlsOf = (ordinal) => (secure ? new PeerTls(certs.replicas[0][ordinal], policy) : undefined);
  const a = new PeerTransport('bench', { shard: 0, ordinal: 0 }, peers, logger, undefined, tlsOf(0));
  const b = new PeerTransport('bench', { shard: 0, ordinal: 1 }, peers, logger, undefined, tlsOf(1));
  let received = 0;
  let wake;
  const sink = {
    onFrame: (frame) => {
      received += frame.paxos.length;
      wake?.();
    },
  };
  const server = new grpc.Server();
  const port = await listenSharedPort('127.0.0.1', portB, server, (socket, rest, kind) =>
    b.acceptConnection(socket, rest, sink, kind),
  );
  const message = (slot) => ({
    shard: 0,
    from: 0,
    to: 1,
    ballot: { round: 1, ordinal: 0 },
    body: {
      $case: 'accept',
      accept: {
        entries: [{ slot, value: Buffer.alloc(size, 7) }],
        commitIndex: slot,
        readSeq: 0,
        promiseQuorumMask: 0,
        readyIndex: 0,
      },
    },
  });
  // Warm up: the connection (and handshake) before measuring. Counted in messages: a turn
  // that ends before the transport's flush puts two messages in one frame.
  while (received === 0) {
    a.sendPaxos(0, 1, message(0));
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const start = received;
  const cpu = process.cpuUsage();
  const wall = process.hrtime.bigint();
  for (let i = 1; i <= FRAMES; i += 1) {
    a.sendPaxos(0, 1, message(i));
    // One frame per turn, at most 32 in flight: the transport's one-frame-per-turn pattern.
    if (i % 32 === 0) while (received - start < i - 32) await new Promise((resolve) => (wake = resolve));
    else await new Promise((resolve) => setImmediate(resolve));
  }
  while (received - start < FRAMES) await new Promise((resolve) => (wake = resolve));
  const used = process.cpuUsage(cpu);
  const wallUs = Number(process.hrtime.bigint() - wall) / 1000;
  a.close();
  b.close();
  port.destroy();
  return { cpuUs: (used.user + used.system) / FRAMES, wallUs: wallUs / FRAMES, frames: a.framesSent };
}

console.log(`peer frames over loopback TCP, ${FRAMES} frames per row, one process for both ends`);
console.log('bytes    plain cpu/frame   TLS cpu/frame   ratio    plain wall   TLS wall');
for (const size of SIZES) {
  const plain = await run(false, size);
  const secure = await run(true, size);
  console.log(
    `${String(size).padEnd(8)} ${plain.cpuUs.toFixed(1).padStart(10)} µs ${secure.cpuUs.toFixed(1).padStart(12)} µs ${(secure.cpuUs / plain.cpuUs).toFixed(2).padStart(7)} ${plain.wallUs.toFixed(1).padStart(10)} µs ${secure.wallUs.toFixed(1).padStart(8)} µs`,
  );
}
await rm(dir, { recursive: true, force: true });
process.exit(0);
