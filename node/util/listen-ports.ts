// Loopback ports for servers we start ourselves (local clusters, tests). They are drawn from
// below the kernel's ephemeral range (32768-60999 by default): a port from that range can be
// taken at any moment as the local port of an outgoing connection (every replica keeps
// long-lived gRPC connections), after which a server could never bind it.
import { createServer, type Server } from 'node:net';

const RANGE_START = 20_000;
const RANGE_END = 32_000; // exclusive
const ATTEMPTS_MAX = 500;

function tryListen(port: number, host: string): Promise<Server | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen({ port, host, exclusive: true }, () => resolve(server));
  });
}

/** `count` distinct ports that were free a moment ago, all held together while choosing. */
export async function freeListeningPorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  const held: Server[] = [];
  const ports: number[] = [];
  try {
    for (let attempt = 0; ports.length < count && attempt < ATTEMPTS_MAX; attempt += 1) {
      const port = RANGE_START + Math.floor(Math.random() * (RANGE_END - RANGE_START));
      if (ports.includes(port)) continue;
      const server = await tryListen(port, host);
      if (!server) continue;
      held.push(server);
      ports.push(port);
    }
    if (ports.length < count)
      throw new Error(`could not find ${count} free loopback ports in ${RANGE_START}-${RANGE_END - 1}`);
    return ports;
  } finally {
    await Promise.all(held.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}
