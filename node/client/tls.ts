// Client TLS (docs/SECURITY.md): the cluster CA to verify replicas with, and the client's own
// certificate and key (its identity, a SAN URI shardbank://<namespace>/<cluster>/client/<role>/<name>).
// The identity bounds the client_ids it may use: `<name>` or `<name>/<anything>`.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type tls from 'node:tls';
import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import { identitiesOf, type Identity } from '../security/identity.js';

/** PEM file paths. */
export interface ClientTlsFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export interface LoadedClientTls {
  readonly files: ClientTlsFiles;
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
  /** The shardbank identity the certificate names, if exactly one. */
  readonly identity: Identity | undefined;
}

export class ClientTlsError extends Error {
  override name = 'ClientTlsError';
}

/**
 * Reads the three files; a missing or unreadable one throws naming its flag (`--ca`, `--cert`,
 * `--key`) and path. `flags` renames them (a replica's `--tls-*`).
 */
export function loadClientTls(
  files: ClientTlsFiles,
  flags: { ca: string; cert: string; key: string } = { ca: '--ca', cert: '--cert', key: '--key' },
): LoadedClientTls {
  const read = (field: 'ca' | 'cert' | 'key'): Buffer => {
    try {
      return readFileSync(files[field]);
    } catch (error) {
      throw new ClientTlsError(`${flags[field]} ${files[field]}: ${(error as Error).message}`);
    }
  };
  const ca = read('ca');
  const cert = read('cert');
  const key = read('key');
  let identity: Identity | undefined;
  try {
    const identities = identitiesOf(new X509Certificate(cert).subjectAltName);
    identity = identities.length === 1 ? identities[0] : undefined;
  } catch (error) {
    throw new ClientTlsError(`${flags.cert} ${files.cert}: not a PEM certificate (${(error as Error).message})`);
  }
  return { files, ca, cert, key, identity };
}

/**
 * Channel credentials: TLS with the client certificate, the server verified against the CA.
 * By default the server's name is checked against the replica certificate's DNS/IP SANs
 * (`localhost`, `127.0.0.1`, `::1` locally; the pod DNS names in Kubernetes);
 * `checkServerIdentity` replaces that check (a replica dialling another checks its SAN URI).
 */
export function tlsChannelCredentials(
  loaded: LoadedClientTls,
  checkServerIdentity?: (host: string, certificate: tls.PeerCertificate) => Error | undefined,
): ChannelCredentials {
  return credentials.createSsl(loaded.ca, loaded.key, loaded.cert, checkServerIdentity ? { checkServerIdentity } : {});
}

/** The prefix this identity's generated client_ids carry (`<name>/`), '' for none. */
export function clientIdPrefixOf(loaded: LoadedClientTls | undefined): string {
  return loaded?.identity?.kind === 'client' ? `${loaded.identity.name}/` : '';
}

/**
 * Channel options for a TLS channel to `address`: a loopback IP (the local runtime's
 * 127.0.0.1) is checked as `localhost`, which replica certificates name, so that TLS does not
 * send an IP address as the server name (Node warns about that, RFC 6066 forbids it).
 */
export function tlsChannelOptions(address: string): Record<string, string> {
  const host = address.startsWith('[') ? address.slice(1, address.indexOf(']')) : address.replace(/:\d+$/, '');
  const loopback = host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
  return loopback ? { 'grpc.ssl_target_name_override': 'localhost' } : {};
}
