// Exactly-once sessions through a real ShardNode leader (issue 15, bug 4): OpenSession goes
// through the log once and is answered from applied state after; a request of a session the
// shard has forgotten is refused, never run, however many clients came since.
import { describe, expect, it } from 'vitest';
import { SESSION_LIMITS } from '../../node/bank/session-table.js';
import { Outcome } from '../../node/gen/shardbank/v1/bank.js';
import { decodeCommandBatch } from '../../node/shard/command-codec.js';
import { ShardNode, DEFAULT_TIMING, type ClientReply, type ShardReady } from '../../node/shard/shard-node.js';
import { instantDriver } from '../support/instant-driver.js';

const topology = { shards: 1, replicasPerShard: 1, itemsPerShard: 100, initialBalance: 1_000_000 };

function leader(): { node: ShardNode; opens: () => number } {
  let opens = 0;
  const node = new ShardNode({
    topology,
    shard: 0,
    ordinal: 0,
    paxos: {
      electionTimeoutTicksMin: 2,
      electionTimeoutTicksMax: 3,
      heartbeatTicks: 1,
      retransmitTicks: 4,
      inflightSlotsMax: 1,
      entriesPerMessageMax: 64,
    },
    timing: DEFAULT_TIMING,
    commandsPerSlotMax: 4096,
    snapshotEverySlots: 3,
    random: () => 0.5,
    onApply: (_slot, value) => {
      if (value.length > 0) opens += decodeCommandBatch(value).filter((c) => c.body?.$case === 'openSession').length;
    },
  });
  for (let tick = 0; tick < 50 && !node.isReadyLeader; tick += 1) {
    node.tick();
    drain(node);
  }
  expect(node.isReadyLeader).toBe(true);
  return { node, opens: () => opens };
}

/** Carries out Ready passes through the shared driver with instant durable storage. */
function drain(node: ShardNode): ClientReply[] {
  const replies: ClientReply[] = [];
  const driver = instantDriver<ShardReady>(node, { reply: (reply) => replies.push(reply) });
  for (let round = 0; round < 50; round += 1) {
    if (!driver.pass() && !node.hasQueuedWork()) break;
  }
  return replies;
}

const transfer = (clientId: string, sessionEpoch: number, requestId: number) => ({
  clientId,
  requestId,
  from: 1,
  to: 2,
  amount: 1,
  acknowledgedBelow: 0,
  sessionEpoch,
});

describe('sessions through a ShardNode leader', () => {
  it('OpenSession is logged once, answered from applied state after; a transfer without an epoch is refused', () => {
    const { node, opens } = leader();
    node.submitOpenSession('c', 1);
    node.submitOpenSession('c', 2);
    const [a, b] = drain(node);
    expect(a).toMatchObject({ token: 1, kind: 'session' });
    expect(b).toMatchObject({ token: 2, kind: 'session', epoch: (a as { epoch: number }).epoch });
    node.submitOpenSession('c', 3);
    expect(drain(node)).toEqual([
      expect.objectContaining({ token: 3, kind: 'session', epoch: (a as { epoch: number }).epoch }),
    ]);
    expect(opens()).toBe(1);
    node.submitTransfer(transfer('c', 0, 1), 4);
    expect(drain(node)).toEqual([
      expect.objectContaining({
        token: 4,
        kind: 'error',
        code: 'expired',
        message: expect.stringMatching(/^session_epoch: client c must open a session/),
      }),
    ]);
    expect(node.bank.balance(1)).toBe(1_000_000);
  });

  it('a retry of a forgotten session is refused and never runs again, after more than sessionsMax other clients', () => {
    const { node } = leader();
    node.submitOpenSession('victim', 1);
    const victim = (drain(node)[0] as { epoch: number }).epoch;
    node.submitTransfer(transfer('victim', victim, 1), 2);
    expect(drain(node)).toEqual([expect.objectContaining({ kind: 'transfer', outcome: Outcome.COMMITTED })]);
    // More clients than the table keeps, each opening and transferring once, in big slots;
    // snapshots are taken all along (every 3 slots).
    const others = SESSION_LIMITS.sessionsMax + 500;
    let token = 10;
    for (let start = 0; start < others; start += 2000) {
      const clients = Array.from({ length: Math.min(2000, others - start) }, (_, i) => `other-${start + i}`);
      for (const clientId of clients) node.submitOpenSession(clientId, token++);
      const epochs = new Map<string, number>();
      const replies = drain(node);
      clients.forEach((clientId, i) => epochs.set(clientId, (replies[i] as { epoch: number }).epoch));
      for (const clientId of clients) node.submitTransfer(transfer(clientId, epochs.get(clientId)!, 1), token++);
      expect(drain(node).every((reply) => reply.kind === 'transfer' && reply.outcome === Outcome.COMMITTED)).toBe(true);
    }
    const credited = node.bank.balance(2);
    expect(credited).toBe(1_000_000 + 1 + others);
    // The lost-reply retry of the victim's request 1: refused on arrival...
    node.submitTransfer(transfer('victim', victim, 1), 1_000_001);
    expect(drain(node)).toEqual([
      expect.objectContaining({ kind: 'error', code: 'expired', message: expect.stringContaining('session expired') }),
    ]);
    // ...and the victim's new session does not make the old epoch valid again.
    node.submitOpenSession('victim', 1_000_002);
    const again = (drain(node)[0] as { epoch: number }).epoch;
    expect(again).toBeGreaterThan(victim);
    node.submitTransfer(transfer('victim', victim, 1), 1_000_003);
    expect(drain(node)).toEqual([expect.objectContaining({ kind: 'error', code: 'expired' })]);
    expect(node.bank.balance(2)).toBe(credited);
  });

  it('a transfer in flight under one epoch and its retry under another are not joined', () => {
    const { node } = leader();
    node.submitOpenSession('c', 1);
    const epoch = (drain(node)[0] as { epoch: number }).epoch;
    node.submitTransfer(transfer('c', epoch, 1), 2);
    node.submitTransfer(transfer('c', epoch + 1, 1), 3);
    const replies = drain(node);
    expect(replies.find((r) => r.token === 2)).toMatchObject({ kind: 'transfer', outcome: Outcome.COMMITTED });
    expect(replies.find((r) => r.token === 3)).toMatchObject({
      kind: 'error',
      code: 'unavailable',
      message: expect.stringContaining(`in flight under session epoch ${epoch}`),
    });
    expect(node.bank.balance(2)).toBe(1_000_001);
  });
});
