// The local runtime's NATS security files (docs/SECURITY.md, "NATS"): nats-server's certificate
// from the cluster CA in <state-dir>/certs, and in <state-dir>/nats-auth (0700) the replica and
// watcher credentials (0600, made once) and the nats-server config (0600, rewritten on every
// start, so a changed port or store dir is always in it).
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { natsSecurityOptions } from '../discovery/nats-connection.js';
import { ensureNatsCredentials, natsServerConfig } from '../discovery/nats-security.js';
import { ensureClusterCertificates } from '../security/certs.js';
import type { AddressBook } from './address-book.js';
import { LOOPBACK_HOST } from './ports.js';

export const CERTS_DIRECTORY = 'certs';
export const NATS_AUTH_DIRECTORY = 'nats-auth';
export const NATS_CONFIG_FILE = 'nats-server.conf';

export interface LocalNatsSecurity {
  /** The cluster CA, which signed nats-server's certificate. */
  readonly caFile: string;
  /** For the replicas (`--nats-creds`). */
  readonly replicaCredentials: string;
  /** For every CLI command, via the address book. */
  readonly watcherCredentials: string;
  /** nats-server's `-c`. */
  readonly configFile: string;
}

/** Makes what is missing and writes nats-server's config for `port` and `storeDir`. */
export async function prepareNatsSecurity(
  stateDir: string,
  book: Pick<AddressBook, 'namespace' | 'cluster' | 'topology'>,
  server: { readonly port: number; readonly storeDir: string },
): Promise<LocalNatsSecurity> {
  const certs = await ensureClusterCertificates(join(stateDir, CERTS_DIRECTORY), {
    namespace: book.namespace,
    cluster: book.cluster,
    shards: book.topology.shards,
    replicasPerShard: book.topology.replicasPerShard,
  });
  const directory = join(stateDir, NATS_AUTH_DIRECTORY);
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  chmodSync(directory, 0o700);
  const replicaCredentials = join(directory, 'replica.json');
  const watcherCredentials = join(directory, 'watcher.json');
  const users = {
    replica: ensureNatsCredentials(replicaCredentials, 'replica'),
    watcher: ensureNatsCredentials(watcherCredentials, 'watcher'),
  };
  const configFile = join(directory, NATS_CONFIG_FILE);
  const config = natsServerConfig({
    listen: { host: LOOPBACK_HOST, port: server.port },
    storeDir: server.storeDir,
    tls: { cert: certs.natsServer.cert, key: certs.natsServer.key },
    namespace: book.namespace,
    cluster: book.cluster,
    users,
  });
  // The config holds both passwords: removed and created again with O_EXCL and 0600.
  rmSync(configFile, { force: true });
  writeFileSync(configFile, config, { mode: 0o600, flag: 'wx' });
  return { caFile: certs.ca.cert, replicaCredentials, watcherCredentials, configFile };
}

const readyPollMs = 100;

/**
 * True once the watcher user completes a TLS connection to `url` within `deadlineMs`. A bare
 * TCP probe would do too, but nats-server logs each one as a failed TLS handshake; this also
 * proves the certificate and the passwords work before any replica starts.
 */
export async function waitForSecureNats(
  url: string,
  security: LocalNatsSecurity,
  deadlineMs: number,
): Promise<boolean> {
  const deadlineAtMs = Date.now() + deadlineMs;
  while (Date.now() < deadlineAtMs) {
    try {
      const options = natsSecurityOptions({ caFile: security.caFile, credentialsFile: security.watcherCredentials });
      const nc = await connect({ servers: url, timeout: readyPollMs * 20, reconnect: false, ...options });
      await nc.close();
      return true;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, readyPollMs));
    }
  }
  return false;
}
