// Applies YAML manifests (deploy/, helm template output) to the test API server with
// server-side apply, optionally as a server-side dry run.
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import type { KubeClient } from '../../../operator/kube/kube-client.js';
import type { KubeObject } from '../../../operator/kube/kube-object.js';
import type { ResourceKind } from '../../../operator/kube/resources.js';

const KINDS: Record<string, { plural: string; namespaced: boolean }> = {
  Namespace: { plural: 'namespaces', namespaced: false },
  CustomResourceDefinition: { plural: 'customresourcedefinitions', namespaced: false },
  ClusterRole: { plural: 'clusterroles', namespaced: false },
  ClusterRoleBinding: { plural: 'clusterrolebindings', namespaced: false },
  Role: { plural: 'roles', namespaced: true },
  RoleBinding: { plural: 'rolebindings', namespaced: true },
  ServiceAccount: { plural: 'serviceaccounts', namespaced: true },
  Deployment: { plural: 'deployments', namespaced: true },
  StatefulSet: { plural: 'statefulsets', namespaced: true },
  Service: { plural: 'services', namespaced: true },
  ConfigMap: { plural: 'configmaps', namespaced: true },
  PodDisruptionBudget: { plural: 'poddisruptionbudgets', namespaced: true },
  BankCluster: { plural: 'bankclusters', namespaced: true },
};

export function resourceOf(o: KubeObject): ResourceKind {
  const k = KINDS[o.kind ?? ''];
  if (!k) throw new Error(`manifest kind ${o.kind} is not in the test's table`);
  return { apiVersion: o.apiVersion!, kind: o.kind!, ...k };
}

export function parseManifests(text: string): KubeObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as KubeObject | null)
    .filter((o): o is KubeObject => o !== null && typeof o === 'object' && 'kind' in o);
}

export function readManifests(path: string): KubeObject[] {
  return parseManifests(readFileSync(path, 'utf8'));
}

export async function applyManifests(
  client: KubeClient,
  objects: KubeObject[],
  options: { dryRun?: boolean; namespace?: string } = {},
): Promise<KubeObject[]> {
  const out: KubeObject[] = [];
  for (const o of objects) {
    const resource = resourceOf(o);
    const object =
      resource.namespaced && !o.metadata.namespace
        ? { ...o, metadata: { ...o.metadata, namespace: options.namespace ?? 'default' } }
        : o;
    out.push(await client.apply<KubeObject>(resource, object, { dryRun: options.dryRun }));
  }
  return out;
}
