// Scripted scenarios on the simulator (in the style of TigerBeetle's replica_test.zig): a
// quiet network, and a script that cuts this replica, holds those messages and runs until a
// condition, to reach interleavings that random faults reach too rarely. Each ends with the
// simulator's full checks (money conserved, every COMMITTED transfer applied exactly once,
// replicas agree, the history linearizable).
import { describe, expect, it } from 'vitest';
import { SimCluster, type SimFaults, type SimOptions, type SimSettings } from './sim-cluster.js';
import { BASE_SETTINGS, KNOWN_BUGS } from './scenarios.js';
import { Outcome } from '../../node/gen/shardbank/v1/bank.js';
import type { PaxosMessage } from '../../node/gen/shardbank/v1/peer.js';

const QUIET: SimFaults = {
  dropProbability: 0,
  duplicateProbability: 0,
  slowProbability: 0,
  slowDelayMsMax: 0,
  crashProbabilityPerStep: 0,
  crashAfterSendProbability: 0,
  powerLossProbabilityPerStep: 0,
  partitionProbabilityPerStep: 0,
  holdProbability: 0,
  pauseProbabilityPerStep: 0,
  pauseMsMax: 0,
  tickDrift: 0,
  tickBunchProbability: 0,
  tickSkipProbability: 0,
  syncMsMax: 0.5,
  syncSpikeProbability: 0,
  replayProbability: 0,
  mismatchProbability: 0,
};

function scriptedOptions(
  shards: number,
  seed: number,
  replicasPerShard: number,
  extra: Partial<SimOptions> = {},
  settings: Partial<SimSettings> = {},
): SimOptions {
  return {
    seed,
    scenario: 'scripted',
    topology: { shards, replicasPerShard, itemsPerShard: 10, initialBalance: 10 },
    clients: 0,
    requestsPerClient: 0,
    safetyMs: 0,
    livenessMsMax: 30_000,
    crossShardRatio: 0,
    hotItems: 0,
    faults: QUIET,
    // One command per slot, so an old leader's unchosen tail is several slots long.
    settings: { ...BASE_SETTINGS, inflightSlotsMax: 8, commandsPerSlotMax: 1, ...settings },
    scripted: true,
    ...(process.env.SHARDBANK_SIM_TRACE === '1' ? { trace: (line: string) => console.log(line) } : {}),
    ...extra,
  };
}

function scripted(shards: number, seed = 1, replicasPerShard = 3, settings: Partial<SimSettings> = {}): SimCluster {
  const sim = new SimCluster(scriptedOptions(shards, seed, replicasPerShard, {}, settings));
  sim.openSessions(SCRIPT_CLIENTS);
  return sim;
}

/** Every client id the scripts below use: their sessions are open before a script begins. */
const SCRIPT_CLIENTS = ['w', 'x', 'y', 'f1', 'f2', 'f3', 'f4', 'f5', 'f6', 'f7', 'f8'];

/**
 * Parallel commits' early answer, set up for a script: leaders in both shards, a 1 -> 11
 * transfer whose participant YES is held until both PREPAREs applied, then the coordinator
 * leader a0 cut off from its shard and the YES released: a0 answers COMMITTED while its
 * decision cannot be chosen (no replica of shard 0 has moved the debit).
 */
function answeredEarlyThenCutOff(sim: SimCluster) {
  sim.runUntil('leaders in both shards', () => sim.leader(0) !== undefined && sim.leader(1) !== undefined);
  const a0 = sim.leader(0)!;
  const b0 = sim.leader(1)!;
  sim.holdTxWhere((m) => m.fromShard === 1 && m.body?.$case === 'vote');
  const x = sim.addRequest('x', 1, 11, 3);
  sim.send(x, a0);
  sim.runUntil('both PREPAREs applied', () => a0.node.bank.inflightCount() === 1 && b0.node.bank.inflightCount() === 1);
  expect(x.outcome).toBeUndefined();
  sim.cut(0, a0.ordinal);
  expect(sim.releaseTx()).toBeGreaterThan(0);
  sim.runUntil('x answered by a0', () => x.outcome !== undefined);
  expect(x.outcome).toBe(Outcome.COMMITTED);
  expect(sim.group(0).map((r) => r.node.bank.balance(1))).toEqual([10, 10, 10]);
  return { a0, b0, x };
}

