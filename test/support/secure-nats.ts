// A real nats-server with TLS (a certificate from a fresh cluster CA) and the two users of
// docs/SECURITY.md, configured exactly as the local runtime configures it
// (natsServerConfig in node/discovery/nats-security.ts).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ensureNatsCredentials,
  natsServerConfig,
  type NatsCredentials,
  type NatsRole,
  type NatsSecurity,
} from '../../node/discovery/nats-security.js';
import { ensureClusterCertificates } from '../../node/security/certs.js';
import { freePort, startNatsServer, type NatsServerHandle } from './nats-server.js';

export interface NatsSecrets {
  readonly directory: string;
  readonly caFile: string;
  readonly serverTls: { cert: string; key: string };
  readonly credentials: Record<NatsRole, NatsCredentials>;
  /** What a component of each role connects with. */
  readonly security: Record<NatsRole, NatsSecurity>;
  remove(): void;
}

/** A CA, nats-server's certificate and both users' credentials files in a new temporary dir. */
export async function makeNatsSecrets(namespace: string, cluster: string): Promise<NatsSecrets> {
  const directory = mkdtempSync(join(tmpdir(), 'shardbank-nats-secrets-'));
  const certs = await ensureClusterCertificates(join(directory, 'certs'), {
    namespace,
    cluster,
    shards: 0,
    replicasPerShard: 0,
  });
  const file = (role: NatsRole): string => join(directory, `${role}.json`);
  const credentials = {
    replica: ensureNatsCredentials(file('replica'), 'replica'),
    watcher: ensureNatsCredentials(file('watcher'), 'watcher'),
  };
  const security = (role: NatsRole): NatsSecurity => ({ caFile: certs.ca.cert, credentialsFile: file(role) });
  return {
    directory,
    caFile: certs.ca.cert,
    serverTls: { cert: certs.natsServer.cert, key: certs.natsServer.key },
    credentials,
    security: { replica: security('replica'), watcher: security('watcher') },
    remove: () => rmSync(directory, { recursive: true, force: true }),
  };
}

/** nats-server with TLS and users for `cluster` (nats.js takes TLS from the options, not the URL's scheme). */
export async function startSecureNatsServer(
  secrets: NatsSecrets,
  namespace: string,
  cluster: string,
  options: { port?: number } = {},
): Promise<NatsServerHandle> {
  const port = options.port ?? (await freePort());
  const configFile = join(secrets.directory, `nats-server-${port}.conf`);
  writeFileSync(
    configFile,
    natsServerConfig({
      // Address, port and store dir come from startNatsServer's command line.
      tls: secrets.serverTls,
      namespace,
      cluster,
      users: secrets.credentials,
    }),
    { mode: 0o600 },
  );
  return startNatsServer({ port, configFile });
}
