// Issue 19 with real processes: a shard grows 3 -> 5 -> 3 while a transfer workload runs, with
// a SIGKILL during each change (the new learner, then the leader), driven through the
// Membership service one step at a time (node/local/membership-driver.ts). Afterwards the
// ledger audit holds (every committed transfer applied exactly once, money conserved, the
// replicas agree), no transfer failed beyond a retry, and the final configuration is the
// founding voters. Prints each step's duration and the throughput before and during changes.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Outcome } from '../../node/gen/shardbank/v1/bank.js';
import {
  addVoter,
  grpcMembershipCalls,
  leaderView,
  memberAt,
  removeVoter,
  type DriverContext,
  type StepTiming,
} from '../../node/local/membership-driver.js';
import { BankLedger } from '../support/bank-ledger.js';
import { ReplicaCluster, pollUntil } from '../support/replica-cluster.js';

const topology = { shards: 1, replicasPerShard: 3, itemsPerShard: 40, initialBalance: 1_000 };
const ITEMS = Array.from({ length: topology.itemsPerShard }, (_, i) => i + 1);
const CLIENTS = 4;

describe('online membership change with real processes (1 shard, 3 -> 5 -> 3)', () => {
  let cluster: ReplicaCluster;
  let context: DriverContext;
  const lines: string[] = [];

  beforeAll(async () => {
    cluster = await ReplicaCluster.start({ topology, extraArgs: ['--snapshot-every-slots', '200'] });
    await cluster.waitForLeaders();
    context = {
      cluster: cluster.cluster,
      shard: 0,
      addresses: cluster.replicas[0]!.map((r) => r.address),
      calls: grpcMembershipCalls(cluster.cluster, () => grpc.credentials.createInsecure()),
      log: (line) => lines.push(line),
    };
  }, 120_000);

  afterAll(async () => {
    context?.calls.close?.();
    await cluster?.stop();
    process.stdout.write(`${lines.join('\n')}\n`);
  });

  /** SIGKILLs the replica in `slot` once `when` holds, and starts it again (same data dir) a second later. */
  async function killDuring(name: string, when: () => Promise<number | undefined>): Promise<void> {
    const slot = await pollUntil(`the moment to kill (${name})`, when, 90_000, 50);
    lines.push(`SIGKILL ${name} (slot ${slot})`);
    await cluster.kill(0, slot);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    cluster.spawn(cluster.replicas[0]![slot]!);
  }

  const slotOfAddress = (address: string) => cluster.replicas[0]!.findIndex((r) => r.address === address);

  it('grows to 5 and shrinks to 3 under load, a SIGKILL in each change; every transfer is definite and the ledger audits', async () => {
    const ledger = new BankLedger(topology);
    let running = true;
    let committed = 0;
    const workers = Array.from({ length: CLIENTS }, async (_, worker) => {
      const clientId = `app/m${worker}`;
      for (let requestId = 1; running; requestId += 1) {
        const from = ITEMS[Math.floor(Math.random() * ITEMS.length)]!;
        const to = ITEMS[(ITEMS.indexOf(from) + 1 + Math.floor(Math.random() * (ITEMS.length - 1))) % ITEMS.length]!;
        const amount = 1 + Math.floor(Math.random() * 5);
        // Retried with the same id until definite: a failure here fails the test.
        const reply = await cluster.transfer(clientId, requestId, from, to, amount, 90_000);
        ledger.record({
          clientId,
          requestId,
          from,
          to,
          amount,
          outcome: reply.outcome,
          decisionIndex: reply.decisionIndex,
        });
        if (reply.outcome === Outcome.COMMITTED) committed += 1;
      }
    });
    const rate = async (ms: number) => {
      const before = committed;
      await new Promise((resolve) => setTimeout(resolve, ms));
      return ((committed - before) * 1000) / ms;
    };
    try {
      const steady = await rate(3_000);
      const timings: StepTiming[] = [];
      const during = async (change: () => Promise<StepTiming[]>) => {
        const before = committed;
        const started = Date.now();
        timings.push(...(await change()));
        return ((committed - before) * 1000) / Math.max(1, Date.now() - started);
      };

      // 3 -> 4: the new learner is SIGKILLed once it is a learner (it restarts on its data dir).
      const fourth = await cluster.addReplica(0);
      const grow1 = await during(() =>
        Promise.all([
          addVoter(context, fourth.address),
          killDuring('the new learner', async () => {
            const { view } = await leaderView(context);
            const member = memberAt(view, fourth.address);
            return member !== undefined && !member.voter ? fourth.ordinal : undefined;
          }),
        ]).then(([steps]) => steps),
      );
      // 4 -> 5: the leader is SIGKILLed once the learner is added.
      const fifth = await cluster.addReplica(0);
      const grow2 = await during(() =>
        Promise.all([
          addVoter(context, fifth.address),
          killDuring('the leader', async () => {
            const { address, view } = await leaderView(context);
            return memberAt(view, fifth.address) !== undefined ? slotOfAddress(address) : undefined;
          }),
        ]).then(([steps]) => steps),
      );
      const grown = (await leaderView(context)).view;
      expect(grown.members.filter((m) => m.voter).map((m) => m.id)).toEqual([0, 1, 2, 3, 4]);

      // 5 -> 4: the leader is SIGKILLed while the member at slot 4 is demoted and removed.
      const shrink1 = await during(() =>
        Promise.all([
          removeVoter(context, fifth.address),
          killDuring('the leader', async () => {
            const { address } = await leaderView(context);
            return slotOfAddress(address);
          }),
        ]).then(([steps]) => steps),
      );
      await cluster.kill(0, fifth.ordinal);
      // 4 -> 3: the member at slot 3, the leader handing over first if it is the one.
      const shrink2 = await during(() => removeVoter(context, fourth.address));
      await cluster.kill(0, fourth.ordinal);

      const final = (await leaderView(context)).view;
      expect(final.members.filter((m) => m.voter).map((m) => m.id)).toEqual([0, 1, 2]);
      expect(final.members.filter((m) => !m.voter)).toEqual([]);
      expect(final.nextMemberId).toBe(5);

      // Compare-and-set: a step naming an older configuration (a retry whose first attempt
      // landed) is refused and changes nothing; a malformed one is refused naming its field.
      const leader = await leaderView(context);
      const stale = await context.calls.change(leader.address, {
        cluster: cluster.cluster,
        shard: 0,
        expectedConfigurationSlot: grown.configurationSlot,
        change: { $case: 'addLearner', addLearner: { address: '127.0.0.1:9' } },
      });
      expect(stale.ok).toBe(false);
      expect(stale.error).toContain('expected_configuration_slot');
      await expect(
        context.calls.change(leader.address, {
          cluster: cluster.cluster,
          shard: 0,
          expectedConfigurationSlot: leader.view.configurationSlot,
          change: { $case: 'addLearner', addLearner: { address: 'nowhere' } },
        }),
      ).rejects.toThrow(/add_learner.address/);
      const unchanged = (await leaderView(context)).view;
      expect(unchanged.configurationSlot).toBe(final.configurationSlot);
      expect(unchanged.nextMemberId).toBe(5);
      const after = await rate(3_000);
      for (const timing of timings) lines.push(`step ${timing.step}: ${timing.ms} ms`);
      lines.push(
        `transfers/s: steady ${steady.toFixed(0)}, during 3->4 ${grow1.toFixed(0)}, 4->5 ${grow2.toFixed(0)}, ` +
          `5->4 ${shrink1.toFixed(0)}, 4->3 ${shrink2.toFixed(0)}, after ${after.toFixed(0)}`,
      );
    } finally {
      running = false;
      await Promise.all(workers);
    }

    // The audit: exactly what the ledger says, on a linearizable read and on every replica.
    expect(ledger.committed.length).toBeGreaterThan(0);
    const expected = ledger.expectedBalances().slice(1);
    const read = await cluster.readLinearizable(ITEMS, 90_000);
    expect(read).toEqual(expected);
    expect(read.reduce((a, b) => a + b, 0)).toBe(ITEMS.length * topology.initialBalance);
    for (const ordinal of [0, 1, 2]) {
      await pollUntil(
        `replica ${ordinal} to agree with the ledger`,
        async () =>
          JSON.stringify(await cluster.balances(0, ordinal, ITEMS).catch(() => [])) === JSON.stringify(expected),
        60_000,
      );
    }
  }, 400_000);
});
