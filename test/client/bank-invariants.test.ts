import { describe, expect, it } from 'vitest';
import {
  checkBank,
  checkReplicasAgree,
  ExpectationLedger,
  type BankObservation,
} from '../../node/client/bank-invariants.js';

const start = new Map([
  [1, 10],
  [2, 10],
  [3, 10],
  [4, 10],
]);

function observation(
  final: [number, number][],
  transfers: { from: number; to: number; amount: number; outcome: string }[],
  replicas?: BankObservation['replicaReads'],
): BankObservation {
  const ledger = new ExpectationLedger();
  for (const transfer of transfers) ledger.record(transfer);
  const finalBalances = new Map(final);
  return {
    initialTotal: 40,
    startBalances: start,
    finalBalances,
    ledger,
    replicaReads: replicas ?? [
      { shard: 0, replicas: [0, 1, 2].map((ordinal) => ({ ordinal, appliedIndex: 9, balances: finalBalances })) },
    ],
  };
}

describe('bank invariants', () => {
  it('passes when committed transfers are applied exactly once', () => {
    const verdict = checkBank(
      observation(
        [
          [1, 7],
          [2, 13],
          [3, 10],
          [4, 10],
        ],
        [
          { from: 1, to: 2, amount: 3, outcome: 'COMMITTED' },
          { from: 3, to: 4, amount: 99, outcome: 'INSUFFICIENT_FUNDS' },
          { from: 3, to: 4, amount: 1, outcome: 'ABORTED' },
        ],
      ),
    );
    expect(verdict.ok).toBe(true);
    expect(verdict.counts).toMatchObject({
      items: 4,
      committed: 1,
      insufficientFunds: 1,
      notApplied: 1,
      unknown: 0,
      movedAmount: 3,
      replicasCompared: 3,
    });
  });

  it('catches a transfer applied twice even though money is conserved', () => {
    const verdict = checkBank(
      observation(
        [
          [1, 4],
          [2, 16],
          [3, 10],
          [4, 10],
        ],
        [{ from: 1, to: 2, amount: 3, outcome: 'COMMITTED' }],
      ),
    );
    expect(verdict.ok).toBe(false);
    expect(verdict.checks.totalConserved.ok).toBe(true);
    expect(verdict.checks.exactlyOnce.ok).toBe(false);
    expect(verdict.checks.exactlyOnce.mismatchedItems).toEqual([
      { item: 1, expected: 7, actual: 4 },
      { item: 2, expected: 13, actual: 16 },
    ]);
  });

  it('catches a lost committed transfer and an aborted one that was applied', () => {
    expect(
      checkBank(
        observation(
          [
            [1, 10],
            [2, 10],
            [3, 10],
            [4, 10],
          ],
          [{ from: 1, to: 2, amount: 3, outcome: 'COMMITTED' }],
        ),
      ).checks.exactlyOnce.ok,
    ).toBe(false);
    expect(
      checkBank(
        observation(
          [
            [1, 7],
            [2, 13],
            [3, 10],
            [4, 10],
          ],
          [{ from: 1, to: 2, amount: 3, outcome: 'ABORTED' }],
        ),
      ).ok,
    ).toBe(false);
  });

  it('catches money created or destroyed and negative balances', () => {
    const created = checkBank(
      observation(
        [
          [1, 10],
          [2, 11],
          [3, 10],
          [4, 10],
        ],
        [],
      ),
    );
    expect(created.checks.totalConserved).toMatchObject({ ok: false, expected: 40, actual: 41 });
    const negative = checkBank(
      observation(
        [
          [1, -1],
          [2, 21],
          [3, 10],
          [4, 10],
        ],
        [{ from: 1, to: 2, amount: 11, outcome: 'COMMITTED' }],
      ),
    );
    expect(negative.checks.totalConserved.ok).toBe(true);
    expect(negative.checks.exactlyOnce.ok).toBe(true);
    expect(negative.checks.noNegativeBalance).toMatchObject({ ok: false, negativeItems: [1] });
  });

  it('fails while a transfer has no definite outcome', () => {
    const verdict = checkBank(
      observation(
        [
          [1, 10],
          [2, 10],
          [3, 10],
          [4, 10],
        ],
        [{ from: 1, to: 2, amount: 3, outcome: 'UNKNOWN' }],
      ),
    );
    expect(verdict.checks.outcomesResolved).toMatchObject({ ok: false, unknown: 1 });
    expect(verdict.ok).toBe(false);
  });

  it('finds replicas that disagree', () => {
    const result = checkReplicasAgree([
      {
        shard: 1,
        replicas: [
          {
            ordinal: 0,
            appliedIndex: 5,
            balances: new Map([
              [11, 1],
              [12, 2],
            ]),
          },
          {
            ordinal: 1,
            appliedIndex: 5,
            balances: new Map([
              [11, 1],
              [12, 3],
            ]),
          },
        ],
      },
    ]);
    expect(result.ok).toBe(false);
    expect(result.disagreements).toEqual([{ shard: 1, item: 12, values: { 0: 2, 1: 3 } }]);
  });

  it('verdict is JSON-serialisable with stable keys', () => {
    const verdict = checkBank(
      observation(
        [
          [1, 10],
          [2, 10],
          [3, 10],
          [4, 10],
        ],
        [],
      ),
    );
    const parsed = JSON.parse(JSON.stringify(verdict));
    expect(Object.keys(parsed.checks).sort()).toEqual([
      'exactlyOnce',
      'noNegativeBalance',
      'outcomesResolved',
      'replicasAgree',
      'totalConserved',
    ]);
    expect(Object.keys(parsed.counts).sort()).toEqual([
      'committed',
      'insufficientFunds',
      'items',
      'itemsComparedAcrossReplicas',
      'movedAmount',
      'notApplied',
      'replicasCompared',
      'unknown',
    ]);
  });
});
