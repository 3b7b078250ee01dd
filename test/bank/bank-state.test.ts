// Unit tests of the bank state machine: escrow reservations, exactly-once sessions,
// two-phase-commit records, watermarks and snapshots.
import { describe, expect, it } from 'vitest';
import { BankState, ABORT_REASONS } from '../../node/bank/bank-state.js';
import { Outcome } from '../../node/gen/shardbank/v1/bank.js';
import type { Command, TxId } from '../../node/gen/shardbank/v1/peer.js';

const topology = { shards: 2, replicasPerShard: 3, itemsPerShard: 10, initialBalance: 10 };
const tx = (seq: number, shard = 0): TxId => ({ shard, round: 1, ordinal: 0, seq });

// Every test's bank has the sessions of clients c, x and y open, with these epochs.
const EPOCHS: Record<string, number> = { c: 1, x: 2, y: 3 };
function newBank(shard: number): BankState {
  const bank = new BankState(topology, shard);
  for (const clientId of Object.keys(EPOCHS))
    bank.apply(0, { body: { $case: 'openSession', openSession: { clientId } } });
  return bank;
}
const transfer = (clientId: string, requestId: number, from: number, to: number, amount: number): Command => ({
  body: {
    $case: 'transfer',
    transfer: { clientId, requestId, from, to, amount, acknowledgedBelow: 0, sessionEpoch: EPOCHS[clientId] ?? 0 },
  },
});
const coordPrepare = (
  txid: TxId,
  clientId: string,
  requestId: number,
  from: number,
  to: number,
  amount: number,
): Command => ({
  body: {
    $case: 'coordPrepare',
    coordPrepare: {
      txid,
      clientId,
      requestId,
      from,
      to,
      amount,
      toShard: 1,
      acknowledgedBelow: 0,
      sessionEpoch: EPOCHS[clientId] ?? 0,
    },
  },
});
const decision = (txid: TxId, commit: boolean): Command => ({
  body: {
    $case: 'coordDecision',
    coordDecision: { txid, commit, reason: commit ? 0 : ABORT_REASONS.participantNo, participantShard: 1 },
  },
});

