// Bug 6 of the safety review (seen by a linearizability checker over the gRPC API): a final
// INSUFFICIENT_FUNDS contradicted a credit whose transfer was already answered COMMITTED,
// because the funds check ignored credits the participant had prepared but not yet applied.
// INSUFFICIENT_FUNDS must be true when decided: a shortfall that pending credits could cover
// is a (retryable) conflict.
import { describe, expect, it } from 'vitest';
import { BankState } from '../../node/bank/bank-state.js';
import { Outcome } from '../../node/gen/shardbank/v1/bank.js';
import type { Command, TxId } from '../../node/gen/shardbank/v1/peer.js';

const topology = { shards: 2, replicasPerShard: 3, itemsPerShard: 10, initialBalance: 5 };
// Shard 1 is the participant: it owns items 11..20 and is credited by coordinator shard 0.
const incoming: TxId = { shard: 0, round: 1, ordinal: 0, seq: 1 };
const partPrepare = (amount: number): Command => ({
  body: { $case: 'partPrepare', partPrepare: { txid: incoming, from: 1, to: 13, amount, coordWatermark: undefined } },
});
const partDecision = (commit: boolean): Command => ({
  body: { $case: 'partDecision', partDecision: { txid: incoming, commit, coordWatermark: undefined } },
});
/** A bank with the sessions of clients c (epoch 1) and d (epoch 2) open. */
function openBank(shard: number): BankState {
  const bank = new BankState(topology, shard);
  for (const clientId of ['c', 'd']) bank.apply(0, { body: { $case: 'openSession', openSession: { clientId } } });
  return bank;
}
const transfer = (requestId: number, amount: number): Command => ({
  body: {
    $case: 'transfer',
    transfer: { clientId: 'c', requestId, from: 13, to: 14, amount, acknowledgedBelow: 0, sessionEpoch: 1 },
  },
});
const coordPrepare = (requestId: number, amount: number): Command => ({
  body: {
    $case: 'coordPrepare',
    coordPrepare: {
      txid: { shard: 1, round: 1, ordinal: 0, seq: requestId },
      clientId: 'd',
      requestId,
      from: 13,
      to: 3,
      amount,
      toShard: 0,
      acknowledgedBelow: 0,
      sessionEpoch: 2,
    },
  },
});

describe('INSUFFICIENT_FUNDS is true when decided', () => {
  it('a shortfall that a pending credit could cover is a conflict, intra-shard and as coordinator', () => {
    const bank = openBank(1);
    bank.apply(1, partPrepare(26));
    expect(bank.apply(2, transfer(1, 14))[0]).toMatchObject({ kind: 'transfer-conflict' });
    expect(bank.apply(3, coordPrepare(1, 14))[0]).toMatchObject({
      kind: 'coord-decided',
      record: { state: 'aborted', abortReason: 2 },
    });
    // Beyond what the credit could cover, the refusal is final at once.
    expect(bank.apply(4, transfer(2, 32))[0]).toMatchObject({
      kind: 'transfer-final',
      outcome: Outcome.INSUFFICIENT_FUNDS,
    });
    // The credit commits: the retry of the conflicting request runs.
    bank.apply(5, partDecision(true));
    expect(bank.apply(6, transfer(1, 14))[0]).toMatchObject({ kind: 'transfer-final', outcome: Outcome.COMMITTED });
    expect(bank.balance(13)).toBe(17);
  });

  it('once the pending credit aborts, the same shortfall is INSUFFICIENT_FUNDS', () => {
    const bank = openBank(1);
    bank.apply(1, partPrepare(26));
    expect(bank.apply(2, transfer(1, 14))[0]).toMatchObject({ kind: 'transfer-conflict' });
    bank.apply(3, partDecision(false));
    expect(bank.apply(4, transfer(1, 14))[0]).toMatchObject({
      kind: 'transfer-final',
      outcome: Outcome.INSUFFICIENT_FUNDS,
    });
  });
});
