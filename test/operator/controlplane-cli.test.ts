// `npm run controlplane:up` / `controlplane:down` for people: a detached control plane
// whose last output line is KUBECONFIG=<path>, reachable with that kubeconfig, with the
// CRD installed; `down` stops it.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, describe, expect, it } from 'vitest';
import { binaries } from '../../scripts/controlplane/binaries.mjs';
import { pino } from 'pino';
import { KubeClient } from '../../operator/kube/kube-client.js';
import { Operator } from '../../operator/operator.js';
import type { KubeObject } from '../../operator/kube/kube-object.js';
import { RESOURCES } from '../../operator/kube/resources.js';
import { freePort } from '../../scripts/controlplane/control-plane.mjs';
import { eventually } from './support/eventually.js';
import { compileOperator, runOperator } from './support/operator-process.js';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');
const stateDir = join(mkdtempSync(join(tmpdir(), 'shardbank-cli-')), 'cp');
const env = { ...process.env, SHARDBANK_CONTROLPLANE_DIR: stateDir };

afterAll(async () => {
  await run('node', ['scripts/controlplane/cli.mjs', 'down'], { cwd: root, env }).catch(() => undefined);
  rmSync(join(stateDir, '..'), { recursive: true, force: true });
});

describe('controlplane:up / controlplane:down', () => {
  it('starts a control plane (KUBECONFIG last); the operator process leads, exits 0 on SIGTERM releasing the Lease, and a crashed leader is replaced; down stops it', async () => {
    binaries({ need: ['etcd', 'kube-apiserver'] });
    const up = await run('node', ['scripts/controlplane/cli.mjs', 'up'], { cwd: root, env, timeout: 300_000 });
    const lines = up.stdout.trim().split('\n');
    const last = lines[lines.length - 1]!;
    expect(last).toMatch(/^KUBECONFIG=\//);
    const kubeconfig = last.slice('KUBECONFIG='.length);
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    const client = new KubeClient(kc, 'cli-test');
    const crd = await client.request<{ metadata: { name: string } }>({
      method: 'GET',
      path: '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/bankclusters.shardbank.io',
    });
    expect(crd.metadata.name).toBe('bankclusters.shardbank.io');

    // The operator as a process (the image's entry point) against that kubeconfig: it
    // takes the Lease, serves health, and on SIGTERM releases the Lease and exits 0.
    const { main, dir } = await compileOperator();
    const port = await freePort();
    const leaseHolder = async () =>
      (
        await client.get<KubeObject & { spec: { holderIdentity?: string } }>(
          RESOURCES.lease,
          'default',
          'shardbank-operator',
        )
      ).spec.holderIdentity;
    let crashed: ReturnType<typeof runOperator> | undefined;
    const op = runOperator(main, {
      KUBECONFIG: kubeconfig,
      POD_NAMESPACE: 'default',
      POD_NAME: 'operator-process',
      SHARDBANK_HTTP_PORT: String(port),
      SHARDBANK_LOG_LEVEL: 'warn',
    });
    try {
      await eventually('operator process leading and ready', async () => {
        const r = await fetch(`http://127.0.0.1:${port}/readyz`);
        return r.status === 200 && (await r.text()).includes('caches synced');
      });
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      op.child.kill('SIGTERM');
      expect(await op.exited, op.output()).toBe(0);
      expect((await leaseHolder()) ?? '').toBe('');

      // A leader that crashes (SIGKILL: the Lease is not released) is replaced by a standby
      // once the Lease has not been renewed for its whole duration.
      crashed = runOperator(main, {
        KUBECONFIG: kubeconfig,
        POD_NAMESPACE: 'default',
        POD_NAME: 'operator-crashed',
        SHARDBANK_HTTP_PORT: String(port),
        SHARDBANK_LOG_LEVEL: 'warn',
      });
      await eventually('crashing operator leads', async () => (await leaseHolder()) === 'operator-crashed');
      crashed.child.kill('SIGKILL');
      await crashed.exited;
      const standby = new Operator({
        kubeConfig: kc,
        leaseNamespace: 'default',
        identity: 'standby',
        logger: pino({ level: 'silent' }),
        retryPeriodMs: 500,
      });
      await standby.start();
      try {
        await eventually('standby takes over the expired Lease', () => standby.isActive);
        expect(await leaseHolder()).toBe('standby');
      } finally {
        await standby.stop();
      }
    } finally {
      if (op.child.exitCode === null) op.child.kill('SIGKILL');
      if (crashed && crashed.child.exitCode === null) crashed.child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }

    const again = await run('node', ['scripts/controlplane/cli.mjs', 'up'], { cwd: root, env, timeout: 60_000 });
    expect(again.stdout.trim().split('\n').pop()).toBe(last);

    const down = await run('node', ['scripts/controlplane/cli.mjs', 'down'], { cwd: root, env, timeout: 60_000 });
    expect(down.stdout).toContain('stopped');
    expect(existsSync(kubeconfig)).toBe(false);
    await expect(client.request({ method: 'GET', path: '/readyz' })).rejects.toThrow();
  }, 400_000);
});
