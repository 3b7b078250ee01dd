// Leader pacing (PacingConfig): with many clients waiting, a short queue is held until it
// reaches the target or is released; with few waiting, nothing is held.
import { describe, expect, it } from 'vitest';
import { ShardNode, DEFAULT_TIMING, type PacingConfig, type ShardReady } from '../../node/shard/shard-node.js';
import { decodeCommandBatch } from '../../node/shard/command-codec.js';
import { instantDriver } from '../support/instant-driver.js';

const topology = { shards: 1, replicasPerShard: 1, itemsPerShard: 100, initialBalance: 10 };

const proposedBy = new WeakMap<ShardNode, number[]>();

function leader(pacing: PacingConfig | undefined): { node: ShardNode; proposed: number[] } {
  const proposed: number[] = [];
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
    commandsPerSlotMax: 1024,
    snapshotEverySlots: 1_000_000,
    random: () => 0.5,
    ...(pacing ? { pacing } : {}),
    onApply: (_slot, value) => {
      if (value.length > 0) proposed.push(decodeCommandBatch(value).length);
    },
  });
  for (let tick = 0; tick < 50 && !node.isReadyLeader; tick += 1) {
    node.tick();
    drain(node);
  }
  expect(node.isReadyLeader).toBe(true);
  proposed.length = 0;
  proposedBy.set(node, proposed);
  return { node, proposed };
}

/** Carries out Ready passes as a driver would, persisting at once. */
function drain(node: ShardNode): ShardReady[] {
  const readies: ShardReady[] = [];
  const driver = instantDriver<ShardReady>(node, { rest: (ready) => readies.push(ready) });
  for (let round = 0; round < 20; round += 1) {
    if (!driver.pass() && !node.hasQueuedWork()) break;
  }
  return readies;
}

/** Opens the clients' sessions first (their slots are not counted), then submits one transfer each. */
function submit(node: ShardNode, count: number, firstToken: number): void {
  const epochs: number[] = [];
  for (let i = 0; i < count; i += 1) node.submitOpenSession(`c${firstToken + i}`, -1 - i);
  for (const ready of drain(node))
    for (const reply of ready.replies) if (reply.kind === 'session') epochs[-1 - reply.token] = reply.epoch;
  expect(epochs.filter((epoch) => epoch > 0)).toHaveLength(count);
  proposedBy.get(node)!.length = 0;
  for (let i = 0; i < count; i += 1) {
    node.submitTransfer(
      {
        clientId: `c${firstToken + i}`,
        requestId: 1,
        from: 1 + i,
        to: 50 + i,
        amount: 1,
        acknowledgedBelow: 0,
        sessionEpoch: epochs[i]!,
      },
      firstToken + i,
    );
  }
}

describe('leader pacing', () => {
  it('holds a short queue while many clients wait, then proposes it in one slot when released', () => {
    const { node, proposed } = leader({ minWaiters: 4, targetCommands: 10 });
    submit(node, 6, 1);
    const replies = drain(node).flatMap((ready) => ready.replies);
    expect(node.proposalsHeld).toBe(true);
    expect(node.counters.pacingHolds).toBe(1);
    expect(proposed).toEqual([]);
    expect(replies).toEqual([]);
    node.releaseHeldProposals();
    const after = drain(node).flatMap((ready) => ready.replies);
    expect(proposed).toEqual([6]);
    expect(after.map((reply) => reply.kind)).toEqual(Array(6).fill('transfer'));
    expect(node.proposalsHeld).toBe(false);
  });

  it('proposes at once when the queue reaches the target', () => {
    const { node, proposed } = leader({ minWaiters: 4, targetCommands: 10 });
    submit(node, 10, 1);
    drain(node);
    expect(proposed).toEqual([10]);
    expect(node.proposalsHeld).toBe(false);
  });

  it('never holds with fewer waiting clients than minWaiters', () => {
    const { node, proposed } = leader({ minWaiters: 4, targetCommands: 10 });
    submit(node, 3, 1);
    drain(node);
    expect(proposed).toEqual([3]);
  });

  it('a tick releases a held queue even if the driver never does', () => {
    const { node, proposed } = leader({ minWaiters: 4, targetCommands: 10 });
    submit(node, 5, 1);
    drain(node);
    expect(proposed).toEqual([]);
    node.tick();
    drain(node);
    expect(proposed).toEqual([5]);
  });

  it('without pacing every Ready pass proposes what is queued', () => {
    const { node, proposed } = leader(undefined);
    submit(node, 6, 1);
    drain(node);
    expect(proposed).toEqual([6]);
  });
});
