// Named simulation scenarios: a seed plus a scenario fully determine a run.
import { SimCluster, type SimOptions, type SimResult } from './sim-cluster.js';

export function scenarioFor(name: string, seed: number): SimOptions {
  const base: SimOptions = {
    seed,
    topology: { shards: 1, replicasPerShard: 3, itemsPerShard: 20, initialBalance: 10 },
    clients: 3,
    requestsPerClient: 6,
    safetyMs: 2500,
    livenessMsMax: 20_000,
    dropProbability: 0.05,
    duplicateProbability: 0.03,
    crashProbabilityPerTick: 0.004,
    partitionProbabilityPerTick: 0.01,
    crossShardRatio: 0,
    hotItems: 0,
  };
  switch (name) {
    case 'single-shard':
      return base;
    case 'cross-shard':
      return { ...base, topology: { shards: 2, replicasPerShard: 3, itemsPerShard: 10, initialBalance: 10 }, crossShardRatio: 0.7, crashProbabilityPerTick: 0.003 };
    case 'hot-items':
      return { ...base, topology: { shards: 3, replicasPerShard: 3, itemsPerShard: 10, initialBalance: 5 }, crossShardRatio: 0.6, hotItems: 4, clients: 4 };
    case 'paced':
      // Cross-shard load with leader pacing on: held batches, releases at ticks, crashes and
      // elections while a batch is held.
      return { ...base, topology: { shards: 2, replicasPerShard: 3, itemsPerShard: 10, initialBalance: 10 }, crossShardRatio: 0.7, clients: 5, pacing: { minWaiters: 2, targetCommands: 4 } };
    case 'eager-accepts':
      // Every new slot to every follower at once, as before thrifty Accepts (still a supported setting).
      return { ...base, topology: { shards: 2, replicasPerShard: 3, itemsPerShard: 10, initialBalance: 10 }, crossShardRatio: 0.7, eagerAccepts: true };
    case 'five-replicas':
      return { ...base, topology: { shards: 2, replicasPerShard: 5, itemsPerShard: 10, initialBalance: 10 }, crossShardRatio: 0.5 };
    case 'stormy':
      // Heavier faults for soak runs (npm run sim -- --scenario stormy --seeds N).
      return {
        ...base,
        topology: { shards: 3, replicasPerShard: 3, itemsPerShard: 8, initialBalance: 6 },
        clients: 5,
        requestsPerClient: 10,
        safetyMs: 6000,
        livenessMsMax: 40_000,
        dropProbability: 0.2,
        duplicateProbability: 0.1,
        crashProbabilityPerTick: 0.01,
        partitionProbabilityPerTick: 0.03,
        crossShardRatio: 0.7,
        hotItems: 6,
      };
    default:
      throw new Error(`unknown scenario ${name}`);
  }
}

export function runSeed(options: SimOptions): SimResult {
  return new SimCluster(options).run();
}
