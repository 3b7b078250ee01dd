// Free loopback ports for the local runtime. All requested ports are held open together
// while choosing, so one call never hands out the same port twice.
import { createConnection, createServer, type Server } from 'node:net';
import { sleep } from '../client/backoff.js';

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

export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let index = 0; index < count; index += 1) {
      const server = await listen(0);
      if (server === undefined) throw new Error('could not bind a loopback port');
      servers.push(server);
    }
    return servers.map((server) => {
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('unexpected server address');
      return address.port;
    });
  } finally {
    await Promise.all(servers.map(close));
  }
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
