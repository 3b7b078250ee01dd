// TLS 1.3 with client certificates for the peer protocol (docs/SECURITY.md). Both ends
// present their replica certificate; each verifies the other's chain against the cluster CA
// and its SAN URI identity against the topology (identity.ts). The dialer also checks that it
// reached the replica it meant to dial, the acceptor that the frames speak for the identity.
//
// The files are read at start and again on reload() (SIGHUP): new connections use the new
// certificate, open ones keep theirs until they break.
import { readFileSync, statSync } from 'node:fs';
import type net from 'node:net';
import tls from 'node:tls';
import { authorizePeer, type PeerPolicy, type ReplicaIdentity } from './identity.js';

export interface PeerTlsFiles {
  cert: string;
  key: string;
  ca: string;
}

/**
 * Reads the replica's three TLS files (--tls-cert, --tls-key, --tls-ca), which serve both the
 * peer protocol and the client API; throws naming the flag and the file of one it cannot read.
 */
export function readTlsFiles(files: PeerTlsFiles): { cert: Buffer; key: Buffer; ca: Buffer } {
  const read = (flag: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new Error(`${flag} ${file}: ${(error as Error).message}`);
    }
  };
  return {
    cert: read('--tls-cert', files.cert),
    key: read('--tls-key', files.key),
    ca: read('--tls-ca', files.ca),
  };
}

export class PeerTls {
  private context: tls.SecureContext;
  /**
   * Accepted sockets go through a tls.Server that never listens (handed each connection):
   * that is what computes `authorized` against the CA for a server-side TLSSocket.
   */
  private readonly server: tls.Server;
  private readonly pending = new Map<string, AcceptCallbacks>();

  constructor(
    readonly files: PeerTlsFiles,
    readonly policy: PeerPolicy,
  ) {
    const options = readTlsFiles(files);
    this.context = PeerTls.secureContext(files, options);
    this.server = tls.createServer({
      ...options,
      minVersion: 'TLSv1.3',
      requestCert: true,
      // As the shared port's sniffer: a connection that does not finish its handshake goes.
      handshakeTimeout: 10_000,
      // Checked in onSecure, so that a refusal can say what the certificate was.
      rejectUnauthorized: false,
    });
    this.server.on('secureConnection', (secure) => this.onSecure(secure));
    this.server.on('tlsClientError', (error, secure) => {
      const callbacks = this.take(secure);
      callbacks?.onFailed(error);
      secure.destroy();
    });
  }

  /** Re-reads the files; on a bad file keeps the old ones and throws (naming the file). */
  reload(): void {
    const options = readTlsFiles(this.files);
    const context = PeerTls.secureContext(this.files, options);
    this.server.setSecureContext({ ...options, minVersion: 'TLSv1.3' });
    this.context = context;
  }

  private static secureContext(files: PeerTlsFiles, options: tls.SecureContextOptions): tls.SecureContext {
    try {
      return tls.createSecureContext({ ...options, minVersion: 'TLSv1.3' });
    } catch (error) {
      throw new Error(
        `--tls-cert ${files.cert} / --tls-key ${files.key} / --tls-ca ${files.ca}: ${(error as Error).message}`,
      );
    }
  }

  /**
   * The server side on an accepted TCP connection. `onIdentity` runs once the peer proved a
   * certificate of the cluster CA naming a member of the topology; `onRefused` otherwise,
   * with why and what the certificate said; `onFailed` if the handshake itself failed.
   * Nothing is read from the connection before either.
   */
  accept(socket: net.Socket, callbacks: AcceptCallbacks): void {
    this.pending.set(connectionKey(socket), callbacks);
    socket.once('close', () => this.pending.delete(connectionKey(socket)));
    this.server.emit('connection', socket);
  }

  private take(secure: tls.TLSSocket): AcceptCallbacks | undefined {
    const key = connectionKey(secure);
    const callbacks = this.pending.get(key);
    this.pending.delete(key);
    return callbacks;
  }

