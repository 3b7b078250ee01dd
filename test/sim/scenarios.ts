// Named simulation scenarios: a seed plus a scenario fully determine a run. `swarm` draws the
// cluster shape, the replica settings and every fault rate from the seed itself (swarm
// testing: each seed stresses a different mix, and some faults are off in each).
import {
  SimCluster,
  type SimFaults,
  type SimOptions,
  type SimResult,
  type SimSettings,
  type SimStorage,
} from './sim-cluster.js';
import { Prng } from './prng.js';

/** Moderate rates of every fault: the named scenarios start from these. */
export const BASE_FAULTS: SimFaults = {
  dropProbability: 0.05,
  duplicateProbability: 0.03,
  slowProbability: 0.02,
  slowDelayMsMax: 1200,
  crashProbabilityPerStep: 0.003,
  crashAfterSendProbability: 0.002,
  powerLossProbabilityPerStep: 0.0005,
  partitionProbabilityPerStep: 0.01,
  holdProbability: 0.5,
  pauseProbabilityPerStep: 0.001,
  pauseMsMax: 1200,
  tickDrift: 0.15,
  tickBunchProbability: 0.02,
  tickSkipProbability: 0.02,
  syncMsMax: 3,
  syncSpikeProbability: 0.01,
  replayProbability: 0.05,
  mismatchProbability: 0.05,
};

export const BASE_SETTINGS: SimSettings = {
  inflightSlotsMax: 8,
  snapshotEverySlots: 40,
  commandsPerSlotMax: 16,
  entriesPerMessageMax: 64,
  eagerAccepts: false,
  burstMax: 2,
};

/**
 * Known bugs of the code under test that the simulator finds but the default plan must not
 * fail on until they are fixed (see issue 15). Set to false once fixed.
 * - bug 6: a final INSUFFICIENT_FUNDS that a decided, answered cross-shard credit contradicts
 *   (npm run sim -- --scenario swarm --seed 111 --known-bugs none --trace shows it).
 * - bug 1: a presumed-abort tombstone, once acknowledged and collected, lets the coordinator
 *   watermark fall below its txid, so a late PREPARE of it prepares and commits again
 *   (test/sim/scripted.test.ts shows it deterministically; while true that test asserts the
 *   failure, once false it asserts a clean run).
 */
export const KNOWN_BUGS = { decidedCreditsIgnored: false, collectedTombstone: false };

export const SCENARIOS = [
  'single-shard',
  'cross-shard',
  'hot-items',
  'five-replicas',
  'paced',
  'eager-accepts',
  'coordinator-failover',
  'swarm',
  'first-start',
  'stormy',
  'storage',
  'reconfig',
] as const;

/**
 * The production storage under the simulator (scenario storage; drawn in swarm): DurableLog
 * over SimFileSystem with every disk fault. Small segments, so seeds roll over, preallocate
 * and delete segments after snapshots.
 */
export const STORAGE_FAULTS: SimStorage = {
  faults: {
    latencyMsMax: 3,
    spikeProbability: 0.01,
    ioErrorProbability: 0.002,
    noSpaceProbability: 0.001,
    lostWriteProbability: 0.01,
    misdirectedWriteProbability: 0.01,
  },
  bitFlipProbabilityPerStep: 0.002,
  segmentBytesMax: 4096,
  preallocateSegments: true,
};

/**
 * The default plan of `npm test` (test/sim/sim.test.ts) and of `npm run mutants`: scenario and
 * number of seeds (seeds 1..n). SHARDBANK_SIM_SEEDS scales it.
 */
export const DEFAULT_PLAN: readonly [string, number][] = [
  // First: about 3 s, and the storage mutants of npm run mutants fail here at once.
  ['storage', 60],
  ['single-shard', 400],
  ['cross-shard', 400],
  ['hot-items', 150],
  ['five-replicas', 150],
  ['paced', 100],
  ['eager-accepts', 80],
  ['coordinator-failover', 80],
  ['first-start', 150],
  ['reconfig', 60],
  ['swarm', 1000],
];

