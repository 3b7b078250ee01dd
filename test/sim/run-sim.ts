// Runs the deterministic simulator over many seeds (the heavy run, behind a flag of its own):
//   npm run sim -- --seeds 5000 [--first 1] [--shards 3] [--seed N to replay one]
import { parseArgs } from 'node:util';
import { runSeed, scenarioFor } from './scenarios.js';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '1000' },
    first: { type: 'string', default: '1' },
    seed: { type: 'string' },
    scenario: { type: 'string', default: 'cross-shard' },
  },
});
const seeds = values.seed ? [Number(values.seed)] : Array.from({ length: Number(values.seeds) }, (_, i) => Number(values.first) + i);
let failures = 0;
const started = Date.now();
for (const seed of seeds) {
  try {
    const result = runSeed(scenarioFor(values.scenario!, seed));
    if (values.seed) console.log(JSON.stringify(result));
  } catch (error) {
    failures += 1;
    console.error(String(error instanceof Error ? error.stack : error));
    process.exitCode = 2;
  }
}
console.log(`${seeds.length - failures} passed, ${failures} failed (${((Date.now() - started) / 1000).toFixed(1)} s)`);
