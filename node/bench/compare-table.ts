// The comparison's table: rows of measured figures, their medians over rounds, and the ratios.

export interface Row {
  system: string;
  clients: number;
  batchSize: number;
  transfersPerS: number;
  p50Ms: number;
  p99Ms: number;
  /** Throughput of this row in each round; the row reports the medians. */
  samples?: number[];
  note?: string;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** One row per (system, clients, batch): the median of each figure over the rounds that measured it. */
export function medianRows(rounds: Row[][]): Row[] {
  const groups = new Map<string, Row[]>();
  for (const rows of rounds) {
    for (const row of rows) {
      const key = `${row.system}|${row.clients}|${row.batchSize}`;
      groups.set(key, [...(groups.get(key) ?? []), row]);
    }
  }
  return [...groups.values()].map((samples) => ({
    system: samples[0]!.system,
    clients: samples[0]!.clients,
    batchSize: samples[0]!.batchSize,
    transfersPerS: Math.round(median(samples.map((r) => r.transfersPerS)) * 10) / 10,
    p50Ms: Math.round(median(samples.map((r) => r.p50Ms)) * 1000) / 1000,
    p99Ms: Math.round(median(samples.map((r) => r.p99Ms)) * 1000) / 1000,
    samples: samples.map((r) => r.transfersPerS),
  }));
}

export function ratios(rows: Row[]): Record<string, number> {
  const result: Record<string, number> = {};
  // Like with like: the reference mix, one transfer per request, with client batching.
  const find = (prefix: string, clients: number) =>
    rows.find(
      (r) => r.system.startsWith(prefix) && !r.system.includes('(') && r.clients === clients && r.batchSize === 1,
    );
  for (const clients of new Set(rows.map((r) => r.clients))) {
    const ours = find('shardbank', clients);
    if (!ours) continue;
    // What TLS costs: the TLS cluster against the same run on `up --insecure`.
    const plain = find('shardbank 3x3 insecure', clients);
    if (plain && plain !== ours && plain.transfersPerS > 0)
      result[`shardbank tls/insecure throughput @${clients}`] = Number(
        (ours.transfersPerS / plain.transfersPerS).toFixed(2),
      );
    for (const [name, prefix] of [
      ['postgresql', 'postgresql'],
      ['etcd', 'etcd'],
    ] as const) {
      const other = find(prefix, clients);
      if (other && other.transfersPerS > 0)
        result[`shardbank/${name} throughput @${clients}`] = Number(
          (ours.transfersPerS / other.transfersPerS).toFixed(2),
        );
    }
  }
  return { ...result, ...loneClientRatios(rows) };
}

/**
 * A lone client by kind of transfer against PostgreSQL's lone client: shardbank's p50 and p99
 * of the intra-shard-only and cross-shard-only rows over PostgreSQL's (one node has no kinds),
 * below 1 when shardbank answers sooner.
 */
export function loneClientRatios(rows: Row[]): Record<string, number> {
  const result: Record<string, number> = {};
  const postgres = rows.find((r) => r.system.startsWith('postgresql') && r.clients === 1 && r.batchSize === 1);
  if (!postgres) return result;
  for (const row of rows) {
    const kind = /^shardbank 3x3( insecure)? \((intra-shard|cross-shard) only\)$/.exec(row.system);
    if (!kind || row.clients !== 1) continue;
    const name = `shardbank${kind[1] ?? ''} ${kind[2]}/postgresql`;
    if (postgres.p50Ms > 0) result[`${name} p50 @1`] = Number((row.p50Ms / postgres.p50Ms).toFixed(2));
    if (postgres.p99Ms > 0) result[`${name} p99 @1`] = Number((row.p99Ms / postgres.p99Ms).toFixed(2));
  }
  return result;
}

export function table(rows: Row[]): string {
  const header = ['system', 'clients', 'batch', 'transfers/s', 'p50 ms', 'p99 ms', 'transfers/s per round'];
  const body = rows.map((r) => [
    r.system,
    String(r.clients),
    String(r.batchSize),
    String(r.transfersPerS),
    r.p50Ms.toFixed(2),
    r.p99Ms.toFixed(2),
    (r.samples ?? []).join(' '),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  return [header, ...body].map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ')).join('\n');
}
