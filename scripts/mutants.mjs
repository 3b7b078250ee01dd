#!/usr/bin/env node
// Mutation testing of the safety-relevant code: `npm run mutants`.
//
// Every entry of scripts/mutants.json is one exact, one-line edit of the product code (a
// known way to break a safety rule). Each is applied alone to a scratch copy of the tree
// (the worktree itself is never touched, so Ctrl-C leaves nothing behind), type-checked, and
// run against the default simulator plan (`vitest run test/sim`, stopping at the first
// failing seed) and the unit tests the entry names. A mutation is caught when those tests
// fail; the run exits non-zero if any mutation is missed or no longer applies.
//
//   npm run mutants                       every entry
//   npm run mutants -- --only a,b         some entries
//   npm run mutants -- --list             check that every entry applies; run nothing
//   npm run mutants -- --sim-rev REV      test/sim taken from git revision REV (e.g. to measure an older simulator)
//   npm run mutants -- --no-baseline      skip the unmutated run (it must pass, or nothing can be judged)
//   npm run mutants -- --keep             keep the scratch copy and print its path
//   npm run mutants -- --only a --scenario S --seeds N
//                                         instead of the default plan, seeds 1..N of one simulator scenario
//                                         (npm run sim; to find out how often a scenario catches a mutant)
import { spawn, execFileSync } from 'node:child_process';
import {
  cpSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  mkdirSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    list: { type: 'boolean', default: false },
    'sim-rev': { type: 'string' },
    'no-baseline': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    catalogue: { type: 'string', default: join(root, 'scripts', 'mutants.json') },
    'timeout-s': { type: 'string', default: '900' },
    scenario: { type: 'string' },
    seeds: { type: 'string', default: '1000' },
  },
});

/** How far after its `near` anchor an entry's original line may be. */
const NEAR_LINES = 40;

const catalogue = JSON.parse(readFileSync(values.catalogue, 'utf8'));
if (!Array.isArray(catalogue.mutants)) fail(`${values.catalogue}: "mutants" must be a list`);
let entries = catalogue.mutants;
if (values.only) {
  const wanted = new Set(
    values.only
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  );
  for (const name of wanted) if (!entries.some((e) => e.name === name)) fail(`--only: no mutant named ${name}`);
  entries = entries.filter((e) => wanted.has(e.name));
}

// ---- Locate every edit first: a catalogue that no longer applies fails before anything runs ----

/**
 * Returns the mutated text of the file, or throws naming the entry and the field that no
 * longer matches. `original` must be the exact text of one line (leading indentation
 * ignored) and occur exactly once in the file, or exactly once within NEAR_LINES lines after
 * the single occurrence of `near`.
 */
function applyEdit(entry, text) {
  for (const field of ['name', 'file', 'original', 'replacement', 'why']) {
    if (typeof entry[field] !== 'string' || entry[field].length === 0)
      throw new Error(`mutant ${entry.name ?? '?'}: field ${field} is missing`);
  }
  if (entry.original.includes('\n') || entry.replacement.includes('\n'))
    throw new Error(`mutant ${entry.name}: original and replacement must be one line each`);
  if (entry.original.trim() === entry.replacement.trim())
    throw new Error(`mutant ${entry.name}: replacement equals the original`);
  const lines = text.split('\n');
  const matches = (line) => line.trim() === entry.original.trim();
  let candidates = lines.map((line, i) => (matches(line) ? i : -1)).filter((i) => i >= 0);
  if (entry.near !== undefined) {
    const anchors = lines.map((line, i) => (line.includes(entry.near) ? i : -1)).filter((i) => i >= 0);
    if (anchors.length !== 1)
      throw new Error(
        `mutant ${entry.name}: near text occurs ${anchors.length} times in ${entry.file} (must be once): ${JSON.stringify(entry.near)}`,
      );
    candidates = candidates.filter((i) => i > anchors[0] && i <= anchors[0] + NEAR_LINES);
  }
  if (candidates.length !== 1) {
    throw new Error(
      `mutant ${entry.name}: original line occurs ${candidates.length} times in ${entry.file}${entry.near ? ` within ${NEAR_LINES} lines after its near anchor` : ''} (must be exactly once; re-point the catalogue): ${JSON.stringify(entry.original)}`,
    );
  }
  const i = candidates[0];
  const indent = lines[i].slice(0, lines[i].length - lines[i].trimStart().length);
  lines[i] = indent + entry.replacement.trim();
  return { text: lines.join('\n'), line: i + 1 };
}

