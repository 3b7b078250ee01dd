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

export async function startTestControlPlane(): Promise<TestControlPlane> {
  binaries({ need: ['etcd', 'kube-apiserver'] });
  const dir = mkdtempSync(join(tmpdir(), 'shardbank-cp-'));
  let cp: ControlPlane;
  try {
    cp = await start({ stateDir: dir });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(cp.kubeconfigPath);
  const client = new KubeClient(kubeConfig, 'shardbank-test-user');
  const killOnExit = () => {
    for (const pid of cp.pids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  };
  process.once('exit', killOnExit);
  return {
    cp,
    kubeConfig,
    kubeconfigPath: cp.kubeconfigPath,
    client,
    createNamespace: async (name) => {
      await client.create({ apiVersion: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false }, { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
    },
    stop: async () => {
      process.removeListener('exit', killOnExit);
      await cp.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export { RESOURCES };
