#!/usr/bin/env node
// The physical floor under a lone client's transfer, measured on this machine (docs/PERFORMANCE.md,
// "A lone client"): what one durable write, one event-loop turn, one hop between two processes
// and one gRPC round trip cost, each the median of many, with nothing else of shardbank running.
// The second process is this script forked (an echo server), as a replica is another process.
// Needs `npx tsc` first (TLS certificates come from dist/node/security/x509.js).
//
//   node scripts/physical-floor.mjs [--dir DIR] [--count N]
//
// DIR (default: the OS temp dir) should be on the disk the cluster's state dir is on.
import { fork } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';

const dist = path.join(path.dirname(new URL(import.meta.url).pathname), '../dist/node');
const raw = { serialize: (b) => b, deserialize: (b) => b };
const SERVICE = {
  unary: {
    path: '/floor.Echo/Unary',
    requestStream: false,
    responseStream: false,
    requestSerialize: raw.serialize,
    requestDeserialize: raw.deserialize,
    responseSerialize: raw.serialize,
    responseDeserialize: raw.deserialize,
  },
  stream: {
    path: '/floor.Echo/Stream',
    requestStream: true,
    responseStream: true,
    requestSerialize: raw.serialize,
    requestDeserialize: raw.deserialize,
    responseSerialize: raw.serialize,
    responseDeserialize: raw.deserialize,
  },
};

async function echoServer() {
  const certs = JSON.parse(process.argv[3]);
  const unix = net.createServer((s) => s.on('data', (d) => s.write(d)));
  const tcp = net.createServer((s) => {
    s.setNoDelay(true);
    s.on('data', (d) => s.write(d));
  });
  const socketPath = path.join(os.tmpdir(), `floor-${process.pid}.sock`);
  await new Promise((r) => unix.listen(socketPath, r));
  await new Promise((r) => tcp.listen(0, '127.0.0.1', r));
  const handlers = {
    unary: (call, callback) => callback(null, call.request),
    stream: (call) => call.on('data', (d) => call.write(d)),
  };
  const bindGrpc = async (credentials) => {
    const server = new grpc.Server();
    server.addService(SERVICE, handlers);
    return new Promise((r, j) => server.bindAsync('127.0.0.1:0', credentials, (e, port) => (e ? j(e) : r(port))));
  };
  const plainPort = await bindGrpc(grpc.ServerCredentials.createInsecure());
  const tlsPort = await bindGrpc(
    grpc.ServerCredentials.createSsl(
      Buffer.from(certs.ca),
      [{ cert_chain: Buffer.from(certs.cert), private_key: Buffer.from(certs.key) }],
      false,
    ),
  );
  process.send({ socketPath, tcpPort: tcp.address().port, plainPort, tlsPort });
  process.on('disconnect', () => {
    fs.rmSync(socketPath, { force: true });
    process.exit(0);
  });
}

const us = (ns) => Number(ns) / 1000;

async function timeEach(count, once) {
  const samples = [];
  for (let i = 0; i < count; i += 1) {
    const t0 = process.hrtime.bigint();
    await once();
    samples.push(us(process.hrtime.bigint() - t0));
  }
  return samples;
}

function row(name, samples, note = '') {
  const s = [...samples].sort((a, b) => a - b);
  const p = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  console.log(`| ${name} | ${p(0.5).toFixed(1)} | ${p(0.9).toFixed(1)} | ${p(0.99).toFixed(1)} | ${note} |`);
}

