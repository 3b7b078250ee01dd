// Free loopback ports for the local runtime. All requested ports are held open together
// while choosing, so one call never hands out the same port twice.
import { createConnection, createServer, type Server } from 'node:net';
import { sleep } from '../client/backoff.js';
import { freeListeningPorts } from '../util/listen-ports.js';

export const LOOPBACK_HOST = '127.0.0.1';

function listen(port: number): Promise<Server | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen(port, LOOPBACK_HOST, () => resolve(server));
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Ports below the ephemeral range (see node/util/listen-ports.ts for why). */
export async function freePorts(count: number): Promise<number[]> {
  return freeListeningPorts(count, LOOPBACK_HOST);
}

export async function isPortFree(port: number): Promise<boolean> {
  const server = await listen(port);
  if (server === undefined) return false;
  await close(server);
  return true;
}

export function canConnect(port: number, host = LOOPBACK_HOST, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host });
    const done = (result: boolean) => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export async function waitForPort(port: number, deadlineMs: number): Promise<boolean> {
  const deadlineAtMs = Date.now() + deadlineMs;
  while (Date.now() < deadlineAtMs) {
    if (await canConnect(port)) return true;
    await sleep(100);
  }
  return false;
}