describe('scripted simulation', () => {
  it('first start, staggered (the Kubernetes run): the replicas that probe after the first one voted vote too', () => {
    // Every replica starts empty and probing, seconds apart. r0's probes are answered (its
    // peers are empty) but r0's replies to their probes are lost until r0 has decided on a first
    // start and campaigned (promised itself: it reports has_state). Before the fix r1 and r2
    // then rebuilt, waiting for a leader elected by every other replica: never, with r0 the
    // only voter.
    const sim = new SimCluster(scriptedOptions(1, 1, 3, { firstStart: { startMsMax: 3000 } }));
    const [r0, r1, r2] = sim.group(0);
    sim.dropPaxosWhere((m) => m.from === 0 && m.body?.$case === 'probeReply');
    sim.runUntil('every replica started', () => sim.group(0).every((r) => r.up));
    expect(sim.group(0).map((r) => r.node.core.votingState)).not.toContain('voter');
    sim.runUntil(
      'r0 votes and campaigns',
      () => r0!.node.core.votingState === 'voter' && r0!.node.core.role === 'candidate',
    );
    expect(r1!.node.core.votingState).toBe('probing');
    expect(r2!.node.core.votingState).toBe('probing');
    sim.dropPaxosWhere(undefined);
    sim.runUntil(
      'every replica votes and a leader is elected',
      () => sim.group(0).every((r) => r.node.core.votingState === 'voter') && sim.leader(0) !== undefined,
    );
    sim.openSessions(['x']);
    const x = sim.addRequest('x', 1, 2, 3);
    sim.send(x, sim.leader(0)!);
    sim.runUntil('X committed', () => x.outcome !== undefined);
    sim.runFor(500);
    sim.finish();
  });

  it('first start, restarted: replicas counted empty that crash and restart before they are told still vote', () => {
    // As above, r0 decides on a first start counting r1 and r2 empty and campaigns before they
    // hear from it; then r1 and r2 crash and restart, still probing (their NOT_VOTING markers
    // stand). Before their marker held a stable identity, each came back under a new life
    // nonce, which r0 had never counted: both rebuilt, waiting for a leader elected by every
    // other replica, with r0 the only voter: never.
    const sim = new SimCluster(scriptedOptions(1, 1, 3, { firstStart: { startMsMax: 3000 } }));
    const [r0, r1, r2] = sim.group(0);
    sim.dropPaxosWhere((m) => m.from === 0 && m.body?.$case === 'probeReply');
    sim.runUntil('every replica started', () => sim.group(0).every((r) => r.up));
    sim.runUntil(
      'r0 votes and campaigns',
      () => r0!.node.core.votingState === 'voter' && r0!.node.core.role === 'candidate',
    );
    for (const ordinal of [1, 2]) sim.crashNow(0, ordinal);
    sim.runFor(300);
    for (const ordinal of [1, 2]) sim.restartReplicaNow(0, ordinal);
    expect([r1!.up, r2!.up]).toEqual([true, true]);
    expect(sim.group(0).map((r) => r.node.core.votingState)).toEqual(['voter', 'probing', 'probing']);
    sim.dropPaxosWhere(undefined);
    sim.runUntil(
      'every replica votes and a leader is elected',
      () => sim.group(0).every((r) => r.node.core.votingState === 'voter') && sim.leader(0) !== undefined,
    );
    sim.openSessions(['x']);
    const x = sim.addRequest('x', 1, 2, 3);
    sim.send(x, sim.leader(0)!);
    sim.runUntil('X committed', () => x.outcome !== undefined);
    sim.runFor(500);
    sim.finish();
  });

  it("an old leader's unchosen tail resurfaces after its request was retried and committed elsewhere: it runs once", () => {
    const sim = scripted(1);
    sim.runUntil('a first leader', () => sim.leader(0) !== undefined);
    const old = sim.leader(0)!;
    sim.cut(0, old.ordinal);
    // Three fillers, then X: X sits fourth in the old leader's tail, none of it chosen.
    const fillers = [1, 2, 3].map((i) => sim.addRequest(`f${i}`, 3 + i, 8, 1));
    for (const filler of fillers) sim.send(filler, old);
    const x = sim.addRequest('x', 1, 2, 3);
    sim.send(x, old);
    sim.runUntil('another leader', () => sim.leader(0) !== undefined && sim.leader(0) !== old);
    const next = sim.leader(0)!;
    sim.send(x, next);
    sim.runUntil('X committed by the new leader', () => x.outcome !== undefined);
    // The cut moves: the new leader is alone, the old one is back with its tail.
    sim.uncutAll();
    sim.cut(0, next.ordinal);
    sim.runUntil('a third leader', () => sim.leader(0) !== undefined && sim.leader(0) !== next);
    sim.runFor(500);
    const result = sim.finish();
    // The interleaving happened: X was chosen a second time, from the old tail.
    expect(result.repeatedRequests).toBeGreaterThan(0);
    expect(sim.repeated.has('x#1')).toBe(true);
    expect(x.outcome).toBeDefined();
  });

  /**
   * Swarm seed 46844 (7 replicas, one command per slot, two slots in flight): clients contend
   * for one item of the coordinator shard while the participant is slow. Every attempt that
   * applies while another one's debit reserves the item is a conflict, retried; at 73bae90+
   * each such attempt cost the participant two slots (its PartPrepare, sent in parallel, and the
   * ABORT), so the participant fell further behind than the coordinator's vote timeout and
   * every prepared attempt timed out in turn: nothing committed, for good. An attempt that
   * applied state already shows to conflict must take no slot anywhere.
   */
  it('contention on one item while the participant is slow: attempts bound to conflict cost the participant no slot, and every request ends', () => {
    const sim = scripted(2, 1, 3, { inflightSlotsMax: 1, commandsPerSlotMax: 1, burstMax: 4 });
    sim.runUntil('leaders in both shards', () => sim.leader(0) !== undefined && sim.leader(1) !== undefined);
    // Shard 0's votes and inquiries are held: the debit of item 11 that prepares first keeps
    // its reservation until the coordinator's vote timeout (60 ticks here) aborts it, and the
    // next one then does the same.
    sim.holdTxWhere((m) => m.fromShard === 0 && (m.body?.$case === 'vote' || m.body?.$case === 'inquiry'));
    const requests = [];
    for (let client = 0; client < 40; client += 1)
      for (let r = 1; r <= 2; r += 1) requests.push(sim.addRequest(`h${client}`, 11, 1 + ((client + r) % 10), 6, r));
    const participant = sim.leader(0)!;
    const appliedBefore = participant.node.bank.appliedIndex;
    sim.startClients();
    sim.runFor(3000);
    expect(sim.leader(0)).toBe(participant);
    expect(sim.requestsOpen).toBe(requests.length);
    // Two slots (PartPrepare, PartDecision) for each attempt that prepared, and for each one
    // that passed the check on applied state while another one was still on its way to a slot
    // (81 here), instead of two for every retry of every waiter (890 before the fix).
    expect(participant.node.bank.appliedIndex - appliedBefore).toBeLessThan(2 * requests.length);
    const result = sim.finish();
    // One transfer of 6 out of 10 commits; the others are then INSUFFICIENT_FUNDS for good.
    expect(result.committed).toBe(1);
    expect(result.insufficient).toBe(requests.length - 1);
  });

  /**
   * The coordinator decides, answers the client and dies before the participant hears the
   * decision: the participant stays prepared (its inquiries get no answer either), and the
   * coordinator shard's next leader finds the decided record in the replicated state and
   * re-sends it (or answers the participant's inquiry from it). Both shards end the same, the
   * credit applies once, money is conserved. (What test/replica/cross-shard.test.ts proved with
   * the production fault hook SHARDBANK_FAULT_HOLD_DECISIONS_FILE, now without one.)
   */
  it('a coordinator leader crashes between its decision and the participant learning it: the next leader finishes the transfer on both shards', () => {
    const sim = scripted(2);
    sim.runUntil('leaders in both shards', () => sim.leader(0) !== undefined && sim.leader(1) !== undefined);
    const a0 = sim.leader(0)!;
    // Nothing shard 0 says about a decision reaches shard 1: not the DECISION, not the answer to an inquiry.
    sim.holdTxWhere((m) => m.fromShard === 0 && m.body?.$case === 'decision');
    const x = sim.addRequest('x', 1, 11, 3);
    sim.send(x, a0);
    sim.runUntil('X answered by a0', () => x.outcome !== undefined);
    expect(x.outcome).toBe(Outcome.COMMITTED);
    const participant = sim.leader(1)!;
    // Long past the participant's inquiry timeout (12 ticks): still prepared, the credit pending.
    sim.runFor(1000);
    expect(sim.group(1).every((r) => r.node.bank.inflightCount() === 1)).toBe(true);
    expect(participant.node.bank.balance(11)).toBe(10);
    sim.crashNow(0, a0.ordinal);
    expect(sim.dropHeldTx()).toBeGreaterThan(0);
    sim.runUntil('another leader of shard 0', () => sim.leader(0) !== undefined && sim.leader(0) !== a0);
    sim.runUntil('the participant shard applied the decision', () =>
      sim.group(1).every((r) => r.node.bank.inflightCount() === 0),
    );
    expect(sim.group(1).map((r) => r.node.bank.balance(11))).toEqual([13, 13, 13]);
    expect(sim.leader(0)!.node.bank.balance(1)).toBe(7);
    sim.runUntil(
      "the coordinator's record acknowledged and collected",
      () => sim.leader(0)!.node.bank.inflightCount() === 0,
    );
    sim.restartReplicaNow(0, a0.ordinal);
    sim.finish();
  });

  /**
   * Parallel commits, the early answer: the coordinator leader answers COMMITTED on its own
   * applied PREPARE and the participant's YES, and is cut off before its decision can be chosen,
   * then crashes. Nothing of the decision survives; the next leader of shard 0 finds the
   * transaction prepared, asks the participant again and commits it: it may never ABORT. Reads
   * of both items sent right after the answer wait for the decision and show the transfer.
   */
  it('parallel commits: the coordinator leader answers COMMITTED, then dies before its decision is chosen: the next leader commits', () => {
    const sim = scripted(2);
    const { a0 } = answeredEarlyThenCutOff(sim);
    sim.crashNow(0, a0.ordinal);
    sim.uncutAll();
    sim.runUntil('another leader of shard 0', () => sim.leader(0) !== undefined && sim.leader(0) !== a0);
    const readsBefore = sim.readsAnswered;
    sim.sendRead(1, sim.leader(0)!);
    sim.sendRead(11, sim.leader(1)!);
    sim.runUntil('both reads answered', () => sim.readsAnswered === readsBefore + 2);
    sim.runUntil(
      'both shards applied the commit',
      () =>
        sim.group(0).every((r) => !r.up || r.node.bank.balance(1) === 7) &&
        sim.group(1).every((r) => r.node.bank.balance(11) === 13),
    );
    sim.restartReplicaNow(0, a0.ordinal);
    sim.finish();
  });

  /**
   * Parallel commits, never ABORT on a timeout: after the early answer and the coordinator
   * leader's crash, the participant shard is silent for far longer than any timeout. The next
   * coordinator leader keeps the transaction prepared and asks again until the participant
   * answers YES; an ABORT here would contradict the COMMITTED answer.
   */
  it('parallel commits: after the early answer the participant shard is silent for long: the next coordinator leader waits and commits', () => {
    const sim = scripted(2);
    const { a0 } = answeredEarlyThenCutOff(sim);
    // From now on nothing shard 1 says reaches shard 0: no vote, no inquiry.
    sim.holdTxWhere((m) => m.fromShard === 1);
    sim.crashNow(0, a0.ordinal);
    sim.uncutAll();
    sim.runUntil('another leader of shard 0', () => sim.leader(0) !== undefined && sim.leader(0) !== a0);
    sim.runFor(20_000);
    const a1 = sim.leader(0)!;
    expect(a1.node.bank.inflightCount()).toBe(1);
    expect(sim.group(0).map((r) => (r.up ? r.node.bank.balance(1) : 10))).toEqual([10, 10, 10]);
    expect(sim.group(1).map((r) => r.node.bank.inflightCount())).toEqual([1, 1, 1]);
    sim.releaseTx();
    sim.runUntil(
      'both shards applied the commit',
      () =>
        sim.group(0).every((r) => !r.up || r.node.bank.balance(1) === 7) &&
        sim.group(1).every((r) => r.node.bank.balance(11) === 13),
    );
    sim.restartReplicaNow(0, a0.ordinal);
    sim.finish();
  });

  /**
   * Parallel commits, both leaders die after the early answer: the participant's YES is chosen
   * and the client told COMMITTED, then the coordinator leader (its decision unchosen) and the
   * participant leader crash together. The next leaders find the transaction prepared on both
   * sides and commit it.
   */
  it('parallel commits: both shard leaders die right after the early answer: the next leaders commit it on both shards', () => {
    const sim = scripted(2);
    const { a0, b0 } = answeredEarlyThenCutOff(sim);
    sim.crashNow(0, a0.ordinal);
    sim.crashNow(1, b0.ordinal);
    sim.uncutAll();
    sim.runUntil(
      'new leaders in both shards',
      () => sim.leader(0) !== undefined && sim.leader(0) !== a0 && sim.leader(1) !== undefined && sim.leader(1) !== b0,
    );
    sim.runUntil(
      'both shards applied the commit',
      () =>
        sim.group(0).every((r) => !r.up || r.node.bank.balance(1) === 7) &&
        sim.group(1).every((r) => !r.up || r.node.bank.balance(11) === 13),
    );
    sim.restartReplicaNow(0, a0.ordinal);
    sim.restartReplicaNow(1, b0.ordinal);
    sim.finish();
  });

  /**
   * Parallel commits, the participant leader dies after its YES: the coordinator answered and
   * decided, but its DECISION never reached the participant leader, which crashes. The next
   * participant leader holds the transaction prepared (never aborts it on its own), asks the
   * coordinator, and applies the COMMIT.
   */
  it('parallel commits: the participant leader dies after its YES, before the decision reaches it: the next one applies the COMMIT', () => {
    const sim = scripted(2);
    sim.runUntil('leaders in both shards', () => sim.leader(0) !== undefined && sim.leader(1) !== undefined);
    const a0 = sim.leader(0)!;
    const b0 = sim.leader(1)!;
    sim.holdTxWhere((m) => m.fromShard === 0 && m.body?.$case === 'decision');
    const x = sim.addRequest('x', 1, 11, 3);
    sim.send(x, a0);
    sim.runUntil('x answered', () => x.outcome !== undefined);
    expect(x.outcome).toBe(Outcome.COMMITTED);
    sim.runUntil('the coordinator applied its decision', () => a0.node.bank.balance(1) === 7);
    sim.crashNow(1, b0.ordinal);
    expect(sim.dropHeldTx()).toBeGreaterThan(0);
    sim.runUntil('another leader of shard 1', () => sim.leader(1) !== undefined && sim.leader(1) !== b0);
    const readsBefore = sim.readsAnswered;
    sim.sendRead(11, sim.leader(1)!);
    sim.runUntil('the read answered', () => sim.readsAnswered === readsBefore + 1);
    sim.runUntil('the participant shard applied the commit', () =>
      sim.group(1).every((r) => !r.up || r.node.bank.balance(11) === 13),
    );
    sim.restartReplicaNow(1, b0.ordinal);
    sim.finish();
  });

  /**
   * Parallel commits, the participant's side: its leader is cut off from its followers, so its
   * PREPARE cannot be chosen, and it dies. No COMMITTED answer may go out before the
   * participant's PREPARE is chosen (else a read of the credited item on the next participant
   * leader, which has no pending credit to wait for, would miss an acknowledged transfer).
   */
  it("parallel commits: the participant leader's PREPARE is never chosen: nothing is answered until the next participant leader prepares", () => {
    const sim = scripted(2);
    sim.runUntil('leaders in both shards', () => sim.leader(0) !== undefined && sim.leader(1) !== undefined);
    const a0 = sim.leader(0)!;
    const b0 = sim.leader(1)!;
    sim.cut(1, b0.ordinal);
    // The first PREPARE reaches b0; the coordinator's re-asks wait until the next participant
    // leader has served a read.
    let prepares = 0;
    sim.holdTxWhere((m) => m.fromShard === 0 && m.body?.$case === 'prepare' && (prepares += 1) > 1);
    const x = sim.addRequest('x', 1, 11, 3);
    sim.send(x, a0);
    sim.runUntil("a0's PREPARE applied", () => a0.node.bank.inflightCount() === 1);
    sim.runFor(1000);
    expect(prepares).toBeGreaterThan(1);
    expect(x.outcome).toBeUndefined();
    sim.crashNow(1, b0.ordinal);
    sim.uncutAll();
    sim.runUntil('another leader of shard 1', () => sim.leader(1) !== undefined && sim.leader(1) !== b0);
    expect(sim.leader(1)!.node.bank.inflightCount()).toBe(0);
    const readsBefore = sim.readsAnswered;
    sim.sendRead(11, sim.leader(1)!);
    sim.runUntil('the read answered', () => sim.readsAnswered === readsBefore + 1);
    expect(x.outcome).toBeUndefined();
    sim.releaseTx();
    sim.runUntil('x answered', () => x.outcome !== undefined);
    expect(x.outcome).toBe(Outcome.COMMITTED);
    sim.restartReplicaNow(1, b0.ordinal);
    sim.finish();
  });

  /**
   * Parallel commits, a YES before our own PREPARE is chosen: the coordinator leader is cut off
   * with its PREPARE unchosen while the participant prepares and votes YES. Nothing may be
   * answered (the funds check has not run in any chosen state); the leader dies, the next one
   * presumes ABORT on the participant's inquiry, and the client's retry commits exactly once.
   */
  it('parallel commits: a YES arrives while the coordinator PREPARE is unchosen and its leader dies: no answer, and the retry commits once', () => {
    const sim = scripted(2);
    sim.runUntil('leaders in both shards', () => sim.leader(0) !== undefined && sim.leader(1) !== undefined);
    const a0 = sim.leader(0)!;
    const b0 = sim.leader(1)!;
    sim.cut(0, a0.ordinal);
    const x = sim.addRequest('x', 1, 11, 3);
    sim.send(x, a0);
    sim.runUntil('the participant prepared', () => b0.node.bank.inflightCount() === 1);
    sim.runFor(500);
    expect(x.outcome).toBeUndefined();
    sim.crashNow(0, a0.ordinal);
    sim.uncutAll();
    sim.runUntil('another leader of shard 0', () => sim.leader(0) !== undefined && sim.leader(0) !== a0);
    sim.runUntil('the participant learned the presumed ABORT', () =>
      sim.group(1).every((r) => r.node.bank.inflightCount() === 0),
    );
    expect(sim.group(1).map((r) => r.node.bank.balance(11))).toEqual([10, 10, 10]);
    sim.startClients();
    sim.runUntil('x answered', () => x.outcome !== undefined, 20_000);
    expect(x.outcome).toBe(Outcome.COMMITTED);
    sim.restartReplicaNow(0, a0.ordinal);
    sim.finish();
  });

  it('five replicas: a deposed leader that still reaches one follower serves no stale read', () => {
    const sim = scripted(1, 1, 5);
    sim.runUntil('a first leader', () => sim.leader(0) !== undefined);
    const old = sim.leader(0)!;
    const follower = (old.ordinal + 1) % 5;
    sim.cut(0, old.ordinal, follower);
    sim.runUntil('a leader on the majority side', () =>
      sim.group(0).some((r) => r !== old && r.ordinal !== follower && r.node.isReadyLeader),
    );
    const next = sim.group(0).find((r) => r !== old && r.node.isReadyLeader)!;
    const x = sim.addRequest('x', 1, 2, 3);
    sim.send(x, next);
    sim.runUntil('X committed on the majority side', () => x.outcome !== undefined);
    // The old leader has not noticed yet (its follower still acknowledges it): read X's item
    // there, strictly after X's COMMITTED reply.
    sim.runFor(5);
    expect(old.node.core.role).toBe('leader');
    sim.sendRead(1, old);
    sim.runFor(300);
    sim.finish();
  });

  it("an old leader's tail resurfaces with a cross-shard PREPARE of a request committed meanwhile by another attempt: it does not run again", () => {
    const sim = scripted(2);
    sim.runUntil('leaders in both shards', () => sim.leader(0) !== undefined && sim.leader(1) !== undefined);
    const a0 = sim.leader(0)!;
    const ballot = a0.node.core.leaderBallot;
    // Shard 1's votes and inquiries about a0's attempts are held: nobody presumes them aborted.
    sim.holdTxWhere((m) => {
      const body = m.body;
      const txid = body?.$case === 'vote' ? body.vote.txid : body?.$case === 'inquiry' ? body.inquiry.txid : undefined;
      return m.fromShard === 1 && txid !== undefined && txid.round === ballot.round && txid.ordinal === ballot.ordinal;
    });
    // W, an earlier attempt of a0's, stays prepared: it holds the coordinator watermark below
    // X's first txid, so only the session table can tell that X already ran.
    const w = sim.addRequest('w', 4, 12, 1);
    sim.send(w, a0);
    sim.runUntil('W prepared in shard 0', () => a0.node.bank.inflightCount() > 0);
    sim.cut(0, a0.ordinal);
    for (let i = 1; i <= 3; i += 1) sim.send(sim.addRequest(`f${i}`, 2 + i, 9, 1), a0);
    const x = sim.addRequest('x', 1, 11, 3);
    sim.send(x, a0);
    sim.runUntil('another leader in shard 0', () => sim.leader(0) !== undefined && sim.leader(0) !== a0);
    const a1 = sim.leader(0)!;
    sim.send(x, a1);
    sim.runUntil('X committed by a second attempt', () => x.outcome !== undefined);
    sim.uncutAll();
    sim.cut(0, a1.ordinal);
    sim.runUntil("a0's tail resurfaced: X's first PREPARE chosen", () => sim.repeated.has('x#1'), 20_000);
    expect(sim.releaseTx()).toBeGreaterThan(0);
    sim.runFor(1000);
    sim.finish();
  });

  /**
   * Issue 15's bug-1 shape, with its two guards: a0 leads shard 0, is cut from its followers
   * but reaches shard 1, proposes a PREPARE for X deep in its tail; shard 1 prepares and votes
   * YES (the vote is held); a1 is elected, shard 1's inquiry reaches it and it presumes X
   * aborted; shard 1 aborts. Then the cut moves to a1: a0's tail resurfaces and X's PREPARE is
   * chosen after the abort, and the held YES vote arrives. It must not prepare X again.
   */
  function lateCoordinatorPrepare(
    holdAcks: boolean,
    fillers: number,
    afterAbort: (sim: SimCluster, a1: ReturnType<SimCluster['replica']>) => void,
  ): SimCluster {
    const sim = scripted(2);
    sim.runUntil('leaders in both shards', () => sim.leader(0) !== undefined && sim.leader(1) !== undefined);
    const a0 = sim.leader(0)!;
    sim.cut(0, a0.ordinal);
    sim.holdTxWhere(
      (m) =>
        m.fromShard === 1 && m.toShard === 0 && (m.body?.$case === 'vote' || (holdAcks && m.body?.$case === 'ack')),
    );
    // Fillers first: X's PREPARE sits deeper in a0's tail than a1 will write slots.
    for (let i = 1; i <= fillers; i += 1) sim.send(sim.addRequest(`f${i}`, 2 + (i % 6), 9, 1), a0);
    const x = sim.addRequest('x', 1, 11, 3);
    sim.send(x, a0);
    sim.runUntil('shard 1 prepared X', () => (sim.leader(1)?.node.bank.inflightCount() ?? 0) > 0);
    sim.runUntil('another leader in shard 0', () => sim.leader(0) !== undefined && sim.leader(0) !== a0);
    const a1 = sim.leader(0)!;
    sim.runUntil(
      'shard 1 aborted X (presumed abort by a1)',
      () => sim.leader(1) !== undefined && sim.leader(1)!.node.bank.inflightCount() === 0,
      20_000,
    );
    afterAbort(sim, a1);
    sim.uncutAll();
    sim.cut(0, a1.ordinal);
    sim.runUntil("a0's tail resurfaced: X's PREPARE chosen", () => sim.slotOf(0, 'x', 1) !== undefined, 20_000);
    expect(sim.releaseTx()).toBeGreaterThan(0);
    sim.runFor(1000);
    return sim;
  }

  it('presumed abort leaves a tombstone: a PREPARE of that txid chosen later, then a late YES vote, commit nothing', () => {
    const sim = lateCoordinatorPrepare(true, 3, () => {});
    sim.finish();
  });

  it('a PREPARE below the coordinator watermark (its txid presumed aborted, acknowledged and forgotten) is refused', () => {
    const sim = lateCoordinatorPrepare(false, 7, (s, a1) => {
      // a1 coordinates a transfer of its own to the end, so the watermark passes X's txid and
      // the tombstone is acknowledged and collected.
      const y = s.addRequest('y', 2, 12, 1);
      s.send(y, a1);
      s.runUntil('Y committed', () => y.outcome !== undefined);
      s.runUntil("a1's records all finished", () => a1.node.bank.inflightCount() === 0, 20_000);
    });
    sim.finish();
  });

  it("a rebuilding replica hears a stale leader's answer to its probe: it votes only after the current leader's prefix", () => {
    // a leads and pauses (it keeps its beliefs); b is elected by b and c, and they choose X.
    // c's disk is lost. a wakes for a moment, cut off but for probes, still leading its old
    // ballot, and answers c's probe with its own last slot (below X's). b re-runs its election
    // for c (b and a: it qualifies) and recovers X in its prefix, but nothing of b's from X's
    // slot on reaches a or c. Had c taken a's stale answer for its target, it would vote with
    // the prefix it has, and once b crashes, a and c would fill X's slot with a no-op.
    const sim = scripted(1, 1, 3, { entriesPerMessageMax: 1 });
    sim.runUntil('a first leader', () => sim.leader(0) !== undefined);
    const a = sim.leader(0)!;
    const probes = (m: PaxosMessage) => m.body?.$case === 'probe' || m.body?.$case === 'probeReply';
    sim.dropPaxosWhere((m) => (m.from === a.ordinal || m.to === a.ordinal) && !probes(m));
    sim.pauseNow(0, a.ordinal);
    sim.runUntil('another leader', () => sim.leader(0) !== undefined);
    const b = sim.leader(0)!;
    const c = sim.group(0).find((r) => r !== a && r !== b)!;
    const x = sim.addRequest('x', 1, 2, 3);
    sim.send(x, b);
    sim.runUntil('X committed', () => x.outcome !== undefined);
    expect(x.outcome).toBe(Outcome.COMMITTED);
    const xSlot = sim.slotOf(0, 'x', 1)!;
    sim.loseDiskNow(0, c.ordinal);
    let staleAnswer = false;
    const withheld = (m: PaxosMessage) =>
      (m.body?.$case === 'probeReply' && m.to === c.ordinal && m.from !== a.ordinal) ||
      (m.from === b.ordinal && m.body?.$case === 'accept' && m.body.accept.entries.some((e) => e.slot >= xSlot));
    sim.dropPaxosWhere((m) => {
      if (m.from === a.ordinal && m.to === c.ordinal && m.body?.$case === 'probeReply' && m.body.probeReply.leader)
        staleAnswer = true;
      return ((m.from === a.ordinal || m.to === a.ordinal) && !probes(m)) || withheld(m);
    });
    sim.wakeNow(0, a.ordinal);
    sim.runUntil("a (still leading its old ballot) answered c's probe", () => staleAnswer);
    sim.pauseNow(0, a.ordinal);
    // a wakes for good and rejoins; c hears no other answer to its probes.
    sim.dropPaxosWhere((m) => withheld(m) || (m.body?.$case === 'probeReply' && m.to === c.ordinal));
    sim.wakeNow(0, a.ordinal);
    sim.runUntil('b re-elected by b and a', () => b.node.core.role === 'leader' && a.node.core.role === 'follower');
    sim.runFor(3000);
    expect(c.node.core.commitIndex).toBeLessThan(xSlot);
    expect(c.node.core.votingState).toBe('rebuilding');
    // b crashes: a and c hold nothing of b's from X's slot on, and must not choose without it.
    sim.crashNow(0, b.ordinal);
    sim.runFor(3000);
    expect(c.node.core.votingState).toBe('rebuilding');
    sim.dropPaxosWhere(undefined);
    sim.restartReplicaNow(0, b.ordinal);
    sim.runUntil('c rebuilt', () => c.node.core.votingState === 'voter', 20_000);
    sim.finish();
  });

  // Issue 15's bug 1 itself, on the code at 73bae90: once the tombstone is acknowledged and
  // collected, the coordinator watermark falls back below X's txid (nothing newer was ever
  // coordinated), the late PREPARE prepares X again and the held YES vote commits it while
  // shard 1 aborted: money destroyed, the client told COMMITTED. While KNOWN_BUGS marks it
  // unfixed this test asserts that the simulator still shows it; once fixed, set the flag to
  // false and the same run must pass every check.
  it(`bug 1: a collected tombstone must not let a late PREPARE of its txid commit${KNOWN_BUGS.collectedTombstone ? ' (known bug: asserts it still shows)' : ''}`, () => {
    const run = () => {
      const sim = lateCoordinatorPrepare(false, 7, (s, a1) => {
        s.runUntil('the tombstone acknowledged and collected', () => a1.node.bank.inflightCount() === 0, 20_000);
      });
      sim.finish();
    };
    if (KNOWN_BUGS.collectedTombstone) expect(run).toThrow(/item 11: balance 10 but committed transfers say 13/);
    else run();
  });
});