export function scenarioFor(name: string, seed: number): SimOptions {
  const base: SimOptions = {
    seed,
    scenario: name,
    topology: { shards: 1, replicasPerShard: 3, itemsPerShard: 20, initialBalance: 10 },
    clients: 3,
    requestsPerClient: 6,
    safetyMs: 2500,
    livenessMsMax: 30_000,
    crossShardRatio: 0,
    hotItems: 0,
    faults: BASE_FAULTS,
    settings: BASE_SETTINGS,
    knownBugDecidedCreditsIgnored: KNOWN_BUGS.decidedCreditsIgnored,
  };
  switch (name) {
    case 'single-shard':
      return base;
    case 'cross-shard':
      return {
        ...base,
        topology: { shards: 2, replicasPerShard: 3, itemsPerShard: 10, initialBalance: 10 },
        crossShardRatio: 0.7,
        settings: { ...BASE_SETTINGS, burstMax: 4 },
      };
    case 'hot-items':
      return {
        ...base,
        topology: { shards: 3, replicasPerShard: 3, itemsPerShard: 10, initialBalance: 5 },
        crossShardRatio: 0.6,
        hotItems: 4,
        clients: 4,
      };
    case 'paced':
      // Cross-shard load with leader pacing on: held batches, releases at ticks, crashes and
      // elections while a batch is held.
      return {
        ...base,
        topology: { shards: 2, replicasPerShard: 3, itemsPerShard: 10, initialBalance: 10 },
        crossShardRatio: 0.7,
        clients: 5,
        settings: { ...BASE_SETTINGS, pacing: { minWaiters: 2, targetCommands: 4 } },
      };
    case 'eager-accepts':
      // Every new slot to every follower at once, as before thrifty Accepts (still a supported setting).
      return {
        ...base,
        topology: { shards: 2, replicasPerShard: 3, itemsPerShard: 10, initialBalance: 10 },
        crossShardRatio: 0.7,
        settings: { ...BASE_SETTINGS, eagerAccepts: true },
      };
    case 'five-replicas':
      return {
        ...base,
        topology: { shards: 2, replicasPerShard: 5, itemsPerShard: 10, initialBalance: 10 },
        crossShardRatio: 0.5,
      };
    case 'coordinator-failover':
      // A coordinator shard's leader cut off from its own followers while it still reaches
      // the participant shard, with slots in flight that carry PREPAREs: its successor
      // presumes them aborted; the old tail can resurface in a later leader's recovery (after
      // clients retried its requests elsewhere), and old votes arrive late (the shape of
      // issue 15's bug 1).
      return {
        ...base,
        topology: { shards: 2, replicasPerShard: 3, itemsPerShard: 6, initialBalance: 20 },
        clients: 6,
        requestsPerClient: 10,
        safetyMs: 5000,
        crossShardRatio: 0.6,
        settings: { ...BASE_SETTINGS, inflightSlotsMax: 8, commandsPerSlotMax: 1, burstMax: 4 },
        faults: {
          ...BASE_FAULTS,
          duplicateProbability: 0.15,
          slowProbability: 0.15,
          slowDelayMsMax: 2000,
          crashProbabilityPerStep: 0.001,
          partitionProbabilityPerStep: 0.08,
          partitionKinds: ['isolate-in-shard', 'flip-flop', 'flip-flop'],
          partitionMsMax: 1500,
          holdProbability: 0.2,
          pauseProbabilityPerStep: 0.0005,
        },
      };
    case 'first-start':
      // The cluster's very first start as on Kubernetes: every replica empty and probing,
      // started up to 3 s apart, with slow messages (connections still being set up) so a late
      // replica's probe can be answered by a peer that already decided on a first start and
      // campaigned. Crashes wait until a shard's replicas all vote (see SimOptions.firstStart).
      return {
        ...base,
        topology: { shards: 2, replicasPerShard: 3, itemsPerShard: 10, initialBalance: 10 },
        crossShardRatio: 0.5,
        safetyMs: 6000,
        firstStart: { startMsMax: 3000 },
        faults: { ...BASE_FAULTS, slowProbability: 0.15, slowDelayMsMax: 1500, diskLossProbabilityPerStep: 0.002 },
      };
    case 'reconfig':
      // Online membership changes (docs/ARCHITECTURE.md, "Membership"): each shard goes 3 -> 5
      // -> 3 voters one step at a time while clients transfer (half of them across shards),
      // under every fault: crashes at any instant (of the leader, of the new member while it
      // catches up), partitions, pauses, power loss, the leader being the one removed (it
      // hands over first), and voters whose disk is lost for good, replaced by new members.
      return {
        ...base,
        topology: { shards: 2, replicasPerShard: 3, itemsPerShard: 10, initialBalance: 10 },
        clients: 4,
        requestsPerClient: 12,
        safetyMs: 8000,
        livenessMsMax: 40_000,
        crossShardRatio: 0.5,
        settings: { ...BASE_SETTINGS, snapshotEverySlots: 24 },
        reconfig: { sparesPerShard: 6, stepProbability: 0.15, retireProbabilityPerStep: 0.0008 },
      };
    case 'swarm':
      return swarm(seed);
    case 'stormy':
      // Heavier faults for soak runs (npm run sim -- --scenario stormy --seeds N).
      return {
        ...base,
        topology: { shards: 3, replicasPerShard: 3, itemsPerShard: 8, initialBalance: 6 },
        clients: 5,
        requestsPerClient: 10,
        safetyMs: 6000,
        livenessMsMax: 40_000,
        crossShardRatio: 0.7,
        hotItems: 6,
        faults: {
          ...BASE_FAULTS,
          dropProbability: 0.2,
          duplicateProbability: 0.1,
          slowProbability: 0.05,
          crashProbabilityPerStep: 0.01,
          crashAfterSendProbability: 0.005,
          powerLossProbabilityPerStep: 0.002,
          partitionProbabilityPerStep: 0.03,
          pauseProbabilityPerStep: 0.004,
        },
      };
    case 'storage':
      return {
        ...base,
        topology: { ...base.topology, shards: 2 },
        clients: 4,
        requestsPerClient: 10,
        safetyMs: 4000,
        crossShardRatio: 0.4,
        faults: { ...BASE_FAULTS, crashAfterSendProbability: 0.02 },
        settings: { ...BASE_SETTINGS, snapshotEverySlots: 16 },
        storage: { ...STORAGE_FAULTS, preallocateSegments: seed % 2 === 0 },
      };
    default:
      throw new Error(`scenario: unknown scenario ${JSON.stringify(name)} (one of ${SCENARIOS.join(', ')})`);
  }
}

