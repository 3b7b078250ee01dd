// Unit tests of the leader's two-phase-commit module on a real BankState: what it proposes and
// sends for votes, inquiries, decisions and acknowledgements, read from the replicated state.
import { describe, expect, it } from 'vitest';
import { BankState } from '../../node/bank/bank-state.js';
import type { Command, TxId } from '../../node/gen/shardbank/v1/peer.js';
import { ProposalQueue } from '../../node/shard/proposal-queue.js';
import { TwoPhaseCommit } from '../../node/shard/two-phase-commit.js';

const topology = { shards: 3, replicasPerShard: 3, itemsPerShard: 10, initialBalance: 10 };
const timing = { txScanTicks: 1, txResendTicks: 4, txInquiryTicks: 10 };

function coordinator(): { bank: BankState; queue: ProposalQueue; tpc: TwoPhaseCommit } {
  const bank = new BankState(topology, 0);
  bank.apply(1, { body: { $case: 'openSession', openSession: { clientId: 'c' } } });
  const queue = new ProposalQueue();
  return { bank, queue, tpc: new TwoPhaseCommit(0, 0, timing, queue) };
}

const prepared = (bank: BankState, txid: TxId, index: number): void => {
  const command: Command = {
    body: {
      $case: 'coordPrepare',
      coordPrepare: {
        txid,
        clientId: 'c',
        requestId: index,
        from: 1,
        to: 11,
        amount: 3,
        toShard: 1,
        acknowledgedBelow: 0,
        sessionEpoch: 1,
      },
    },
  };
  expect(bank.apply(index, command)[0]?.kind).toBe('coord-prepared');
};

/** Applies a CoordDecision for `txid` (participant shard 1) at `index`: the events it made. */
const decide = (bank: BankState, index: number, txid: TxId, commit: boolean, reason: number) =>
  bank.apply(index, { body: { $case: 'coordDecision', coordDecision: { txid, commit, reason, participantShard: 1 } } });

const decisionsIn = (queue: ProposalQueue) => queue.take(100).filter((c) => c.body?.$case === 'coordDecision');

describe('two-phase commit, coordinator side', () => {
  it("a vote or inquiry counts only from the transaction's own participant shard", () => {
    const { bank, queue, tpc } = coordinator();
    const txid: TxId = { shard: 0, round: 1, ordinal: 0, seq: 1 };
    prepared(bank, txid, 2);
    tpc.onVote(2, txid, true, bank); // shard 2 is not the participant (item 11 is on shard 1)
    expect(decisionsIn(queue)).toEqual([]);
    tpc.onVote(1, txid, true, bank);
    const [decision] = decisionsIn(queue);
    expect(decision?.body).toMatchObject({
      $case: 'coordDecision',
      coordDecision: { commit: true, participantShard: 1 },
    });
  });

  it('an early vote (before our CoordPrepare applied) counts only from the shard we sent the PREPARE to', () => {
    const { bank, queue, tpc } = coordinator();
    const txid = tpc.beginAttempt({ round: 1, ordinal: 0 }, 1, { from: 1, to: 11, amount: 3 }, bank);
    expect(tpc.takeMessages()).toMatchObject([{ toShard: 1, body: { $case: 'prepare' } }]);
    tpc.onVote(2, txid, true, bank);
    prepared(bank, txid, 2);
    tpc.onCoordPrepared(bank.transaction(txid)!);
    expect(decisionsIn(queue)).toEqual([]);
  });

  it('an inquiry about an unknown txid at or above the watermark proposes a tombstone (presumed abort); below it, an ABORT is sent', () => {
    const { bank, queue, tpc } = coordinator();
    const unknown: TxId = { shard: 0, round: 5, ordinal: 1, seq: 9 };
    tpc.onVote(1, unknown, true, bank);
    expect(decisionsIn(queue)[0]?.body).toMatchObject({ coordDecision: { commit: false, participantShard: 1 } });
    // The tombstone applies, is acknowledged and collected: the watermark passes it.
    decide(bank, 2, unknown, false, 0);
    bank.apply(3, { body: { $case: 'coordAck', coordAck: { txid: undefined, txids: [unknown] } } });
    tpc.takeMessages();
    tpc.onVote(1, unknown, true, bank);
    expect(decisionsIn(queue)).toEqual([]);
    expect(tpc.takeMessages()).toMatchObject([
      { toShard: 1, body: { $case: 'decision', decision: { commit: false } } },
    ]);
  });

  it('a prepared transaction with no vote is never aborted on a timeout: it keeps asking the participant', () => {
    const { bank, queue, tpc } = coordinator();
    const txid: TxId = { shard: 0, round: 1, ordinal: 0, seq: 1 };
    prepared(bank, txid, 2);
    tpc.onLeadershipReady(bank);
    for (let tick = 0; tick < 2_000; tick += 1) tpc.tick(true, bank);
    expect(decisionsIn(queue)).toEqual([]);
    const prepares = tpc.takeMessages().filter((m) => m.body?.$case === 'prepare');
    // One at once (a new leader re-asks), then one per txResendTicks.
    expect(prepares.length).toBeGreaterThanOrEqual(2_000 / timing.txResendTicks);
    expect(prepares.every((m) => m.toShard === 1)).toBe(true);
    expect(tpc.takeCommitted()).toEqual([]);
  });
});

