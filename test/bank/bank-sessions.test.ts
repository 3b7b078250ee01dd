// Exactly-once sessions through the real bank state machine (issue 15, bugs 4 and 5): epochs
// make a forgotten session refuse its old requests forever, and outcomes recorded in any order
// stay reachable.
import { describe, expect, it } from 'vitest';
import { BankState, type ApplyEvent } from '../../node/bank/bank-state.js';
import { SESSION_LIMITS } from '../../node/bank/session-table.js';
import { Outcome } from '../../node/gen/shardbank/v1/bank.js';
import type { Command, TxId } from '../../node/gen/shardbank/v1/peer.js';

const topology = { shards: 2, replicasPerShard: 3, itemsPerShard: 10, initialBalance: 1_000_000 };
const open = (clientId: string): Command => ({ body: { $case: 'openSession', openSession: { clientId } } });
const transfer = (clientId: string, sessionEpoch: number, requestId: number, acknowledgedBelow = 0): Command => ({
  body: {
    $case: 'transfer',
    transfer: { clientId, requestId, from: 1, to: 2, amount: 1, acknowledgedBelow, sessionEpoch },
  },
});
const tx = (seq: number): TxId => ({ shard: 0, round: 1, ordinal: 0, seq });
const coordPrepare = (seq: number, clientId: string, sessionEpoch: number, requestId: number): Command => ({
  body: {
    $case: 'coordPrepare',
    coordPrepare: {
      txid: tx(seq),
      clientId,
      requestId,
      from: 3,
      to: 11,
      amount: 1,
      toShard: 1,
      acknowledgedBelow: 0,
      sessionEpoch,
    },
  },
});
const commit = (seq: number): Command => ({
  body: { $case: 'coordDecision', coordDecision: { txid: tx(seq), commit: true, reason: 0, participantShard: 1 } },
});

function opened(events: ApplyEvent[]): number {
  const event = events[0];
  if (event?.kind !== 'session-opened') throw new Error(`expected session-opened, got ${JSON.stringify(event)}`);
  return event.epoch;
}

