// Server-side apply, skipped when the desired object is the one we last applied and the
// live object has not changed since (same generation or resourceVersion). Anything else
// (a new spec, a manual edit, a deleted object) is applied again; fields other managers
// own, such as labels someone added, are left alone by apply.
import { createHash } from 'node:crypto';
import type { KubeClient } from '../kube/kube-client.js';
import type { KubeObject } from '../kube/kube-object.js';
import type { ResourceKind } from '../kube/resources.js';
import { stableJson } from '../kube/stable-json.js';

interface Applied {
  hash: string;
  version: string;
}

const memoMax = 100_000;

function liveVersion(o: KubeObject): string {
  return `${o.metadata.uid}/${o.metadata.generation ?? o.metadata.resourceVersion}`;
}

export class AppliedMemo {
  private readonly applied = new Map<string, Applied>();

  static key(resource: ResourceKind, o: KubeObject): string {
    return `${resource.plural}/${o.metadata.namespace}/${o.metadata.name}`;
  }

  /** True when applying `desired` again would change nothing we know of. */
  upToDate(resource: ResourceKind, desired: KubeObject, live: KubeObject | undefined): boolean {
    if (!live || live.metadata.deletionTimestamp) return false;
    const memo = this.applied.get(AppliedMemo.key(resource, desired));
    return memo !== undefined && memo.hash === hashOf(desired) && memo.version === liveVersion(live);
  }

  remember(resource: ResourceKind, desired: KubeObject, result: KubeObject): void {
    if (this.applied.size >= memoMax) this.applied.clear();
    this.applied.set(AppliedMemo.key(resource, desired), { hash: hashOf(desired), version: liveVersion(result) });
  }

  forget(resource: ResourceKind, o: KubeObject): void {
    this.applied.delete(AppliedMemo.key(resource, o));
  }
}

export function hashOf(o: unknown): string {
  return createHash('sha256').update(stableJson(o)).digest('hex');
}

/** Applies when needed; returns true if an apply request was sent. */
export async function applyIfChanged(
  client: KubeClient,
  memo: AppliedMemo,
  resource: ResourceKind,
  desired: KubeObject,
  live: KubeObject | undefined,
): Promise<boolean> {
  if (memo.upToDate(resource, desired, live)) return false;
  const result = await client.apply<KubeObject>(resource, desired);
  memo.remember(resource, desired, result);
  return true;
}
