// The client-side ledger of a Jepsen-style "bank" test: every transfer with its definite
// outcome, from which the expected balances follow exactly.
import { Outcome } from '../../node/gen/shardbank/v1/bank.js';
import type { Topology } from '../../node/cluster/topology.js';
import { itemCount } from '../../node/cluster/topology.js';

export interface LedgerEntry {
  clientId: string;
  requestId: number;
  from: number;
  to: number;
  amount: number;
  outcome: number;
  decisionIndex: number;
}

export class BankLedger {
  readonly entries: LedgerEntry[] = [];

  constructor(readonly topology: Topology) {}

  record(entry: LedgerEntry): void {
    this.entries.push(entry);
  }

  get committed(): LedgerEntry[] {
    return this.entries.filter((e) => e.outcome === Outcome.COMMITTED);
  }

  expectedBalances(): number[] {
    const balances = new Array<number>(itemCount(this.topology) + 1).fill(this.topology.initialBalance);
    balances[0] = 0;
    for (const entry of this.committed) {
      balances[entry.from]! -= entry.amount;
      balances[entry.to]! += entry.amount;
    }
    return balances;
  }
}
