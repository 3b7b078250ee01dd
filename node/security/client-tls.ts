// TLS and client authentication on the gRPC API (docs/SECURITY.md). The shared port hands a
// connection that starts with a TLS ClientHello to accept(): the handshake runs here (native
// TLS on the TCP socket, the replica's certificate, a client certificate requested but not
// required), the connection's identity is decided once, and the decrypted stream goes to the
// gRPC server's plaintext connection injector. Each call then looks its connection's verdict
// up (one map lookup) and is refused with a status that says what was wrong.
//
// Why not grpc-js's own TLS credentials: with a client certificate requested but not
// required, its auth context is empty for a certificate that failed verification (it returns
// {} when the socket is not `authorized`), so a call could not say "expired" or "another CA";
// and with createSsl(..., true) a bad certificate fails the handshake, which the client sees
// as a bare UNAVAILABLE.
import type net from 'node:net';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { identitiesOf, REPLICA_SLOTS_MAX, type Identity, type PeerPolicy } from './identity.js';
import { readTlsFiles, type PeerTlsFiles } from './peer-tls.js';

/** Whether a call only reads (balances, status, health) or may change state. */
/** What a call needs: read (any client or replica), transfer (role transfer), admin (role admin: Membership). */
export type CallNeed = 'read' | 'transfer' | 'admin';

export interface Refusal {
  code: grpc.status;
  message: string;
}

/** A connection's authentication result, decided once at its handshake. */
type Verdict = { identity: Identity; label: string } | { refusal: Refusal };

const REQUIRES_TLS: Refusal = {
  code: grpc.status.UNAUTHENTICATED,
  message: 'this cluster requires TLS: connect with TLS and a client certificate (--ca, --cert, --key)',
};

/** How calls of one connection are checked: the replica's BankService asks this per call. */
export interface ClientAuthorizer {
  /**
   * The refusal for a call from `peer` (grpc-js `call.getPeer()`) that needs `need` and uses
   * `clientIds`, or undefined when it may run.
   */
  refusal(peer: string, need: CallNeed, clientIds: readonly string[]): Refusal | undefined;
  /** The identity a connection authenticated as, or undefined (a refused or unknown one). */
  identityOf(peer: string): Identity | undefined;
}

export class ClientTls implements ClientAuthorizer {
  private readonly server: tls.Server;
  private readonly verdicts = new Map<string, Verdict>();
  private readonly pending = new Map<string, (secure: net.Socket) => void>();

  constructor(
    readonly files: PeerTlsFiles,
    readonly policy: PeerPolicy,
  ) {
    this.server = tls.createServer({
      ...readTlsFiles(files),
      minVersion: 'TLSv1.3',
      ALPNProtocols: ['h2'],
      requestCert: true,
      // Verified below, per call, so that the refusal can say what was wrong.
      rejectUnauthorized: false,
      handshakeTimeout: 10_000,
    });
    this.server.on('secureConnection', (secure) => this.onSecure(secure));
    this.server.on('tlsClientError', (_error, secure) => {
      this.pending.delete(connectionKey(secure));
      secure.destroy();
    });
  }

  /** Re-reads the files (SIGHUP): new connections use them; throws naming the file on a bad one. */
  reload(): void {
    const options = readTlsFiles(this.files);
    tls.createSecureContext({ ...options, minVersion: 'TLSv1.3' }); // throws on a bad pair
    this.server.setSecureContext({
      ...options,
      minVersion: 'TLSv1.3',
      ALPNProtocols: ['h2'],
    } as tls.SecureContextOptions);
  }

  /** Runs the TLS handshake on a TCP connection, then hands the decrypted stream to `inject`. */
  accept(socket: net.Socket, inject: (secure: net.Socket) => void): void {
    const key = connectionKey(socket);
    this.pending.set(key, inject);
    socket.once('close', () => this.pending.delete(key));
    this.server.emit('connection', socket);
  }

  private onSecure(secure: tls.TLSSocket): void {
    const key = connectionKey(secure);
    const inject = this.pending.get(key);
    this.pending.delete(key);
    if (!inject) {
      secure.destroy();
      return;
    }
    const verdict = this.verdictOf(secure);
    this.verdicts.set(key, verdict);
    secure.once('close', () => {
      if (this.verdicts.get(key) === verdict) this.verdicts.delete(key);
    });
    inject(secure);
  }

