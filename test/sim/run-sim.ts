// Runs the deterministic simulator over many seeds (the heavy runs, behind flags):
//   npm run sim -- --seeds 100000                 swarm: shape, settings and faults drawn per seed
//   npm run sim -- --scenario S --seeds N [--first F]
//   npm run sim -- --scenario S --seed N --trace  replay one seed, one line per event
//   npm run sim -- --plan                         the default plan of npm test
//   --early-after-persist                         the driver as node/replica/replica.ts had it at 73bae90
//   --fail-fast                                   stop at the first failing seed
//   --known-bugs none                             also fail on the known bugs listed in scenarios.ts KNOWN_BUGS
// Exit code: 0 all passed; 3 safety, 4 invariant, 5 liveness (the first failure's kind), 2 other.
import { parseArgs } from 'node:util';
import { DEFAULT_PLAN, describeOptions, replayCommand, runSeed, scenarioFor } from './scenarios.js';
import { SimFailure } from './sim-cluster.js';

const EXIT_CODES: Record<SimFailure['kind'], number> = { safety: 3, invariant: 4, liveness: 5 };

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '1000' },
    first: { type: 'string', default: '1' },
    seed: { type: 'string' },
    scenario: { type: 'string', default: 'swarm' },
    plan: { type: 'boolean', default: false },
    trace: { type: 'boolean', default: false },
    'early-after-persist': { type: 'boolean', default: false },
    'fail-fast': { type: 'boolean', default: false },
    /** 'none': check everything, also what the known bugs of scenarios.ts KNOWN_BUGS break. */
    'known-bugs': { type: 'string', default: 'skip' },
  },
});

function seedNumber(text: string, field: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new Error(`--${field}: expected a non-negative integer, got ${JSON.stringify(text)}`);
  return n;
}

const runs: [string, number][] = [];
if (values.plan) {
  for (const [scenario, n] of DEFAULT_PLAN) for (let seed = 1; seed <= n; seed += 1) runs.push([scenario, seed]);
} else if (values.seed !== undefined) {
  runs.push([values.scenario!, seedNumber(values.seed, 'seed')]);
} else {
  const first = seedNumber(values.first!, 'first');
  for (let i = 0; i < seedNumber(values.seeds!, 'seeds'); i += 1) runs.push([values.scenario!, first + i]);
}
let failures = 0;
const started = Date.now();
const totals: Record<string, number> = {};
for (const [index, [scenario, seed]] of runs.entries()) {
  const options = { ...scenarioFor(scenario, seed), earlyAfterPersist: values['early-after-persist'] };
  if (values['known-bugs'] === 'none') {
    options.knownBugDecidedCreditsIgnored = false;
  } else if (values['known-bugs'] !== 'skip')
    throw new Error(`--known-bugs: expected skip or none, got ${JSON.stringify(values['known-bugs'])}`);
  if (values.trace) options.trace = (line: string) => console.log(line);
  try {
    const result = await runSeed(options);
    for (const [key, value] of Object.entries(result)) if (key !== 'seed') totals[key] = (totals[key] ?? 0) + value;
    if (runs.length === 1) console.log(JSON.stringify(result));
  } catch (error) {
    failures += 1;
    console.error(
      `${String(error instanceof Error ? error.message : error)}\n  replay: ${replayCommand(options)}\n  settings: ${describeOptions(options)}`,
    );
    if (values.trace && error instanceof Error && !error.message.includes('] ')) console.error(error.stack);
    // The exit code says which kind of failure came first: 3 safety, 4 invariant, 5 liveness, 2 other.
    if (process.exitCode === undefined) process.exitCode = error instanceof SimFailure ? EXIT_CODES[error.kind] : 2;
    if (values['fail-fast']) break;
  }
  if (runs.length > 1 && (index + 1) % 10000 === 0)
    console.log(`... ${index + 1} runs, ${failures} failed, ${((Date.now() - started) / 1000).toFixed(0)} s`);
}
const seconds = (Date.now() - started) / 1000;
console.log(`${runs.length - failures} passed, ${failures} failed (${seconds.toFixed(1)} s)`);
if (runs.length > 1)
  console.log(
    `totals: ${Object.entries(totals)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}`,
  );