describe('two-phase commit, parallel commits', () => {
  it('a YES vote on an applied PREPARE answers COMMITTED at once, before the decision applies, and proposes COMMIT', () => {
    const { bank, queue, tpc } = coordinator();
    const txid: TxId = { shard: 0, round: 1, ordinal: 0, seq: 1 };
    prepared(bank, txid, 2);
    expect(tpc.takeCommitted()).toEqual([]);
    tpc.onVote(1, txid, true, bank);
    const committed = tpc.takeCommitted();
    expect(committed.map((r) => [r.clientId, r.requestId, r.prepareIndex])).toEqual([['c', 2, 2]]);
    expect(decisionsIn(queue)[0]?.body).toMatchObject({ coordDecision: { commit: true } });
    // A duplicated vote neither answers again nor proposes a second decision.
    tpc.onVote(1, txid, true, bank);
    expect(tpc.takeCommitted()).toEqual([]);
    expect(decisionsIn(queue)).toEqual([]);
  });

  it('a vote that arrives before our own PREPARE applied answers only once the PREPARE applies', () => {
    const { bank, queue, tpc } = coordinator();
    const txid = tpc.beginAttempt({ round: 1, ordinal: 0 }, 1, { from: 1, to: 11, amount: 3 }, bank);
    tpc.onVote(1, txid, true, bank);
    expect(tpc.takeCommitted()).toEqual([]);
    expect(decisionsIn(queue)).toEqual([]);
    prepared(bank, txid, 2);
    tpc.onCoordPrepared(bank.transaction(txid)!);
    expect(tpc.takeCommitted()).toHaveLength(1);
    expect(decisionsIn(queue)[0]?.body).toMatchObject({ coordDecision: { commit: true } });
  });

  it('a NO vote on a transaction prepared here decides nothing: only a leader whose state is behind gets one', () => {
    // Our participant refuses only what we decided ABORT or what is below our watermark; an
    // up-to-date prepared record is neither, so the NO comes from a participant that already
    // forgot a transaction a later leader finished (possibly answered COMMITTED): never ABORT.
    const { bank, queue, tpc } = coordinator();
    const txid = tpc.beginAttempt({ round: 1, ordinal: 0 }, 1, { from: 1, to: 11, amount: 3 }, bank);
    prepared(bank, txid, 2);
    tpc.onCoordPrepared(bank.transaction(txid)!);
    tpc.onVote(1, txid, false, bank);
    expect(tpc.staleNoVotes).toBe(1);
    expect(tpc.takeCommitted()).toEqual([]);
    expect(decisionsIn(queue)).toEqual([]);
    // And an early NO, before our own PREPARE applied, is ignored the same way.
    const next = tpc.beginAttempt({ round: 1, ordinal: 0 }, 1, { from: 1, to: 11, amount: 3 }, bank);
    tpc.onVote(1, next, false, bank);
    prepared(bank, next, 3);
    tpc.onCoordPrepared(bank.transaction(next)!);
    expect(tpc.staleNoVotes).toBe(2);
    expect(decisionsIn(queue)).toEqual([]);
  });

  it('an ABORT applied after an early COMMITTED answer is an invariant violation', () => {
    const { bank, tpc } = coordinator();
    const txid: TxId = { shard: 0, round: 1, ordinal: 0, seq: 1 };
    prepared(bank, txid, 2);
    tpc.onVote(1, txid, true, bank);
    expect(tpc.takeCommitted()).toHaveLength(1);
    decide(bank, 3, txid, false, 0);
    expect(() => tpc.onCoordDecided(bank.transaction(txid)!, bank)).toThrow(/answered COMMITTED, then decided aborted/);
  });

  it('a presumed ABORT chosen after the PREPARE it presumed absent is a no-op; the transaction still commits', () => {
    // An old leader that never saw the PREPARE proposed the tombstone; Multi-Paxos can choose
    // it in a later slot than a newer leader's PREPARE (coordinator-failover seed 742).
    const { bank, tpc } = coordinator();
    const txid: TxId = { shard: 0, round: 1, ordinal: 0, seq: 1 };
    prepared(bank, txid, 2);
    tpc.onVote(1, txid, true, bank);
    expect(tpc.takeCommitted()).toHaveLength(1);
    const presumed = decide(bank, 3, txid, false, 5);
    expect(presumed).toEqual([{ kind: 'noop' }]);
    expect(bank.transaction(txid)?.state).toBe('prepared');
    const decided = decide(bank, 4, txid, true, 0);
    expect(decided[0]).toMatchObject({ kind: 'coord-decided', record: { state: 'committed' } });
    expect(() => tpc.onCoordDecided(bank.transaction(txid)!, bank)).not.toThrow();
    expect(bank.balance(1)).toBe(7);
  });

  it('an ABORT of an older protocol version (reason participant NO or timeout) in the log still aborts a prepared record', () => {
    // Replaying old log entries must give the state the replicas that applied them have.
    for (const reason of [0, 4]) {
      const { bank } = coordinator();
      const txid: TxId = { shard: 0, round: 1, ordinal: 0, seq: 1 };
      prepared(bank, txid, 2);
      decide(bank, 3, txid, false, reason);
      expect(bank.transaction(txid)?.state).toBe('aborted');
    }
  });

  it('a new leader answers COMMITTED on the YES it gets by asking again', () => {
    const { bank, tpc } = coordinator();
    const txid: TxId = { shard: 0, round: 1, ordinal: 0, seq: 1 };
    prepared(bank, txid, 2);
    tpc.onLeadershipLost();
    tpc.onLeadershipReady(bank);
    tpc.tick(true, bank);
    expect(tpc.takeMessages().some((m) => m.body?.$case === 'prepare' && m.toShard === 1)).toBe(true);
    tpc.onVote(1, txid, true, bank);
    expect(tpc.takeCommitted()).toHaveLength(1);
  });
});
