// The Jepsen "bank" checks of SPEC section 10, as pure functions over what a run observed:
// money conserved, no negative balance, every COMMITTED transfer applied exactly once
// (by an exact per-item ledger of expected changes) and replicas of a shard agree.
// Used by `shardbank chaos` and by the replica integration tests.

export const REPORTED_PROBLEMS_MAX = 20;

export interface ObservedTransfer {
  readonly from: number;
  readonly to: number;
  readonly amount: number;
  /** The definite outcome; 'UNKNOWN' when retries never got one. */
  readonly outcome: string;
}

/** Expected net change per item, from the client side: COMMITTED transfers move exactly their amount. */
export class ExpectationLedger {
  private readonly netChange = new Map<number, number>();
  committed = 0;
  insufficientFunds = 0;
  notApplied = 0;
  unknown = 0;
  movedAmount = 0;

  record(transfer: ObservedTransfer): void {
    switch (transfer.outcome) {
      case 'COMMITTED':
        this.committed += 1;
        this.movedAmount += transfer.amount;
        this.add(transfer.from, -transfer.amount);
        this.add(transfer.to, transfer.amount);
        return;
      case 'INSUFFICIENT_FUNDS':
        this.insufficientFunds += 1;
        return;
      case 'UNKNOWN':
        this.unknown += 1;
        return;
      default:
        // ABORTED, INVALID_ARGUMENT, FAILED_PRECONDITION: the request certainly had no effect.
        this.notApplied += 1;
    }
  }

  expectedBalance(item: number, startBalance: number): number {
    return startBalance + (this.netChange.get(item) ?? 0);
  }

  changedItems(): number[] {
    return [...this.netChange.keys()].sort((a, b) => a - b);
  }

  private add(item: number, delta: number): void {
    this.netChange.set(item, (this.netChange.get(item) ?? 0) + delta);
  }
}

export interface ReplicaBalances {
  readonly ordinal: number;
  readonly appliedIndex: number;
  readonly balances: ReadonlyMap<number, number>;
}

export interface ShardReplicaReads {
  readonly shard: number;
  readonly replicas: readonly ReplicaBalances[];
}

export interface BankObservation {
  readonly initialTotal: number;
  /** Balances read (linearizably, with nothing in flight) before the workload. */
  readonly startBalances: ReadonlyMap<number, number>;
  /** Balances read (linearizably) after every in-flight transaction was decided. */
  readonly finalBalances: ReadonlyMap<number, number>;
  readonly ledger: ExpectationLedger;
  readonly replicaReads: readonly ShardReplicaReads[];
}

export interface CheckResult {
  ok: boolean;
  detail: string;
}

export interface BankVerdict {
  ok: boolean;
  checks: {
    totalConserved: CheckResult & { expected: number; actual: number };
    noNegativeBalance: CheckResult & { negativeItems: number[] };
    exactlyOnce: CheckResult & { mismatchedItems: { item: number; expected: number; actual: number }[] };
    outcomesResolved: CheckResult & { unknown: number };
    replicasAgree: CheckResult & { disagreements: { shard: number; item: number; values: Record<string, number> }[] };
  };
  counts: {
    items: number;
    committed: number;
    insufficientFunds: number;
    notApplied: number;
    unknown: number;
    movedAmount: number;
    replicasCompared: number;
    itemsComparedAcrossReplicas: number;
  };
}

function sum(values: Iterable<number>): number {
  let total = 0;
  for (const value of values) total += value;
  return total;
}

export function checkTotal(
  initialTotal: number,
  finalBalances: ReadonlyMap<number, number>,
): BankVerdict['checks']['totalConserved'] {
  const actual = sum(finalBalances.values());
  const ok = actual === initialTotal;
  return {
    ok,
    expected: initialTotal,
    actual,
    detail: ok
      ? `total ${actual} equals the initial total`
      : `total ${actual}, expected ${initialTotal} (difference ${actual - initialTotal})`,
  };
}