/** Swarm testing: shape, settings and fault rates drawn from the seed (own stream, so it never shifts the run's draws). */
function swarm(seed: number): SimOptions {
  const rng = new Prng((seed * 2654435761 + 0x51f15e) >>> 0);
  const rate = (max: number) => (rng.chance(0.25) ? 0 : rng.next() * max);
  const replicasPerShard = rng.pick([1, 3, 3, 3, 5, 5, 7]);
  const shards = rng.int(1, replicasPerShard >= 7 ? 3 : replicasPerShard >= 5 ? 4 : 5);
  const faults: SimFaults = {
    dropProbability: rate(0.2),
    duplicateProbability: rate(0.15),
    slowProbability: rate(0.08),
    slowDelayMsMax: rng.pick([200, 800, 2000]),
    crashProbabilityPerStep: rate(0.01),
    crashAfterSendProbability: rate(0.01),
    powerLossProbabilityPerStep: rate(0.003),
    partitionProbabilityPerStep: rate(0.04),
    holdProbability: rng.next(),
    pauseProbabilityPerStep: rate(0.005),
    pauseMsMax: rng.pick([200, 1000, 2500]),
    tickDrift: rng.next() * 0.4,
    tickBunchProbability: rate(0.05),
    tickSkipProbability: rate(0.05),
    syncMsMax: rng.pick([0.5, 3, 10]),
    syncSpikeProbability: rate(0.05),
    replayProbability: rate(0.1),
    mismatchProbability: rate(0.1),
  };
  const settings: SimSettings = {
    inflightSlotsMax: rng.pick([1, 1, 2, 4, 8]),
    snapshotEverySlots: rng.pick([2, 5, 16, 64, 4096]),
    commandsPerSlotMax: rng.pick([1, 2, 16, 4096]),
    entriesPerMessageMax: rng.pick([1, 4, 64, 256]),
    eagerAccepts: rng.chance(0.2),
    burstMax: rng.pick([1, 2, 4, 16]),
    ...(rng.chance(0.2) ? { pacing: { minWaiters: rng.int(1, 4), targetCommands: rng.int(2, 9) } } : {}),
  };
  const options: SimOptions = {
    seed,
    scenario: 'swarm',
    topology: {
      shards,
      replicasPerShard,
      itemsPerShard: rng.pick([4, 8, 20]),
      initialBalance: rng.pick([3, 6, 10, 50]),
    },
    clients: rng.int(2, 9),
    requestsPerClient: rng.int(4, 16),
    safetyMs: rng.int(2000, 6000),
    livenessMsMax: 40_000,
    crossShardRatio: shards > 1 ? rng.next() : 0,
    hotItems: rng.chance(0.3) ? rng.int(2, 8) : 0,
    // Drawn last, so the draws above stay what they were before disk loss existed.
    faults: { ...faults, diskLossProbabilityPerStep: rng.chance(0.5) ? rng.next() * 0.002 : 0 },
    settings,
    knownBugDecidedCreditsIgnored: KNOWN_BUGS.decidedCreditsIgnored,
    // Drawn last too: one seed in 16 runs the production DurableLog over a faulty simulated disk
    // (about twice as slow as the in-memory model; scenario storage runs it on every seed).
    ...(rng.chance(1 / 16)
      ? {
          storage: {
            faults: {
              latencyMsMax: rng.pick([0.5, 3, 10]),
              spikeProbability: rate(0.05),
              ioErrorProbability: rate(0.005),
              noSpaceProbability: rate(0.003),
              lostWriteProbability: rate(0.03),
              misdirectedWriteProbability: rate(0.03),
            },
            bitFlipProbabilityPerStep: rate(0.005),
            segmentBytesMax: rng.pick([4096, 16 * 1024, 256 * 1024]),
            preallocateSegments: rng.chance(0.5),
          },
        }
      : {}),
  };
  // Drawn last as well: one in-memory seed of 3 or 5 replicas in 8 changes its membership
  // online (as scenario reconfig does on every seed).
  if (options.storage === undefined && replicasPerShard >= 3 && replicasPerShard <= 5 && rng.chance(1 / 8))
    options.reconfig = { sparesPerShard: 6, stepProbability: 0.15, retireProbabilityPerStep: 0.0008 };
  return options;
}