describe('bank state machine', () => {
  it('an intra-shard transfer moves money once; a duplicate is a no-op that returns the first outcome', () => {
    const bank = newBank(0);
    const [first] = bank.apply(1, transfer('c', 1, 1, 2, 4));
    expect(first).toMatchObject({ kind: 'transfer-final', outcome: Outcome.COMMITTED, index: 1 });
    const [again] = bank.apply(2, transfer('c', 1, 1, 2, 4));
    expect(again).toMatchObject({ kind: 'request-duplicate', outcome: Outcome.COMMITTED, index: 1 });
    expect([bank.balance(1), bank.balance(2)]).toEqual([6, 14]);
  });

  it('the same request id with other arguments is refused and changes nothing', () => {
    const bank = newBank(0);
    bank.apply(1, transfer('c', 1, 1, 2, 4));
    const [event] = bank.apply(2, transfer('c', 1, 1, 2, 5));
    expect(event).toMatchObject({ kind: 'request-rejected', code: 'mismatch' });
    expect(bank.balance(1)).toBe(6);
  });

  it('a shortfall caused only by pending debits is a conflict, a real one is INSUFFICIENT_FUNDS', () => {
    const bank = newBank(0);
    const [prepared] = bank.apply(1, coordPrepare(tx(1), 'x', 1, 1, 11, 8));
    expect(prepared?.kind).toBe('coord-prepared');
    // 10 - 8 pending = 2 available: 5 is a conflict, not insufficient funds.
    expect(bank.apply(2, transfer('y', 1, 1, 2, 5))[0]).toMatchObject({ kind: 'transfer-conflict' });
    expect(bank.apply(3, transfer('y', 2, 1, 2, 11))[0]).toMatchObject({
      kind: 'transfer-final',
      outcome: Outcome.INSUFFICIENT_FUNDS,
    });
    // Once the reservation is released by an abort, the retry of the conflicting request runs.
    bank.apply(4, decision(tx(1), false));
    expect(bank.apply(5, transfer('y', 1, 1, 2, 5))[0]).toMatchObject({
      kind: 'transfer-final',
      outcome: Outcome.COMMITTED,
    });
    expect(bank.balance(1)).toBe(5);
  });

  it('the first DECISION in log order wins; a later one is a no-op', () => {
    const bank = newBank(0);
    bank.apply(1, coordPrepare(tx(1), 'x', 1, 1, 11, 3));
    expect(bank.apply(2, decision(tx(1), true))[0]).toMatchObject({ kind: 'coord-decided' });
    expect(bank.apply(3, decision(tx(1), false))[0]).toMatchObject({ kind: 'noop' });
    expect(bank.balance(1)).toBe(7);
    expect(bank.transaction(tx(1))?.state).toBe('committed');
  });

  it('one CoordAck forgets every decided transaction it names; undecided and unknown ones are left alone', () => {
    const bank = newBank(0);
    for (const seq of [1, 2, 3]) bank.apply(seq, coordPrepare(tx(seq), 'x', seq, seq, 11, 1));
    bank.apply(4, decision(tx(1), true));
    bank.apply(5, decision(tx(2), false));
    const events = bank.apply(6, {
      body: { $case: 'coordAck', coordAck: { txid: undefined, txids: [tx(1), tx(2), tx(3), tx(9)] } },
    });
    expect(events).toEqual([
      { kind: 'coord-finished', txid: tx(1) },
      { kind: 'coord-finished', txid: tx(2) },
    ]);
    expect(bank.transaction(tx(1))).toBeUndefined();
    expect(bank.transaction(tx(2))).toBeUndefined();
    // Still prepared: an acknowledgement cannot finish it (only its decision can).
    expect(bank.transaction(tx(3))?.state).toBe('prepared');
    expect(bank.ownWatermark()).toEqual(tx(3));
    // The single-txid form written by earlier versions still applies.
    bank.apply(7, decision(tx(3), true));
    expect(bank.apply(8, { body: { $case: 'coordAck', coordAck: { txid: tx(3), txids: [] } } })).toEqual([
      { kind: 'coord-finished', txid: tx(3) },
    ]);
    expect(bank.inflightCount()).toBe(0);
  });

  it('presumed abort: a decision for an unknown transaction leaves a tombstone, so a late PREPARE is a no-op', () => {
    const bank = newBank(0);
    expect(bank.apply(1, decision(tx(5), false))[0]).toMatchObject({ kind: 'coord-decided' });
    expect(bank.apply(2, coordPrepare(tx(5), 'x', 1, 1, 11, 3))[0]).toMatchObject({ kind: 'noop' });
    expect(bank.balance(1)).toBe(10);
    // A COMMIT is only ever proposed for a prepared record: one for an unknown transaction is a
    // late copy for a transaction finished and forgotten (see late-commands.test.ts), a no-op.
    expect(bank.apply(3, decision(tx(6), true))).toEqual([{ kind: 'noop' }]);
    expect(bank.transaction(tx(6))).toBeUndefined();
  });

  it('participant: prepare records a pending credit, commit applies it once, and the watermark rejects old prepares', () => {
    const bank = newBank(1);
    const prepare = (seq: number, watermark?: TxId): Command => ({
      body: {
        $case: 'partPrepare',
        partPrepare: { txid: tx(seq), from: 1, to: 11, amount: 2, coordWatermark: watermark },
      },
    });
    expect(bank.apply(1, prepare(3))[0]).toMatchObject({ kind: 'part-voted', yes: true });
    expect(bank.pendingCreditKeys(11)?.size).toBe(1);
    expect(bank.balance(11)).toBe(10); // a read never shows a prepared change
    bank.apply(2, {
      body: { $case: 'partDecision', partDecision: { txid: tx(3), commit: true, coordWatermark: undefined } },
    });
    bank.apply(3, {
      body: { $case: 'partDecision', partDecision: { txid: tx(3), commit: true, coordWatermark: undefined } },
    });
    expect(bank.balance(11)).toBe(12);
    expect(bank.pendingCreditKeys(11)).toBeUndefined();
    // The coordinator says everything below seq 10 is finished: the record is forgotten and a
    // duplicated old PREPARE votes NO instead of crediting again.
    bank.apply(4, prepare(11, tx(10)));
    expect(bank.transaction(tx(3))).toBeUndefined();
    expect(bank.apply(5, prepare(3))[0]).toMatchObject({ kind: 'part-voted', yes: false });
    expect(bank.balance(11)).toBe(12);
  });

  it('a snapshot restores the whole state: balances, reservations, transactions and sessions', () => {
    const bank = newBank(0);
    bank.apply(1, transfer('c', 1, 1, 2, 4));
    bank.apply(2, coordPrepare(tx(1), 'x', 1, 3, 11, 8));
    const copy = BankState.fromSnapshot(topology, 0, bank.toSnapshot());
    expect(copy.fingerprint()).toBe(bank.fingerprint());
    // The reservation survived: a conflicting debit is still a conflict after the restore.
    expect(copy.apply(3, transfer('y', 1, 3, 4, 5))[0]).toMatchObject({ kind: 'transfer-conflict' });
    expect(copy.apply(4, transfer('c', 1, 1, 2, 4))[0]).toMatchObject({
      kind: 'request-duplicate',
      outcome: Outcome.COMMITTED,
    });
  });
});
