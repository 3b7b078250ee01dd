// One listening port for everything a replica serves over TCP: the client API and health
// (gRPC, HTTP/2) and the peer protocol (peer-transport.ts). The first bytes of a connection
// decide: PEER_MAGIC makes it a peer stream; anything else (an HTTP/2 preface) is handed, with
// the bytes already read, to the gRPC server through its connection injector.
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { PEER_MAGIC } from './peer-transport.js';

/** A connection that has not said what it is within this time is closed. */
const SNIFF_TIMEOUT_MS = 10_000;

export interface SharedPort {
  port: number;
  /** Stops accepting connections (those already open stay). */
  stopAccepting(): void;
  /** Closes every connection still open. */
  destroy(): void;
}

export async function listenSharedPort(
  host: string,
  port: number,
  grpcServer: grpc.Server,
  onPeerConnection: (socket: net.Socket, rest: Buffer) => void,
): Promise<SharedPort> {
  const injector = grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const open = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    socket.on('error', () => undefined);
    let head: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), SNIFF_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const compared = Math.min(head.length, PEER_MAGIC.length);
      const peer = head.subarray(0, compared).equals(PEER_MAGIC.subarray(0, compared));
      if (peer && head.length < PEER_MAGIC.length) return; // need more bytes to decide
      clearTimeout(timer);
      socket.off('data', onData);
      socket.pause();
      if (peer) {
        onPeerConnection(socket, head.subarray(PEER_MAGIC.length));
      } else {
        socket.unshift(head);
        injector.injectConnection(socket);
      }
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    stopAccepting: () => server.close(),
    destroy: () => {
      server.close();
      injector.destroy();
      for (const socket of open) socket.destroy();
    },
  };
}