  private onSecure(secure: tls.TLSSocket): void {
    const callbacks = this.take(secure);
    if (!callbacks) {
      secure.destroy();
      return;
    }
    const certificate = summarize(secure.getPeerCertificate());
    if (!secure.authorized) {
      callbacks.onRefused(
        secure,
        certificate.present
          ? `the certificate is not signed by the cluster CA (${String(secure.authorizationError)})`
          : 'no client certificate',
        certificate,
      );
      return;
    }
    const verdict = authorizePeer(certificate.subjectAltName, this.policy);
    if ('refused' in verdict) callbacks.onRefused(secure, verdict.refused, certificate);
    else callbacks.onIdentity(secure, verdict.identity);
  }

  /**
   * The client side on a connected socket, expecting the replica `expected`: its slot when the
   * address came from the static peer table; any slot of the shard (ordinal undefined) when it
   * came from the shard's configuration (a member added at runtime).
   */
  connect(socket: net.Socket, expected: { shard: number; ordinal: number | undefined }): tls.TLSSocket {
    return tls.connect({
      socket,
      secureContext: this.context,
      minVersion: 'TLSv1.3',
      rejectUnauthorized: true,
      checkServerIdentity: (_host, certificate) => {
        const verdict = authorizePeer(certificate.subjectaltname, this.policy);
        if ('refused' in verdict) return new Error(`peer certificate refused: ${verdict.refused}`);
        const { shard, ordinal } = verdict.identity;
        if (shard !== expected.shard || (expected.ordinal !== undefined && ordinal !== expected.ordinal))
          return new Error(
            `peer certificate refused: dialled shard ${expected.shard} replica ${expected.ordinal ?? '(any slot)'}, the certificate names shard ${shard} replica ${ordinal}`,
          );
        return undefined;
      },
    });
  }
}

/**
 * Why a peer socket directory cannot stand in for TLS, or undefined if it can: peers on a Unix
 * socket are authenticated by the file system, so the directory must be this user's and
 * closed to everyone else (0700).
 */
export function privateDirectoryProblem(directory: string): string | undefined {
  let info;
  try {
    info = statSync(directory);
  } catch (error) {
    return `--peer-socket-dir ${directory}: ${(error as Error).message}`;
  }
  if (!info.isDirectory()) return `--peer-socket-dir ${directory} is not a directory`;
  if (process.getuid && info.uid !== process.getuid())
    return `--peer-socket-dir ${directory} belongs to uid ${info.uid}, not to this user (${process.getuid()}): with peer TLS its sockets would be open to another user`;
  if ((info.mode & 0o077) !== 0)
    return `--peer-socket-dir ${directory} has mode ${(info.mode & 0o777).toString(8)}: with peer TLS it must be 0700 (its sockets skip TLS)`;
  return undefined;
}

export interface AcceptCallbacks {
  onIdentity(secure: tls.TLSSocket, identity: ReplicaIdentity): void;
  onRefused(secure: tls.TLSSocket, reason: string, certificate: CertificateSummary): void;
  onFailed(error: Error): void;
}

/** Two live TCP connections never share both ends' address and port. */
function connectionKey(socket: net.Socket): string {
  return `${socket.remoteAddress}|${socket.remotePort}|${socket.localPort}`;
}

export interface CertificateSummary {
  present: boolean;
  subject: string;
  issuer: string;
  subjectAltName: string | undefined;
}

function summarize(certificate: tls.PeerCertificate | Record<string, never>): CertificateSummary {
  const peer = certificate as Partial<tls.PeerCertificate>;
  const dn = (name: Partial<Record<string, string | string[]>> | undefined): string =>
    name
      ? Object.entries(name)
          .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : String(v)}`)
          .join(',')
      : '';
  return {
    present: peer.subject !== undefined,
    subject: dn(peer.subject as unknown as Record<string, string> | undefined),
    issuer: dn(peer.issuer as unknown as Record<string, string> | undefined),
    subjectAltName: peer.subjectaltname,
  };
}
