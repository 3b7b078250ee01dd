// `npm run k8s:down` puts the host back as it was before `k8s:up`, after a clean run and
// after a killed one (every node process SIGKILLed with a pod running), and is idempotent.
// Behind SHARDBANK_K8S_E2E=1 (it changes the host's network, sysctls and mounts).
import { describe, expect, it } from 'vitest';
import { hostDiff, nodeProcesses, takeSnapshot } from '../../scripts/controlplane/host.mjs';
import { BRIDGE, PAUSE_IMAGE } from '../../scripts/controlplane/node.mjs';
import { K8S_E2E, k8s, k8sUp, kubectl, nodeDirList, nodeMarkers, until } from './support/node.js';

const pod = `apiVersion: v1
kind: Pod
metadata: {name: lifecycle}
spec:
  containers:
  - {name: c, image: ${PAUSE_IMAGE}, imagePullPolicy: Never}
`;

describe.skipIf(!K8S_E2E)('k8s:up / k8s:down on this host', () => {
  const opts = () => ({ dirs: nodeDirList(), bridge: BRIDGE, markers: nodeMarkers() });

  it('leaves nothing behind after a clean run, after a killed run, and when run twice', async () => {
    k8s('down');
    const before = takeSnapshot();
    expect(hostDiff(before, opts())).toEqual([]);

    for (const ending of ['clean', 'killed'] as const) {
      const kubeconfig = k8sUp();
      await kubectl(kubeconfig, ['apply', '-f', '-'], pod);
      await until('pod Running', async () =>
        (await kubectl(kubeconfig, ['get', 'pod', 'lifecycle', '-o', 'jsonpath={.status.phase}'])) === 'Running'
          ? true
          : undefined,
      );
      const during = hostDiff(before, opts());
      // The check sees the node: processes, the bridge, a pod netns, its veth, mounts, chains, sysctls.
      for (const kind of ['process', 'bridge', 'netns', 'link veth', 'mount', 'chain', 'sysctl']) {
        expect(
          during.some((d) => d.startsWith(kind)),
          `${kind} in ${during.join('; ')}`,
        ).toBe(true);
      }
      if (ending === 'killed') {
        for (const p of nodeProcesses({ markers: nodeMarkers() })) {
          try {
            process.kill(p.pid, 'SIGKILL');
          } catch {
            // gone already
          }
        }
      }
      k8s('down');
      expect(hostDiff(before, opts()), `after a ${ending} run`).toEqual([]);
    }
    k8s('down');
    expect(hostDiff(before, opts())).toEqual([]);
  }, 900_000); // two k8s:up runs, each importing the cached image archives (~45 s here)
});
