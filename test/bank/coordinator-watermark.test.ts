// Bug 1 of the safety review (a COMMITTED transfer whose credit never happens): the coordinator
// watermark fell below a presumed-abort tombstone once the tombstone was acknowledged and
// collected, so a late CoordPrepare of the same txid (re-proposed from an old leader's
// accepted slot) made a fresh prepared record, which then committed while the participant
// had aborted. The watermark is replicated state and never goes down; a CoordPrepare at or
// below it, or after any decision for its txid, never creates a record.
import { describe, expect, it } from 'vitest';
import { BankState, ABORT_REASONS } from '../../node/bank/bank-state.js';
import { compareTxIds } from '../../node/bank/txid.js';
import type { Command, TxId } from '../../node/gen/shardbank/v1/peer.js';

const topology = { shards: 2, replicasPerShard: 3, itemsPerShard: 10, initialBalance: 10 };
const tx = (round: number, seq: number): TxId => ({ shard: 0, round, ordinal: 0, seq });

/** A bank with the session of 'client' open (epoch 1). */
function openBank(shard: number): BankState {
  const bank = new BankState(topology, shard);
  bank.apply(0, { body: { $case: 'openSession', openSession: { clientId: 'client' } } });
  return bank;
}
const coordPrepare = (txid: TxId, requestId: number): Command => ({
  body: {
    $case: 'coordPrepare',
    coordPrepare: {
      txid,
      clientId: 'client',
      requestId,
      from: 1,
      to: 11,
      amount: 5,
      toShard: 1,
      acknowledgedBelow: 0,
      sessionEpoch: 1,
    },
  },
});
const presumedAbort = (txid: TxId): Command => ({
  body: {
    $case: 'coordDecision',
    coordDecision: { txid, commit: false, reason: ABORT_REASONS.participantNo, participantShard: 1 },
  },
});
const ack = (txid: TxId): Command => ({ body: { $case: 'coordAck', coordAck: { txid: undefined, txids: [txid] } } });

describe('coordinator watermark', () => {
  it('a CoordPrepare applied after its presumed-abort tombstone was acknowledged and collected creates no record', () => {
    const bank = openBank(0);
    const earlier = tx(1, 1);
    bank.apply(1, coordPrepare(earlier, 1));
    bank.apply(2, {
      body: { $case: 'coordDecision', coordDecision: { txid: earlier, commit: true, reason: 0, participantShard: 1 } },
    });
    bank.apply(3, ack(earlier));
    // Slot 3 of the scenario: a new leader tombstones T (the participant inquired about it).
    const late = tx(1, 2);
    const watermarkBefore = bank.ownWatermark();
    bank.apply(4, presumedAbort(late));
    expect(bank.transaction(late)?.tombstone).toBe(true);
    // Slot 4: the participant aborted and acknowledged; the tombstone is collected.
    bank.apply(5, ack(late));
    expect(bank.transaction(late)).toBeUndefined();
    // The watermark never goes down and now lies above T.
    expect(compareTxIds(bank.ownWatermark(), watermarkBefore)).toBeGreaterThanOrEqual(0);
    expect(compareTxIds(late, bank.ownWatermark())).toBeLessThan(0);
    // Slot 5: the old leader's CoordPrepare(T), re-proposed after phase 1, applies late.
    const events = bank.apply(6, coordPrepare(late, 2));
    expect(events).toEqual([{ kind: 'noop' }]);
    expect(bank.transaction(late)).toBeUndefined();
    expect(bank.balance(1)).toBe(5);
  });

  it('with an older transaction holding the watermark down, the tombstone alone refuses a late CoordPrepare', () => {
    const bank = openBank(0);
    // W is prepared and undecided: the watermark stays at W, below T.
    const w = tx(1, 1);
    bank.apply(1, coordPrepare(w, 1));
    const t = tx(1, 5);
    bank.apply(2, presumedAbort(t));
    expect(compareTxIds(t, bank.ownWatermark())).toBeGreaterThanOrEqual(0);
    expect(bank.apply(3, coordPrepare(t, 2))).toEqual([{ kind: 'noop' }]);
    expect(bank.transaction(t)?.tombstone).toBe(true);
    expect(bank.transaction(t)?.state).toBe('aborted');
  });

  it('the watermark survives a snapshot restore', () => {
    const bank = openBank(0);
    const late = tx(2, 7);
    bank.apply(1, presumedAbort(late));
    bank.apply(2, ack(late));
    const restored = BankState.fromSnapshot(topology, 0, bank.toSnapshot());
    expect(compareTxIds(late, restored.ownWatermark())).toBeLessThan(0);
    expect(restored.apply(3, coordPrepare(late, 1))).toEqual([{ kind: 'noop' }]);
  });

  it('a tombstone below the watermark is a no-op and never lowers it', () => {
    const bank = openBank(0);
    bank.apply(1, coordPrepare(tx(3, 1), 1));
    bank.apply(2, {
      body: {
        $case: 'coordDecision',
        coordDecision: { txid: tx(3, 1), commit: false, reason: 0, participantShard: 1 },
      },
    });
    bank.apply(3, ack(tx(3, 1)));
    const watermark = bank.ownWatermark();
    expect(bank.apply(4, presumedAbort(tx(2, 9)))).toEqual([{ kind: 'noop' }]);
    expect(bank.ownWatermark()).toEqual(watermark);
  });
});
