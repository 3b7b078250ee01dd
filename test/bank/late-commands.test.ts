// Commands that reach the bank state machine late or twice (an old leader's unchosen tail
// chosen after newer slots, a retry proposed by two leaders): each must change nothing. The
// simulator produces these interleavings only rarely; these tests pin them on the real
// BankState (and catch the matching entries of scripts/mutants.json).
import { describe, expect, it } from 'vitest';
import { ABORT_REASONS, BankState } from '../../node/bank/bank-state.js';
import type { Command, TxId } from '../../node/gen/shardbank/v1/peer.js';

const topology = { shards: 2, replicasPerShard: 3, itemsPerShard: 10, initialBalance: 10 };
const tx = (seq: number, round = 1): TxId => ({ shard: 0, round, ordinal: 0, seq });
/** Clients a, b, c have their sessions opened in this order: epochs 1, 2, 3. */
const CLIENTS = ['a', 'b', 'c'];
const epochOf = (clientId: string): number => CLIENTS.indexOf(clientId) + 1;
function newBank(): BankState {
  const bank = new BankState(topology, 0);
  for (const clientId of CLIENTS) bank.apply(0, { body: { $case: 'openSession', openSession: { clientId } } });
  for (const clientId of CLIENTS)
    if (bank.sessionEpochOf(clientId) !== epochOf(clientId)) throw new Error(`session epoch of ${clientId}`);
  return bank;
}
const coordPrepare = (txid: TxId, clientId: string, requestId: number, amount: number): Command => ({
  body: {
    $case: 'coordPrepare',
    coordPrepare: {
      txid,
      clientId,
      requestId,
      from: 1,
      to: 11,
      amount,
      toShard: 1,
      acknowledgedBelow: 0,
      sessionEpoch: epochOf(clientId),
    },
  },
});
const decide = (txid: TxId, commit: boolean): Command => ({
  body: { $case: 'coordDecision', coordDecision: { txid, commit, reason: 0, participantShard: 1 } },
});
const ack = (txid: TxId): Command => ({ body: { $case: 'coordAck', coordAck: { txid, txids: [] } } });

describe('late and repeated commands', () => {
  it("a decision chosen late (an old leader's tail) for a transaction decided, acknowledged and forgotten is a no-op", () => {
    const bank = newBank();
    bank.apply(1, coordPrepare(tx(1), 'a', 1, 3));
    bank.apply(2, decide(tx(1), true));
    bank.apply(3, ack(tx(1)));
    expect(bank.transaction(tx(1))).toBeUndefined();
    // The same COMMIT, from a cut-off leader's unchosen tail, chosen in a later recovery.
    expect(bank.apply(4, decide(tx(1), true))).toEqual([{ kind: 'noop' }]);
    expect(bank.apply(5, decide(tx(1), false))).toEqual([{ kind: 'noop' }]);
    expect(bank.transaction(tx(1))).toBeUndefined();
    expect(bank.balance(1)).toBe(7);
  });

  it('the same, while an older prepared transaction holds the watermark below the forgotten one', () => {
    const bank = newBank();
    bank.apply(1, coordPrepare(tx(1), 'a', 1, 2));
    bank.apply(2, coordPrepare(tx(2), 'b', 1, 3));
    bank.apply(3, decide(tx(2), true));
    bank.apply(4, ack(tx(2)));
    expect(bank.transaction(tx(2))).toBeUndefined();
    expect(bank.apply(5, decide(tx(2), true))).toEqual([{ kind: 'noop' }]);
    expect(bank.transaction(tx(2))).toBeUndefined();
    expect(bank.balance(1)).toBe(7);
  });

  it('a coordinator PREPARE below its own watermark (its txid finished and forgotten) creates nothing', () => {
    const bank = newBank();
    bank.apply(1, coordPrepare(tx(2), 'a', 1, 3));
    bank.apply(2, decide(tx(2), true));
    bank.apply(3, ack(tx(2)));
    expect(bank.transaction(tx(2))).toBeUndefined();
    // An older attempt's PREPARE chosen only now (an old leader's tail): below the watermark.
    expect(bank.apply(4, coordPrepare(tx(1), 'b', 1, 4))[0]).toMatchObject({ kind: 'noop' });
    expect(bank.transaction(tx(1))).toBeUndefined();
    expect(bank.inflightCount()).toBe(0);
    expect(bank.balance(1)).toBe(7);
  });

  it('a coordinator PREPARE short only because of other reservations is a conflict, never INSUFFICIENT_FUNDS', () => {
    const bank = newBank();
    expect(bank.apply(1, coordPrepare(tx(1), 'a', 1, 8))[0]).toMatchObject({ kind: 'coord-prepared' });
    // 10 - 8 reserved = 2 available: 5 is a conflict (the first may still abort), not a final refusal.
    const [decided] = bank.apply(2, coordPrepare(tx(2), 'b', 1, 5));
    expect(decided).toMatchObject({
      kind: 'coord-decided',
      record: { state: 'aborted', abortReason: ABORT_REASONS.conflict },
    });
    expect(bank.checkSession('b', epochOf('b'), 1, 1, 11, 5)).toMatchObject({ kind: 'retry-after-abort' });
  });

  it('a second attempt of a cross-shard request whose first attempt is prepared does not prepare again', () => {
    const bank = newBank();
    expect(bank.apply(1, coordPrepare(tx(1), 'c', 7, 4))[0]).toMatchObject({ kind: 'coord-prepared' });
    // The same client request proposed again by a later leader under a new txid.
    const events = bank.apply(2, coordPrepare(tx(1, 2), 'c', 7, 4));
    expect(events[0]).toMatchObject({ kind: 'request-duplicate' });
    expect(bank.transaction(tx(1, 2))?.state).toBe('aborted');
    bank.apply(3, decide(tx(1), true));
    expect(bank.balance(1)).toBe(6);
    // And once the first committed, a third attempt is a duplicate too, never a second debit.
    expect(bank.apply(4, coordPrepare(tx(2, 2), 'c', 7, 4))[0]).toMatchObject({ kind: 'request-duplicate' });
    expect(bank.transaction(tx(2, 2))?.state).toBe('aborted');
    expect(bank.balance(1)).toBe(6);
  });
});