const problems = [];
const names = new Set();
for (const entry of entries) {
  if (names.has(entry.name)) problems.push(`mutant ${entry.name}: duplicate name`);
  names.add(entry.name);
  try {
    applyEdit(entry, readFileSync(join(root, entry.file), 'utf8'));
    for (const test of entry.tests ?? []) readFileSync(join(root, test));
  } catch (error) {
    problems.push(error instanceof Error ? error.message : String(error));
  }
}
if (problems.length > 0) {
  for (const problem of problems) console.error(problem);
  fail(`${problems.length} catalogue entries do not apply to the current code`);
}
if (values.list) {
  for (const entry of entries) console.log(`${entry.name.padEnd(44)} ${entry.file}  ${entry.why}`);
  console.log(`${entries.length} mutants, every one applies exactly once`);
  process.exit(0);
}

// ---- Scratch copy ----

const scratch = mkdtempSync(join(tmpdir(), 'shardbank-mutants-'));
let child;
let cleaned = false;
function cleanup() {
  if (cleaned) return;
  cleaned = true;
  if (child && child.exitCode === null) {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  if (values.keep) console.log(`scratch copy kept: ${scratch}`);
  else rmSync(scratch, { recursive: true, force: true });
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    cleanup();
    process.exit(130);
  });
}
process.on('exit', cleanup);

for (const item of [
  'node',
  'test',
  'operator',
  'proto',
  'scripts',
  'bin',
  'package.json',
  'tsconfig.json',
  'vitest.config.ts',
]) {
  cpSync(join(root, item), join(scratch, item), {
    recursive: true,
    filter: (src) => !src.includes(`${join(root, 'dist')}`),
  });
}
symlinkSync(realpathSync(join(root, 'node_modules')), join(scratch, 'node_modules'), 'dir');
if (values['sim-rev']) {
  rmSync(join(scratch, 'test', 'sim'), { recursive: true, force: true });
  mkdirSync(join(scratch, 'test', 'sim'), { recursive: true });
  const archive = execFileSync('git', ['-C', root, 'archive', values['sim-rev'], 'test/sim'], { maxBuffer: 64 << 20 });
  execFileSync('tar', ['-x', '-C', scratch], { input: archive });
  console.log(`test/sim taken from ${values['sim-rev']}`);
}

function run(command, args, env = {}) {
  return new Promise((resolvePromise) => {
    const started = Date.now();
    let output = '';
    child = spawn(command, args, {
      cwd: scratch,
      env: { ...process.env, ...env, FORCE_COLOR: '0', NO_COLOR: '1' },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const timer = setTimeout(
      () => {
        output += `\n[timed out after ${values['timeout-s']} s]`;
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      },
      Number(values['timeout-s']) * 1000,
    );
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ ok: code === 0, output, seconds: (Date.now() - started) / 1000 });
    });
  });
}

const tsc = join(scratch, 'node_modules', '.bin', 'tsc');
const vitest = join(scratch, 'node_modules', '.bin', 'vitest');
const typecheck = () =>
  run(tsc, ['-p', 'tsconfig.json', '--noEmit', '--incremental', '--tsBuildInfoFile', join(scratch, '.tsbuildinfo')]);
