// Builds a client for the cluster an address book describes.
import { join } from 'node:path';
import { ShardbankClient, type ShardbankClientOptions } from '../client/bank-client.js';
import type { ClientTlsFiles } from '../client/tls.js';
import type { NatsSecurity } from '../discovery/nats-security.js';
import { endpointsOf, type AddressBook } from './address-book.js';

/** The local runtime's CA and admin client certificate (`shardbank up` makes them). */
export function localClientTls(stateDir: string): ClientTlsFiles {
  const certs = join(stateDir, 'certs');
  return { ca: join(certs, 'ca.crt'), cert: join(certs, 'client-admin.crt'), key: join(certs, 'client-admin.key') };
}

export function clientOptionsFromBook(book: AddressBook): ShardbankClientOptions {
  return {
    cluster: book.cluster,
    topology: book.topology,
    endpoints: endpointsOf(book),
    namespace: book.namespace,
    incarnation: book.incarnation,
    maxTransferAmount: book.maxTransferAmount,
    ...(book.natsUrl ? { natsUrl: book.natsUrl } : {}),
    // Books written before TLS have no mode: they ran plaintext.
    ...(book.security === 'tls' ? { tls: localClientTls(book.stateDir) } : {}),
    ...natsSecurityOfBook(book),
    pidOf: (shard, ordinal) =>
      book.replicas.find((entry) => entry.shard === shard && entry.ordinal === ordinal)?.pid ?? null,
  };
}

/** The NATS TLS and watcher credentials the address book records, if any. */
export function natsSecurityOfBook(book: AddressBook): { natsSecurity?: NatsSecurity } {
  if (!book.natsCa && !book.natsCreds) return {};
  return {
    natsSecurity: {
      ...(book.natsCa ? { caFile: book.natsCa } : {}),
      ...(book.natsCreds ? { credentialsFile: book.natsCreds } : {}),
    },
  };
}

export async function connectToBook(
  book: AddressBook,
  overrides: Partial<ShardbankClientOptions> = {},
): Promise<ShardbankClient> {
  return ShardbankClient.connect({ ...clientOptionsFromBook(book), ...overrides });
}
