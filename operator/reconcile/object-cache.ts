// Read access to the informer caches the reconciler needs (an interface, so step logic
// can be tested against an in-memory map).
import type { KubeObject } from '../kube/kube-object.js';
import type { ResourceKind } from '../kube/resources.js';

export interface ObjectCache {
  /** The cached object of that kind, or undefined (not seen, or deleted). */
  get(resource: ResourceKind, namespace: string, name: string): KubeObject | undefined;
  /** Cached objects of that kind in a namespace whose labels include `labels`. */
  list(resource: ResourceKind, namespace: string, labels: Record<string, string>): KubeObject[];
}

export function ownedBy(object: KubeObject, uid: string | undefined): boolean {
  return (
    uid !== undefined && (object.metadata.ownerReferences ?? []).some((r) => r.uid === uid && r.controller === true)
  );
}