const simPlan = values.scenario
  ? async () => {
      const built = await run(tsc, ['-p', 'tsconfig.json']);
      if (!built.ok) return built;
      return run(process.execPath, [
        join('dist', 'test', 'sim', 'run-sim.js'),
        '--scenario',
        values.scenario,
        '--seeds',
        values.seeds,
        '--fail-fast',
      ]);
    }
  : () => run(vitest, ['run', 'test/sim', '--bail=1'], { SHARDBANK_SIM_FAIL_FAST: '1' });
const unitTests = (tests) => run(vitest, ['run', ...tests]);

/** The line of a failed run most worth printing: the simulator's failure with its replay command. */
function firstFailure(output) {
  const lines = output.split('\n');
  const at = lines.findIndex((l) => /\[seed \d+\] (safety|invariant|liveness)/.test(l));
  if (at >= 0) {
    const replay = lines.slice(at, at + 4).find((l) => l.includes('replay: npm run sim'));
    return `${lines[at].replace(/^[\s+"-]*/, '').slice(0, 200)}${replay ? ` -- ${replay.replace(/^[\s+"-]*/, '').replace(/",?$/, '')}` : ''}`;
  }
  const pick = lines.find((l) => /Error|error TS|AssertionError|FAIL|×/.test(l)) ?? lines.at(-1) ?? '';
  return pick.trim().slice(0, 240);
}

const check = await typecheck();
if (!check.ok) fail(`the unmutated tree does not type-check:\n${check.output}`);
if (!values['no-baseline']) {
  const base = await simPlan();
  console.log(`baseline (unmutated) simulator plan: ${base.ok ? 'passes' : 'FAILS'} in ${base.seconds.toFixed(0)} s`);
  if (!base.ok) fail(`the unmutated simulator plan fails, so no mutant can be judged: ${firstFailure(base.output)}`);
}

const results = [];
for (const entry of entries) {
  const path = join(scratch, entry.file);
  const original = readFileSync(path, 'utf8');
  const { text, line } = applyEdit(entry, original);
  writeFileSync(path, text);
  const started = Date.now();
  let verdict;
  let detail = '';
  try {
    const compiled = await typecheck();
    if (!compiled.ok) {
      verdict = 'INVALID';
      detail = `does not type-check: ${firstFailure(compiled.output)}`;
    } else {
      const sim = await simPlan();
      let unit;
      if ((entry.tests ?? []).length > 0) unit = await unitTests(entry.tests);
      if (!sim.ok) {
        verdict = 'caught';
        detail = `simulator (${sim.seconds.toFixed(0)} s): ${firstFailure(sim.output)}`;
        if (unit) detail += `; unit tests ${unit.ok ? 'pass' : 'fail too'}`;
      } else if (unit && !unit.ok) {
        verdict = 'caught-by-unit';
        detail = `simulator passes; ${entry.tests.join(' ')} fail: ${firstFailure(unit.output)}`;
      } else {
        verdict = 'MISSED';
        detail = 'every test passes';
      }
    }
  } finally {
    writeFileSync(path, original);
  }
  const seconds = (Date.now() - started) / 1000;
  results.push({ entry, verdict, detail, seconds });
  console.log(
    `${verdict.padEnd(14)} ${entry.name.padEnd(44)} ${seconds.toFixed(0).padStart(4)} s  ${entry.file}:${line}  ${detail}`,
  );
}

const missed = results.filter((r) => r.verdict === 'MISSED' || r.verdict === 'INVALID');
const bySim = results.filter((r) => r.verdict === 'caught').length;
const total = results.reduce((sum, r) => sum + r.seconds, 0);
console.log(
  `\n${results.length - missed.length} of ${results.length} mutants caught (${bySim} by the simulator plan, ${results.length - missed.length - bySim} only by their unit tests); ${missed.length} missed or invalid; ${total.toFixed(0)} s`,
);
if (missed.length > 0) {
  for (const r of missed) console.log(`  ${r.verdict}: ${r.entry.name} (${r.entry.file}): ${r.entry.why}`);
  process.exitCode = 1;
}

function fail(message) {
  console.error(message);
  process.exit(2);
}
