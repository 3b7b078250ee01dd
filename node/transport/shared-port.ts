// One listening port for everything a replica serves over TCP: the client API and health
// (gRPC, HTTP/2) and the peer protocol (peer-transport.ts). The first bytes of a connection
// decide: PEER_MAGIC (or PEER_TLS_MAGIC) makes it a peer stream; a TLS ClientHello (0x16), when the
// replica runs TLS, goes through the client TLS handshake (node/security/client-tls.ts) and then,
// decrypted, to the gRPC server's connection injector; anything else (an HTTP/2 preface) is
// handed, with the bytes already read, to the same injector (with TLS on, every call on such a
// plaintext connection is refused UNAUTHENTICATED by the service's per-call check). The same
// listener may also accept on a Unix socket (peers on the same host; see peer-transport.ts).
import { rmSync } from 'node:fs';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { ClientTls } from '../security/client-tls.js';
import { PEER_MAGIC, PEER_TLS_MAGIC, type PeerConnectionKind } from './peer-transport.js';

/** The first byte of a TLS record carrying a handshake (a ClientHello). */
const TLS_HANDSHAKE = 0x16;

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
  onPeerConnection: (socket: net.Socket, rest: Buffer, kind: PeerConnectionKind) => void,
  unixSocketPath?: string,
  clientTls?: ClientTls,
): Promise<SharedPort> {
  const injector = grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const open = new Set<net.Socket>();
  const onConnection = (socket: net.Socket, local: boolean) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    socket.on('error', () => undefined);
    let head: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), SNIFF_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const compared = Math.min(head.length, PEER_MAGIC.length);
      const plain = head.subarray(0, compared).equals(PEER_MAGIC.subarray(0, compared));
      const secure = head.subarray(0, compared).equals(PEER_TLS_MAGIC.subarray(0, compared));
      if ((plain || secure) && head.length < PEER_MAGIC.length) return; // need more bytes to decide
      clearTimeout(timer);
      socket.off('data', onData);
      socket.pause();
      if (plain || secure) {
        onPeerConnection(socket, head.subarray(PEER_MAGIC.length), { tls: secure, local });
      } else if (clientTls && !local && head[0] === TLS_HANDSHAKE) {
        socket.unshift(head); // the TLS layer reads what is buffered first
        clientTls.accept(socket, (decrypted) => injector.injectConnection(decrypted));
      } else {
        socket.unshift(head);
        injector.injectConnection(socket);
      }
    };
    socket.on('data', onData);
  };
  const server = net.createServer((socket) => onConnection(socket, false));
  await listen(server, (callback) => server.listen(port, host, callback));
  let unixServer: net.Server | undefined;
  if (unixSocketPath !== undefined) {
    // A socket file left by a replica that died is in the way; the data directory's lock
    // already ensures no other process is this replica.
    rmSync(unixSocketPath, { force: true });
    const listening = net.createServer((socket) => onConnection(socket, true));
    try {
      await listen(listening, (callback) => listening.listen(unixSocketPath, callback));
    } catch (error) {
      server.close();
      throw error;
    }
    unixServer = listening;
  }
  const stopAccepting = () => {
    server.close();
    unixServer?.close(); // also removes the socket file
  };
  return {
    port: (server.address() as net.AddressInfo).port,
    stopAccepting,
    destroy: () => {
      stopAccepting();
      injector.destroy();
      for (const socket of open) socket.destroy();
    },
  };
}

function listen(server: net.Server, start: (callback: () => void) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    start(() => {
      server.off('error', reject);
      resolve();
    });
  });
}