/** The drawn shape, settings and fault rates of a run, printed with a failure. */
export function describeOptions(options: SimOptions): string {
  const { topology: t, settings: s, faults: f } = options;
  const rates = Object.entries(f)
    .map(
      ([key, value]) =>
        `${key}=${typeof value !== 'number' ? String(value) : Number.isInteger(value) ? value : value.toFixed(4)}`,
    )
    .join(' ');
  return (
    `${t.shards} shard(s) x ${t.replicasPerShard} replicas, ${t.itemsPerShard} items/shard at ${t.initialBalance}; ` +
    `${options.clients} clients x ${options.requestsPerClient} requests, cross ${options.crossShardRatio.toFixed(2)}, hot ${options.hotItems}, safety ${options.safetyMs} ms; ` +
    `inflightSlotsMax=${s.inflightSlotsMax} snapshotEverySlots=${s.snapshotEverySlots} commandsPerSlotMax=${s.commandsPerSlotMax} entriesPerMessageMax=${s.entriesPerMessageMax} ` +
    `eagerAccepts=${s.eagerAccepts} burstMax=${s.burstMax} pacing=${s.pacing ? `${s.pacing.minWaiters}/${s.pacing.targetCommands}` : 'off'}${options.earlyAfterPersist ? ' earlyAfterPersist' : ''}${options.firstStart ? ` firstStart=${options.firstStart.startMsMax}ms` : ''}${options.reconfig ? ` reconfig=${JSON.stringify(options.reconfig)}` : ''}; ${rates}` +
    (options.storage
      ? `; storage: DurableLog over SimFileSystem ${JSON.stringify(options.storage)}`
      : '; storage: in-memory disk model')
  );
}

export function replayCommand(options: SimOptions): string {
  return `npm run sim -- --scenario ${options.scenario ?? '?'} --seed ${options.seed}${options.earlyAfterPersist ? ' --early-after-persist' : ''}${options.knownBugDecidedCreditsIgnored ? '' : ' --known-bugs none'} --trace`;
}

/** One seed. Runs under SimOptions.storage are asynchronous (the real DurableLog's promises); the rest stay synchronous. */
export function runSeed(options: SimOptions): SimResult | Promise<SimResult> {
  const cluster = new SimCluster(options);
  return options.storage ? cluster.runAsync() : cluster.run();
}