async function main() {
  const { values } = parseArgs({
    options: { dir: { type: 'string', default: os.tmpdir() }, count: { type: 'string', default: '2000' } },
  });
  const count = Number(values.count);
  const { createCa, issueLeafCertificate } = await import(path.join(dist, 'security/x509.js'));
  const ca = createCa('floor CA', { days: 1 });
  const leaf = issueLeafCertificate(ca, {
    commonName: 'localhost',
    subjectAltNames: { dnsNames: ['localhost'], ips: ['127.0.0.1'] },
    server: true,
    lifetimeMs: 86_400_000,
  });
  const child = fork(
    new URL(import.meta.url).pathname,
    ['--echo-server', JSON.stringify({ ca: ca.certPem, cert: leaf.certPem, key: leaf.keyPem })],
    { stdio: 'inherit' },
  );
  const ports = await new Promise((r) => child.once('message', r));
  console.log(
    `physical floor, ${new Date().toISOString()}, ${count} samples each, load average ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  console.log('| what | p50 µs | p90 µs | p99 µs | how |');
  console.log('| --- | ---: | ---: | ---: | --- |');

  // Durable writes: a preallocated, synced file, as the log's segments are.
  const file = path.join(values.dir, `floor-${process.pid}.seg`);
  const bytes = 16 * 1024 * 1024;
  fs.writeFileSync(file, Buffer.alloc(bytes));
  const fd0 = fs.openSync(file, 'r+');
  fs.fsyncSync(fd0);
  const record = Buffer.alloc(300, 7);
  let offset = 0;
  const next = () => (offset = (offset + 4096) % (bytes - 4096));
  row(
    'write + fdatasync, 300 B, this thread',
    await timeEach(count, () => {
      fs.writeSync(fd0, record, 0, record.length, next());
      fs.fdatasyncSync(fd0);
    }),
    'two system calls',
  );
  fs.closeSync(fd0);
  const fdSync = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_DSYNC);
  row(
    'O_DSYNC write, 300 B, this thread',
    await timeEach(count, () => fs.writeSync(fdSync, record, 0, record.length, next())),
    'a follower (syncNow)',
  );
  row(
    'O_DSYNC write, 300 B, thread pool',
    await timeEach(
      count,
      () => new Promise((r, j) => fs.write(fdSync, record, 0, record.length, next(), (e) => (e ? j(e) : r()))),
    ),
    'the leader (fs.write)',
  );
  fs.closeSync(fdSync);
  fs.rmSync(file);

  row(
    'setImmediate, idle loop',
    await timeEach(count, () => new Promise((r) => setImmediate(r))),
    'one event-loop turn',
  );

  const echo = async (socket) => {
    const samples = await timeEach(
      count,
      () =>
        new Promise((r) => {
          socket.once('data', r);
          socket.write(record.subarray(0, 100));
        }),
    );
    socket.destroy();
    return samples;
  };
  const unix = net.connect(ports.socketPath);
  await new Promise((r) => unix.once('connect', r));
  row('Unix socket round trip, 100 B', await echo(unix), 'two processes, two hops');
  const tcp = net.connect({ port: ports.tcpPort, host: '127.0.0.1', noDelay: true });
  await new Promise((r) => tcp.once('connect', r));
  row('loopback TCP round trip, 100 B', await echo(tcp), 'two processes, two hops');

  const Client = grpc.makeGenericClientConstructor(SERVICE, 'Echo');
  const plain = new Client(`127.0.0.1:${ports.plainPort}`, grpc.credentials.createInsecure());
  const secure = new Client(`127.0.0.1:${ports.tlsPort}`, grpc.credentials.createSsl(Buffer.from(ca.certPem)), {
    'grpc.ssl_target_name_override': 'localhost',
  });
  const message = record.subarray(0, 100);
  for (const [name, client] of [
    ['plaintext', plain],
    ['TLS', secure],
  ]) {
    const unary = () => new Promise((r, j) => client.unary(message, (e, v) => (e ? j(e) : r(v))));
    await timeEach(200, unary); // connect, JIT
    row(`gRPC unary round trip, ${name}`, await timeEach(count, unary), 'grpc-js both ends');
    const call = client.stream();
    call.on('error', () => undefined); // the echo server goes away at the end
    const streamed = () =>
      new Promise((r) => {
        call.once('data', r);
        call.write(message);
      });
    await timeEach(200, streamed);
    row(`gRPC stream message round trip, ${name}`, await timeEach(count, streamed), 'as the TransferStream');
    call.end();
  }
  plain.close();
  secure.close();
  child.disconnect();
}

if (process.argv[2] === '--echo-server') await echoServer();
else await main();