export function checkNoNegative(
  finalBalances: ReadonlyMap<number, number>,
): BankVerdict['checks']['noNegativeBalance'] {
  const negativeItems = [...finalBalances].filter(([, balance]) => balance < 0).map(([item]) => item);
  const ok = negativeItems.length === 0;
  return {
    ok,
    negativeItems: negativeItems.slice(0, REPORTED_PROBLEMS_MAX),
    detail: ok ? 'no negative balance' : `${negativeItems.length} negative balances`,
  };
}

export function checkExactlyOnce(
  startBalances: ReadonlyMap<number, number>,
  finalBalances: ReadonlyMap<number, number>,
  ledger: ExpectationLedger,
): BankVerdict['checks']['exactlyOnce'] {
  const mismatches: { item: number; expected: number; actual: number }[] = [];
  for (const [item, start] of startBalances) {
    const expected = ledger.expectedBalance(item, start);
    const actual = finalBalances.get(item);
    if (actual !== expected) mismatches.push({ item, expected, actual: actual ?? Number.NaN });
  }
  for (const item of ledger.changedItems()) {
    if (!startBalances.has(item))
      mismatches.push({ item, expected: Number.NaN, actual: finalBalances.get(item) ?? Number.NaN });
  }
  const ok = mismatches.length === 0;
  return {
    ok,
    mismatchedItems: mismatches.slice(0, REPORTED_PROBLEMS_MAX),
    detail: ok
      ? `${ledger.committed} committed transfers applied exactly once`
      : `${mismatches.length} items differ from start + committed transfers`,
  };
}

export function checkReplicasAgree(
  reads: readonly ShardReplicaReads[],
): BankVerdict['checks']['replicasAgree'] & { compared: number; items: number } {
  const disagreements: { shard: number; item: number; values: Record<string, number> }[] = [];
  let compared = 0;
  let items = 0;
  for (const shard of reads) {
    compared += shard.replicas.length;
    const reference = shard.replicas[0];
    if (reference === undefined) continue;
    for (const [item] of reference.balances) {
      items += 1;
      const values: Record<string, number> = {};
      for (const replica of shard.replicas) values[String(replica.ordinal)] = replica.balances.get(item) ?? Number.NaN;
      if (new Set(Object.values(values)).size > 1) disagreements.push({ shard: shard.shard, item, values });
    }
    for (const replica of shard.replicas) {
      if (replica.balances.size !== reference.balances.size)
        disagreements.push({
          shard: shard.shard,
          item: -1,
          values: { [String(replica.ordinal)]: replica.balances.size },
        });
    }
  }
  const tooFew = reads.filter((shard) => shard.replicas.length < 2).map((shard) => shard.shard);
  const ok = disagreements.length === 0;
  const note = tooFew.length > 0 ? ` (shards ${tooFew.join(',')} had fewer than 2 replicas to compare)` : '';
  return {
    ok,
    compared,
    items,
    disagreements: disagreements.slice(0, REPORTED_PROBLEMS_MAX),
    detail: (ok ? `${compared} replicas agree` : `${disagreements.length} disagreements`) + note,
  };
}

export function checkBank(observation: BankObservation): BankVerdict {
  const { ledger } = observation;
  const totalConserved = checkTotal(observation.initialTotal, observation.finalBalances);
  const noNegativeBalance = checkNoNegative(observation.finalBalances);
  const exactlyOnce = checkExactlyOnce(observation.startBalances, observation.finalBalances, ledger);
  const unknownOk = ledger.unknown === 0;
  const outcomesResolved = {
    ok: unknownOk,
    unknown: ledger.unknown,
    detail: unknownOk
      ? 'every transfer has a definite outcome'
      : `${ledger.unknown} transfers never got a definite outcome`,
  };
  const agreement = checkReplicasAgree(observation.replicaReads);
  const { compared, items, ...replicasAgree } = agreement;
  const checks = { totalConserved, noNegativeBalance, exactlyOnce, outcomesResolved, replicasAgree };
  return {
    ok: Object.values(checks).every((check) => check.ok),
    checks,
    counts: {
      items: observation.finalBalances.size,
      committed: ledger.committed,
      insufficientFunds: ledger.insufficientFunds,
      notApplied: ledger.notApplied,
      unknown: ledger.unknown,
      movedAmount: ledger.movedAmount,
      replicasCompared: compared,
      itemsComparedAcrossReplicas: items,
    },
  };
}
