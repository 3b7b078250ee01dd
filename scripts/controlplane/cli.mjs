#!/usr/bin/env node
// `npm run controlplane:up` / `controlplane:down`: a long-lived local control plane for people.
// State (certs, etcd data, logs, kubeconfig) lives in ${SHARDBANK_CACHE}/controlplane/default
// or $SHARDBANK_CONTROLPLANE_DIR. `up` prints KUBECONFIG=<path> as its last line.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { binaries, cacheDir, MissingBinariesError } from './binaries.mjs';
import { startControlPlane } from './control-plane.mjs';

const stateDir = process.env.SHARDBANK_CONTROLPLANE_DIR || join(cacheDir(), 'controlplane', 'default');
const stateFile = join(stateDir, 'state.json');

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function readState() {
  if (!existsSync(stateFile)) return undefined;
  return JSON.parse(readFileSync(stateFile, 'utf8'));
}

async function down() {
  const state = readState();
  if (!state) {
    console.log('control plane: not running');
    return;
  }
  for (const pid of [...state.pids].reverse()) if (alive(pid)) process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 15_000;
  while (state.pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  for (const pid of state.pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(stateDir, { recursive: true, force: true });
  console.log('control plane: stopped');
}

/** Builds the binaries once (cached outside the repo); build output goes to stderr. */
function ensureBinaries() {
  try {
    binaries();
  } catch (err) {
    if (!(err instanceof MissingBinariesError)) throw err;
    console.error('control plane: building etcd/kube-apiserver once (cached in ' + cacheDir() + '/bin)');
    const script = join(dirname(fileURLToPath(import.meta.url)), 'build-binaries.sh');
    const r = spawnSync('bash', [script, 'etcd kube-apiserver'], { stdio: ['ignore', 2, 2] });
    if (r.status !== 0) throw new Error(`building the control-plane binaries failed (exit ${r.status})`);
  }
}

async function up() {
  const state = readState();
  if (state && state.pids.every(alive)) {
    console.log(`control plane: already running at ${state.server}`);
    console.log(`KUBECONFIG=${state.kubeconfig}`);
    return;
  }
  if (state) await down();
  ensureBinaries();
  const cp = await startControlPlane({ stateDir, detached: true });
  console.log(`control plane: kube-apiserver ${cp.server}, etcd 127.0.0.1:${cp.etcdPort}, logs in ${stateDir}`);
  console.log(`KUBECONFIG=${cp.kubeconfigPath}`);
}

const command = process.argv[2];
const run = command === 'up' ? up : command === 'down' ? down : undefined;
if (!run) {
  console.error('usage: cli.mjs up|down');
  process.exit(2);
}
run().catch((err) => {
  console.error(`control plane: ${err.message}`);
  process.exit(1);
});
