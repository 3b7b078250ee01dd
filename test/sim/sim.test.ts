// Deterministic simulation in the default test run: 500 single-shard seeds and 1,050
// multi-shard (cross-shard) seeds, 150 of them with leader pacing and 100 with eager
// (non-thrifty) Accepts.
// Heavier runs: SHARDBANK_SIM_SEEDS=5000 npm test -- test/sim, or `npm run sim -- --seeds 20000`.
import { describe, expect, it } from 'vitest';
import { runSeed, scenarioFor } from './scenarios.js';

const scale = Number(process.env.SHARDBANK_SIM_SEEDS ?? '0') / 1550 || 1;
const plan: [string, number][] = [
  ['single-shard', Math.round(500 * scale)],
  ['cross-shard', Math.round(500 * scale)],
  ['hot-items', Math.round(200 * scale)],
  ['five-replicas', Math.round(100 * scale)],
  ['paced', Math.round(150 * scale)],
  ['eager-accepts', Math.round(100 * scale)],
];

describe('deterministic simulation', () => {
  for (const [scenario, seeds] of plan) {
    it(`${scenario}: ${seeds} seeds with loss, duplication, reordering, partitions, crashes, linearizable reads`, () => {
      const failures: string[] = [];
      let committed = 0;
      let crashes = 0;
      let elections = 0;
      let readsChecked = 0;
      let holds = 0;
      let quickFollowerChanges = 0;
      for (let seed = 1; seed <= seeds; seed += 1) {
        try {
          const result = runSeed(scenarioFor(scenario, seed));
          committed += result.committed;
          crashes += result.crashes;
          elections += result.elections;
          readsChecked += result.readsChecked;
          holds += result.holds;
          quickFollowerChanges += result.quickFollowerChanges;
        } catch (error) {
          failures.push(`${String(error instanceof Error ? error.message : error)} (replay: npm run sim -- --scenario ${scenario} --seed ${seed})`);
        }
      }
      expect(failures).toEqual([]);
      // The runs must actually exercise the protocol, not pass vacuously.
      expect(committed).toBeGreaterThan(seeds * 5);
      expect(crashes).toBeGreaterThan(seeds / 4);
      expect(elections).toBeGreaterThan(seeds);
      expect(readsChecked).toBeGreaterThan(seeds);
      // Pacing must really hold batches in its scenario, and never elsewhere.
      if (scenarioFor(scenario, 1).pacing) expect(holds).toBeGreaterThan(seeds);
      else expect(holds).toBe(0);
      // Thrifty Accepts' fallback (a deferred follower replaces a silent quick one) must run
      // under these faults, and never when every follower gets every slot at once.
      if (scenarioFor(scenario, 1).eagerAccepts) expect(quickFollowerChanges).toBe(0);
      else expect(quickFollowerChanges).toBeGreaterThan(seeds / 10);
    }, 600_000);
  }
});