describe('exactly-once sessions in the bank state machine', () => {
  it('OpenSession is effect-free and repeatable; a transfer without its epoch is refused and changes nothing', () => {
    const bank = new BankState(topology, 0);
    const epoch = opened(bank.apply(1, open('c')));
    expect(opened(bank.apply(2, open('c')))).toBe(epoch);
    expect(bank.apply(3, transfer('c', 0, 1))[0]).toMatchObject({
      kind: 'request-rejected',
      code: 'expired',
      message: expect.stringContaining('session_epoch'),
    });
    expect(bank.apply(4, transfer('c', epoch + 5, 1))[0]).toMatchObject({ kind: 'request-rejected', code: 'expired' });
    expect(bank.balance(1)).toBe(1_000_000);
    expect(bank.apply(5, transfer('c', epoch, 1))[0]).toMatchObject({
      kind: 'transfer-final',
      outcome: Outcome.COMMITTED,
    });
    expect(bank.balance(1)).toBe(999_999);
  });

  it('a request id never runs twice, however many other clients came since (> 110,000), also across a snapshot', () => {
    // Fails on 73bae90: the victim's watermark went from the session table to a map of
    // 100,000 evicted clients and then out of it; the victim was new again and its retried
    // request 1 moved the money a second time.
    const bank = new BankState(topology, 0);
    let index = 1;
    const victim = opened(bank.apply(index++, open('victim')));
    expect(bank.apply(index++, transfer('victim', victim, 1))[0]).toMatchObject({
      kind: 'transfer-final',
      outcome: Outcome.COMMITTED,
    });
    let copy: BankState | undefined;
    for (let c = 0; c < 110_001; c += 1) {
      const epoch = opened(bank.apply(index, open(`other-${c}`)));
      bank.apply(index, transfer(`other-${c}`, epoch, 1));
      index += 1;
      if (c === 60_000) copy = BankState.fromSnapshot(topology, 0, bank.toSnapshot());
    }
    const moved = bank.balance(2);
    const [retry] = bank.apply(index, transfer('victim', victim, 1));
    expect(retry).toMatchObject({
      kind: 'request-rejected',
      code: 'expired',
      message: expect.stringContaining('session expired'),
    });
    expect(bank.balance(2)).toBe(moved);
    // The client opens again: a new session, and the old epoch stays refused.
    const again = opened(bank.apply(index, open('victim')));
    expect(again).not.toBe(victim);
    expect(bank.apply(index, transfer('victim', victim, 1))[0]).toMatchObject({
      kind: 'request-rejected',
      code: 'expired',
    });
    expect(bank.apply(index, transfer('victim', again, 2))[0]).toMatchObject({
      kind: 'transfer-final',
      outcome: Outcome.COMMITTED,
    });
    // A replica restored from a snapshot in the middle, applying the same rest, agrees exactly.
    let replay = 60_002 + 2;
    for (let c = 60_001; c < 110_001; c += 1) {
      const epoch = opened(copy!.apply(replay, open(`other-${c}`)));
      copy!.apply(replay, transfer(`other-${c}`, epoch, 1));
      replay += 1;
    }
    expect(copy!.apply(replay, transfer('victim', victim, 1))[0]).toMatchObject({
      kind: 'request-rejected',
      code: 'expired',
    });
    expect(opened(copy!.apply(replay, open('victim')))).toBe(again);
    copy!.apply(replay, transfer('victim', again, 2));
    expect(copy!.fingerprint()).toBe(bank.fingerprint());
    const snapshotBytes = bank.toSnapshot().length;
    // Bounded: 10,000 sessions of one result each, nothing about the 100,000 others.
    expect(snapshotBytes).toBeLessThan(SESSION_LIMITS.sessionsMax * 80 + 10_000);
  }, 60_000);

  it('a cross-shard attempt prepared after 2,048 later ids of its client were decided still reaches its outcome', () => {
    // Fails on 73bae90: trimming assumed id order and raised the watermark past request 1
    // while it was in flight; recording its COMMIT then broke an invariant (replica crash),
    // and a retry was refused as stale.
    const bank = new BankState(topology, 0);
    const epoch = opened(bank.apply(1, open('batch')));
    let index = 2;
    for (let id = 2; id <= SESSION_LIMITS.resultsPerSessionMax + 1; id += 1)
      bank.apply(index++, transfer('batch', epoch, id));
    expect(bank.apply(index++, coordPrepare(1, 'batch', epoch, 1))[0]).toMatchObject({ kind: 'coord-prepared' });
    for (let id = 5000; id < 5010; id += 1) bank.apply(index++, transfer('batch', epoch, id));
    expect(bank.apply(index++, coordPrepare(1, 'batch', epoch, 1))[0]).toMatchObject({ kind: 'noop' });
    expect(bank.checkSession('batch', epoch, 1, 3, 11, 1)).toMatchObject({
      kind: 'duplicate',
      result: { state: 'inflight' },
    });
    expect(bank.apply(index++, commit(1))[0]).toMatchObject({ kind: 'coord-decided' });
    expect(bank.checkSession('batch', epoch, 1, 3, 11, 1)).toMatchObject({
      kind: 'duplicate',
      result: { state: 'final', outcome: Outcome.COMMITTED },
    });
    // An old id that was trimmed is refused, never run again.
    expect(bank.apply(index++, transfer('batch', epoch, 2))[0]).toMatchObject({
      kind: 'request-rejected',
      code: 'stale',
    });
  });

  it('an acknowledgement carried by a later request never passes an attempt still in flight', () => {
    const bank = new BankState(topology, 0);
    const epoch = opened(bank.apply(1, open('c')));
    bank.apply(2, transfer('c', epoch, 3));
    bank.apply(3, coordPrepare(1, 'c', epoch, 1));
    bank.apply(4, transfer('c', epoch, 4, 3));
    expect(bank.checkSession('c', epoch, 1, 3, 11, 1)).toMatchObject({
      kind: 'duplicate',
      result: { state: 'inflight' },
    });
    bank.apply(5, commit(1));
    expect(bank.checkSession('c', epoch, 1, 3, 11, 1)).toMatchObject({
      kind: 'duplicate',
      result: { outcome: Outcome.COMMITTED },
    });
    expect(bank.apply(6, transfer('c', epoch, 2))[0]).toMatchObject({ kind: 'request-rejected', code: 'stale' });
  });
});