  private verdictOf(secure: tls.TLSSocket): Verdict {
    const certificate = secure.getPeerCertificate() as Partial<tls.PeerCertificate>;
    const present = certificate.subject !== undefined;
    const unauthenticated = (message: string): Verdict => ({
      refusal: { code: grpc.status.UNAUTHENTICATED, message },
    });
    if (!present) return unauthenticated('no client certificate: this cluster requires one (--cert, --key)');
    const described = `subject ${distinguishedName(certificate.subject)}, SAN ${certificate.subjectaltname ?? 'none'}`;
    if (!secure.authorized) {
      const reason = String(secure.authorizationError);
      const why =
        reason === 'CERT_HAS_EXPIRED'
          ? `the client certificate expired on ${certificate.valid_to}`
          : reason === 'CERT_NOT_YET_VALID'
            ? `the client certificate is not valid before ${certificate.valid_from}`
            : `the client certificate is not signed by this cluster's CA (${reason})`;
      return unauthenticated(`${why}: ${described}`);
    }
    const identities = identitiesOf(certificate.subjectaltname);
    if (identities.length !== 1)
      return unauthenticated(
        `the client certificate names ${identities.length} shardbank identities, expected one: ${described}`,
      );
    const identity = identities[0]!;
    const { namespace, cluster } = this.policy;
    if (identity.namespace !== namespace || identity.cluster !== cluster)
      return unauthenticated(
        `the client certificate names cluster ${identity.namespace}/${identity.cluster}, this is ${namespace}/${cluster}: ${described}`,
      );
    if (identity.kind === 'replica' && (identity.shard >= this.policy.shards || identity.ordinal >= REPLICA_SLOTS_MAX))
      return unauthenticated(
        `the certificate names shard ${identity.shard} replica ${identity.ordinal}, outside the topology: ${described}`,
      );
    const label =
      identity.kind === 'replica'
        ? `replica shard ${identity.shard} ordinal ${identity.ordinal}`
        : `client ${identity.name} (role ${identity.role})`;
    return { identity, label };
  }

  refusal(peer: string, need: CallNeed, clientIds: readonly string[]): Refusal | undefined {
    const verdict = this.verdicts.get(peer);
    if (!verdict) return REQUIRES_TLS;
    if ('refusal' in verdict) return verdict.refusal;
    const { identity, label } = verdict;
    if (identity.kind === 'replica') {
      // Forwarding: the first replica checked. A replica never changes membership itself; it
      // reads it (GetMembership when it starts on an empty data dir).
      if (need === 'admin')
        return { code: grpc.status.PERMISSION_DENIED, message: `${label} may not change membership` };
      return undefined;
    }
    if (need === 'admin' && identity.role !== 'admin')
      return {
        code: grpc.status.PERMISSION_DENIED,
        message: `${label}: membership changes need a client certificate of role admin`,
      };
    if (need === 'transfer' && identity.role !== 'transfer')
      return {
        code: grpc.status.PERMISSION_DENIED,
        message: `${label} may only read (balances, status); this call changes state`,
      };
    for (const clientId of clientIds) {
      if (!clientIdAllowed(identity.name, clientId))
        return {
          code: grpc.status.PERMISSION_DENIED,
          message: `${label} may use client_id ${identity.name} or ${identity.name}/..., not ${JSON.stringify(clientId)}`,
        };
    }
    return undefined;
  }

  identityOf(peer: string): Identity | undefined {
    const verdict = this.verdicts.get(peer);
    return verdict && 'identity' in verdict ? verdict.identity : undefined;
  }
}

/** Whether a client named `name` may use `clientId`: `<name>` or `<name>/<anything>`. */
export function clientIdAllowed(name: string, clientId: string): boolean {
  return clientId === name || (clientId.length > name.length + 1 && clientId.startsWith(`${name}/`));
}

/** The key grpc-js's `call.getPeer()` gives for this connection: `<address>:<port>`. */
function connectionKey(socket: net.Socket): string {
  return `${socket.remoteAddress}:${socket.remotePort}`;
}

function distinguishedName(name: unknown): string {
  if (!name || typeof name !== 'object') return '';
  return Object.entries(name as Record<string, string | string[]>)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : String(v)}`)
    .join(',');
}
