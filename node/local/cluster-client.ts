// Builds a client for the cluster an address book describes.
import { ShardbankClient, type ShardbankClientOptions } from '../client/bank-client.js';
import type { NatsSecurity } from '../discovery/nats-security.js';
import { endpointsOf, type AddressBook } from './address-book.js';

export function clientOptionsFromBook(book: AddressBook): ShardbankClientOptions {
  return {
    cluster: book.cluster,
    topology: book.topology,
    endpoints: endpointsOf(book),
    namespace: book.namespace,
    incarnation: book.incarnation,
    maxTransferAmount: book.maxTransferAmount,
    ...(book.natsUrl ? { natsUrl: book.natsUrl } : {}),
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
