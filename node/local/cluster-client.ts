// Builds a client for the cluster an address book describes.
import { ShardbankClient, type ShardbankClientOptions } from '../client/bank-client.js';
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
    pidOf: (shard, ordinal) =>
      book.replicas.find((entry) => entry.shard === shard && entry.ordinal === ordinal)?.pid ?? null,
  };
}

export async function connectToBook(
  book: AddressBook,
  overrides: Partial<ShardbankClientOptions> = {},
): Promise<ShardbankClient> {
  return ShardbankClient.connect({ ...clientOptionsFromBook(book), ...overrides });
}
