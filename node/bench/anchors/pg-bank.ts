// The comparison workload on PostgreSQL (README.md here): one node, fsync on; a transfer is
// two UPDATEs in one transaction. `node dist/node/bench/anchors/pg-bank.js CLIENTS SECONDS`
// after pg-up.sh; connection from PGHOST (127.0.0.1), PGPORT (5432), PGUSER, PGPASSWORD and
// PGDATABASE (all shardbank_bench). Prints one JSON line.
import {
  ACCOUNTS,
  closedLoop,
  INITIAL_BALANCE,
  parseWorkloadArgs,
  type BankConnection,
  type TransferDone,
} from './closed-loop.js';
import { loadAnchorClient } from './deps.js';

/** The part of the `pg` client used here. */
interface PgClient {
  connect(): Promise<void>;
  query(text: string, values?: unknown[]): Promise<{ rowCount: number | null; rows: Record<string, unknown>[] }>;
  end(): Promise<void>;
}
interface PgModule {
  Client: new (config: Record<string, unknown>) => PgClient;
}

/** Deadlock and serialization failures: the transaction did nothing; run it again. */
const RETRYABLE = new Set(['40P01', '40001']);

function connectionConfig(): Record<string, unknown> {
  return {
    host: process.env.PGHOST ?? '127.0.0.1',
    port: Number(process.env.PGPORT ?? 5432),
    user: process.env.PGUSER ?? 'shardbank_bench',
    password: process.env.PGPASSWORD ?? 'shardbank_bench',
    database: process.env.PGDATABASE ?? 'shardbank_bench',
  };
}

async function connect(pg: PgModule): Promise<PgClient> {
  const client = new pg.Client(connectionConfig());
  await client.connect();
  return client;
}

/** A fresh table of 9000 accounts with balance 10. */
async function setUp(client: PgClient): Promise<{ fsync: string; synchronousCommit: string; version: string }> {
  await client.query('CREATE TABLE IF NOT EXISTS accounts (id integer PRIMARY KEY, balance bigint NOT NULL)');
  await client.query('TRUNCATE accounts');
  await client.query('INSERT INTO accounts (id, balance) SELECT g, $1 FROM generate_series(1, $2::integer) AS g', [
    INITIAL_BALANCE,
    ACCOUNTS,
  ]);
  await client.query('VACUUM ANALYZE accounts');
  const setting = async (name: string) => String((await client.query(`SHOW ${name}`)).rows[0]![name]);
  return {
    fsync: await setting('fsync'),
    synchronousCommit: await setting('synchronous_commit'),
    version: (await setting('server_version')).split(' ')[0]!,
  };
}

function bankConnection(client: PgClient): BankConnection {
  // Row locks are taken in id order (the lower id's UPDATE first), so two transfers over the
  // same pair in opposite directions wait for each other instead of deadlocking.
  const debit = (from: number, amount: number) =>
    client.query('UPDATE accounts SET balance = balance - $2 WHERE id = $1 AND balance >= $2', [from, amount]);
  const credit = (to: number, amount: number) =>
    client.query('UPDATE accounts SET balance = balance + $2 WHERE id = $1', [to, amount]);
  const once = async (from: number, to: number, amount: number): Promise<boolean> => {
    await client.query('BEGIN');
    try {
      let applied: boolean;
      if (from < to) {
        applied = (await debit(from, amount)).rowCount === 1;
        if (applied) await credit(to, amount);
      } else {
        await credit(to, amount);
        applied = (await debit(from, amount)).rowCount === 1;
      }
      await client.query(applied ? 'COMMIT' : 'ROLLBACK');
      return applied;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
  };
  return {
    async transfer(from, to, amount): Promise<TransferDone> {
      for (let retries = 0; ; retries += 1) {
        try {
          return { applied: await once(from, to, amount), retries };
        } catch (error) {
          if (!RETRYABLE.has(String((error as { code?: unknown }).code)) || retries >= 100) throw error;
        }
      }
    },
    close: () => client.end(),
  };
}

async function main(): Promise<void> {
  const { clients, seconds } = parseWorkloadArgs(process.argv.slice(2));
  const pg = loadAnchorClient<PgModule>('pg');
  const admin = await connect(pg);
  const settings = await setUp(admin);
  await admin.end();
  if (settings.fsync !== 'on' || settings.synchronousCommit === 'off') {
    throw new Error(
      `PostgreSQL runs with fsync=${settings.fsync}, synchronous_commit=${settings.synchronousCommit}: the comparison needs durable commits (pg-up.sh sets them)`,
    );
  }
  const connections = await Promise.all(Array.from({ length: clients }, async () => bankConnection(await connect(pg))));
  try {
    const result = await closedLoop(`postgresql ${settings.version}, one node, fsync on`, connections, seconds);
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await Promise.all(connections.map((connection) => connection.close()));
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`pg-bank: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
