// One real control plane (etcd + kube-apiserver, CRD installed) per test file, started
// with the same tooling as `npm run controlplane:up`. Missing binaries fail with a message
// that names the build command.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { binaries } from '../../../scripts/controlplane/binaries.mjs';
import { startControlPlane as start, type ControlPlane } from '../../../scripts/controlplane/control-plane.mjs';
import { KubeClient } from '../../../operator/kube/kube-client.js';
import { RESOURCES } from '../../../operator/kube/resources.js';

export interface TestControlPlane {
  cp: ControlPlane;
  kubeConfig: KubeConfig;
  kubeconfigPath: string;
  /** Admin client with its own field manager (plays the user). */
  client: KubeClient;
  createNamespace(name: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startTestControlPlane(
  options: { extraApiserverArgs?: string[] } = {},
): Promise<TestControlPlane> {
  binaries({ need: ['etcd', 'kube-apiserver'] });
  const dir = mkdtempSync(join(tmpdir(), 'shardbank-cp-'));
  let cp: ControlPlane | undefined;
  // A free port can be taken by another process between choosing and binding it: one retry.
  for (let attempt = 1; cp === undefined; attempt++) {
    try {
      cp = await start({ stateDir: join(dir, `attempt-${attempt}`), extraApiserverArgs: options.extraApiserverArgs });
    } catch (err) {
      if (attempt >= 2) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }
  const started: ControlPlane = cp;
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(started.kubeconfigPath);
  const client = new KubeClient(kubeConfig, 'shardbank-test-user');
  const killOnExit = () => {
    for (const pid of started.pids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  };
  process.once('exit', killOnExit);
  return {
    cp: started,
    kubeConfig,
    kubeconfigPath: started.kubeconfigPath,
    client,
    createNamespace: async (name) => {
      await client.create(
        { apiVersion: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false },
        { apiVersion: 'v1', kind: 'Namespace', metadata: { name } },
      );
    },
    stop: async () => {
      process.removeListener('exit', killOnExit);
      await started.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export { RESOURCES };
