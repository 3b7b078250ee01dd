// The comparison workload on etcd (README.md here): three members; a transfer reads both keys,
// then writes both in one Txn that compares both mod revisions, and starts again when another
// transfer changed either in between. `node dist/node/bench/anchors/etcd-bank.js CLIENTS SECONDS`
// after etcd-up.sh; members from ETCD_ENDPOINTS (default the three etcd-up.sh starts).
// Prints one JSON line.
import {
  ACCOUNTS,
  closedLoop,
  INITIAL_BALANCE,
  parseWorkloadArgs,
  type BankConnection,
  type TransferDone,
} from './closed-loop.js';
import { loadAnchorClient } from './deps.js';

export const DEFAULT_ETCD_ENDPOINTS = 'http://127.0.0.1:32379,http://127.0.0.1:32381,http://127.0.0.1:32383';

/** The part of the `etcd3` client used here. */
interface KeyValue {
  value: Buffer;
  mod_revision: string;
}
interface Etcd3Client {
  get(key: string): { exec(): Promise<{ kvs: KeyValue[] }> };
  put(key: string): { value(value: string): PromiseLike<unknown> };
  delete(): { prefix(prefix: string): PromiseLike<unknown> };
  if(key: string, column: 'Mod', cmp: '==', value: string): Txn;
  maintenance: { status(): Promise<{ version: string }> };
  close(): void;
}
interface Txn {
  and(key: string, column: 'Mod', cmp: '==', value: string): Txn;
  then(...ops: PromiseLike<unknown>[]): Txn;
  commit(): Promise<{ succeeded: boolean }>;
}
interface Etcd3Module {
  Etcd3: new (options: { hosts: string[] }) => Etcd3Client;
}

const key = (account: number) => `shardbank-bench/account/${account}`;

async function setUp(client: Etcd3Client): Promise<void> {
  await client.delete().prefix('shardbank-bench/');
  const accounts = Array.from({ length: ACCOUNTS }, (_, index) => index + 1);
  // 64 puts in flight at a time: etcd batches them into its log.
  for (let start = 0; start < accounts.length; start += 64) {
    await Promise.all(
      accounts.slice(start, start + 64).map((account) => client.put(key(account)).value(String(INITIAL_BALANCE))),
    );
  }
}

function bankConnection(client: Etcd3Client): BankConnection {
  return {
    async transfer(from, to, amount): Promise<TransferDone> {
      for (let retries = 0; ; retries += 1) {
        const [source, target] = await Promise.all([client.get(key(from)).exec(), client.get(key(to)).exec()]);
        const a = source.kvs[0];
        const b = target.kvs[0];
        if (a === undefined || b === undefined) throw new Error(`account ${a === undefined ? from : to} is missing`);
        const balance = Number(a.value.toString());
        if (balance < amount) return { applied: false, retries };
        const txn = await client
          .if(key(from), 'Mod', '==', a.mod_revision)
          .and(key(to), 'Mod', '==', b.mod_revision)
          .then(
            client.put(key(from)).value(String(balance - amount)),
            client.put(key(to)).value(String(Number(b.value.toString()) + amount)),
          )
          .commit();
        if (txn.succeeded) return { applied: true, retries };
        if (retries >= 1000) throw new Error(`transfer ${from} -> ${to}: still conflicting after ${retries} retries`);
      }
    },
    close: async () => undefined,
  };
}

async function main(): Promise<void> {
  const { clients, seconds } = parseWorkloadArgs(process.argv.slice(2));
  const { Etcd3 } = loadAnchorClient<Etcd3Module>('etcd3');
  const hosts = (process.env.ETCD_ENDPOINTS ?? DEFAULT_ETCD_ENDPOINTS).split(',');
  // One client (one gRPC channel per member) for all: etcd3 multiplexes calls over it, as an
  // application process would.
  const client = new Etcd3({ hosts });
  try {
    const { version } = await client.maintenance.status();
    await setUp(client);
    const connections = Array.from({ length: clients }, () => bankConnection(client));
    const result = await closedLoop(`etcd ${version}, 3 members`, connections, seconds);
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    client.close();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`etcd-bank: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
