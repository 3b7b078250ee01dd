// The membership driver (issue 19): turns a change of spec.replicasPerShard, or a pod that
// lost its disk, into single membership steps (reconcile/membership-plan.ts), one step at a
// time and one shard at a time, and carries each out: a scale of the StatefulSet (applied
// with the other objects, in the shapes it returns) or one ChangeMembership call to the
// shard's leader. A refused or failed call is retried with backoff (compare-and-set on the
// configuration slot: never half-applied, never twice); while a change runs the reconcile is
// requeued. Every step is an event with how long the step before it took.
import { names, type BankCluster } from '../../node/cluster/bankcluster.js';
import { shardSelector } from '../builders/labels.js';
import { ordinalOfAddress, podAddress, type ShardShape } from '../builders/shard-shape.js';
import { errorMessage, isNotFound } from '../kube/api-error.js';
import type { KubeClient } from '../kube/kube-client.js';
import type { KubeObject } from '../kube/kube-object.js';
import { RESOURCES } from '../kube/resources.js';
import type { MembershipApi, MembershipRead } from './membership-client.js';
import { planClusterStep, type MembershipStep, type MembershipView, type PodView } from './membership-plan.js';
import type { ObjectCache } from './object-cache.js';

/** What the status shows of a shard's configuration. */
export interface ShardMembership {
  voters: number[];
  learners: number[];
  /** Member id -> pod ordinal, for the members on a pod of this shard. */
  pods: Record<number, number>;
  configurationSlot: number;
}

export interface DriverOutcome {
  /** Per shard: founding size, the pods it should have now, its voters. */
  shapes: ShardShape[];
  /** Per shard, its configuration as read (undefined: no replica answered or none was asked). */
  memberships: (ShardMembership | undefined)[];
  /** The change that runs, if any: the shard and what its step is. */
  changing?: { shard: number; message: string; retrying?: string };
  /** Shards whose configuration no replica gave (not created yet, or none answered). */
  unread: number[];
  /** The change waits for DriverInput.hold (a rolling update goes first). */
  held?: boolean;
  /** Events to record (reason, message). */
  events: { type: 'Normal' | 'Warning'; reason: string; message: string }[];
  /** Look again this soon (a change runs, or a failed step waits for its retry). */
  requeueAfterMs?: number;
}

export interface DriverInput {
  cluster: BankCluster;
  /** status.foundingReplicasPerShard (undefined: not recorded yet). */
  recordedFounding: number | undefined;
  /** Per shard, the leader's peer address as NATS knows it. */
  leaderAddress: (shard: number) => string | undefined;
  /** Why no step may be taken now (a rolling update runs, certificates are not usable). */
  hold?: string;
}

const BASE_BACKOFF_MS = 1_000;
const MAX_BACKOFF_MS = 30_000;
/** How soon to look again while a change runs (pod events and leader changes also wake it). */
export const CHANGE_REQUEUE_MS = 2_000;
/** How long a scale the cache does not show yet is taken as made (then it is made again). */
const PENDING_SCALE_MS = 30_000;
const FOUNDING_ARG = /^--founding-replicas=(\d+)$/;
const LEGACY_SIZE_ARG = /^--replicas-per-shard=(\d+)$/;

/** The founding size a live StatefulSet's pods were started with, if it says. */
export function foundingOfStatefulSet(sts: KubeObject | undefined): number | undefined {
  const args = (sts?.spec as { template?: { spec?: { containers?: { args?: string[] }[] } } } | undefined)?.template
    ?.spec?.containers?.[0]?.args;
  if (!args) return undefined;
  // Before online membership the size was immutable, so a StatefulSet without the flag was
  // founded with its --replicas-per-shard.
  for (const pattern of [FOUNDING_ARG, LEGACY_SIZE_ARG]) {
    for (const arg of args) {
      const match = pattern.exec(arg);
      if (match) return Number(match[1]);
    }
  }
  return undefined;
}

interface RunningChange {
  shard: number;
  startedAtMs: number;
  stepStartedAtMs: number;
  lastMessage: string;
}

interface Backoff {
  attempts: number;
  notBeforeMs: number;
  error: string;
  /** The step that failed (a different next step starts afresh). */
  message: string;
}

export class MembershipDriver {
  private readonly running = new Map<string, RunningChange>();
  private readonly backoff = new Map<string, Backoff>();
  /** PVCs of pods scaled away, to delete once their pod is gone: key -> names. */
  private readonly orphanedClaims = new Map<string, Set<string>>();
  /** Scales made whose StatefulSet the cache does not show yet: key/shard -> pods, when. */
  private readonly pendingScales = new Map<string, { pods: number; atMs: number }>();

  constructor(
    private readonly client: KubeClient,
    private readonly cache: ObjectCache,
    private readonly api: MembershipApi,
    private readonly now: () => number = Date.now,
  ) {}

  forget(namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    this.running.delete(key);
    this.backoff.delete(key);
    this.orphanedClaims.delete(key);
    for (const k of this.pendingScales.keys()) if (k.startsWith(`${key}/`)) this.pendingScales.delete(k);
  }

  close(): void {
    this.api.close();
  }

  /** The founding size of the cluster: the live StatefulSets say it, then the status, then the spec (a new cluster). */
  foundingOf(cluster: BankCluster, recorded: number | undefined): number {
    const namespace = cluster.metadata.namespace ?? 'default';
    for (let shard = 0; shard < cluster.spec.shards; shard++) {
      const sts = this.cache.get(RESOURCES.statefulSet, namespace, names.statefulSet(cluster.metadata.name, shard));
      const founding = foundingOfStatefulSet(sts);
      if (founding !== undefined) return founding;
    }
    return recorded ?? cluster.spec.replicasPerShard;
  }

  async run(input: DriverInput): Promise<DriverOutcome> {
    const { cluster } = input;
    const namespace = cluster.metadata.namespace ?? 'default';
    const key = `${namespace}/${cluster.metadata.name}`;
    const founding = this.foundingOf(cluster, input.recordedFounding);
    const events: DriverOutcome['events'] = [];
    const shapes: ShardShape[] = [];
    const memberships: (ShardMembership | undefined)[] = [];
    const plans = [];
    for (let shard = 0; shard < cluster.spec.shards; shard++) {
      const sts = this.cache.get(RESOURCES.statefulSet, namespace, names.statefulSet(cluster.metadata.name, shard));
      const pods = sts ? ((sts.spec as { replicas?: number }).replicas ?? founding) : founding;
      const podViews = this.podViews(cluster, shard);
      // A shard whose StatefulSet does not exist yet is being created at its founding size.
      const read = sts ? await this.read(cluster, shard, podViews, input.leaderAddress(shard)) : undefined;
      const view = read?.view;
      if (view && read) {
        for (const p of podViews) {
          const address = podAddress(cluster, shard, p.ordinal);
          p.lostDisk =
            read.emptyReplicas.includes(address) &&
            view.members.some((m) => m.address === address && !m.caughtUp) &&
            view.leaderId >= 0;
        }
      }
      shapes.push({
        foundingReplicas: founding,
        pods,
        ...(view ? votersOf(view) : {}),
      });
      memberships.push(view ? membershipOf(cluster, shard, view) : undefined);
      plans.push({
        shard,
        desired: cluster.spec.replicasPerShard,
        pods,
        podViews,
        membership: sts ? view : undefined,
        ordinalOf: (address: string) => ordinalOfAddress(cluster, shard, address),

        addressOf: (ordinal: number) => podAddress(cluster, shard, ordinal),
      });
    }
    await this.deleteOrphanedClaims(key, namespace);
    const next = planClusterStep(plans);
    const nowMs = this.now();
    const running = this.running.get(key);
    if (!next) {
      if (running) {
        const m = memberships[running.shard];
        events.push({
          type: 'Normal',
          reason: 'MembershipChanged',
          message: `shard ${running.shard}: ${cluster.spec.replicasPerShard} voters${m ? ` (${m.voters.join(', ')})` : ''} after ${seconds(nowMs - running.startedAtMs)}`,
        });
        this.running.delete(key);
      }
      this.backoff.delete(key);
      return { shapes, memberships, events, unread: unreadOf(memberships) };
    }
    const { shard } = next;
    let { step } = next;
    // A scale this driver made that the cache does not show yet is not made (or announced) twice.
    const pendingKey = `${key}/${shard}`;
    const pending = this.pendingScales.get(pendingKey);
    if (pending && (shapes[shard]!.pods === pending.pods || this.now() - pending.atMs > PENDING_SCALE_MS))
      this.pendingScales.delete(pendingKey);
    else if (pending && step.kind === 'scale' && step.pods === pending.pods) {
      shapes[shard]!.pods = pending.pods;
      step = { kind: 'wait', message: `shard ${shard}: waiting for StatefulSet to show ${pending.pods} pods` };
    }
    const message = 'message' in step ? step.message : '';
    let change = running;
    if (!change || change.shard !== shard) {
      change = { shard, startedAtMs: nowMs, stepStartedAtMs: nowMs, lastMessage: '' };
      this.running.set(key, change);
    }
    const outcome: DriverOutcome = {
      shapes,
      memberships,
      unread: unreadOf(memberships),
      changing: { shard, message },
      events,
      requeueAfterMs: CHANGE_REQUEUE_MS,
    };
    if (step.kind === 'settled') return outcome;
    if (input.hold) {
      outcome.changing = { shard, message: `${message} (held: ${input.hold})` };
      outcome.held = true;
      return outcome;
    }
    if (step.kind === 'wait' || step.kind === 'blocked') {
      if (step.kind === 'blocked' && change.lastMessage !== message)
        events.push({ type: 'Warning', reason: 'MembershipBlocked', message });
      change.lastMessage = message;
      return outcome;
    }
    const failed = this.backoff.get(key);
    if (failed && failed.message === message && nowMs < failed.notBeforeMs) {
      outcome.changing = { shard, message, retrying: `attempt ${failed.attempts} failed: ${failed.error}` };
      outcome.requeueAfterMs = Math.max(100, failed.notBeforeMs - nowMs);
      return outcome;
    }
    const result = await this.execute(cluster, shard, step, shapes, plans[shard]!.podViews, input.leaderAddress(shard));
    const tookMs = nowMs - change.stepStartedAtMs;
    if (result.ok) {
      this.backoff.delete(key);
      events.push({
        type: 'Normal',
        reason: 'MembershipStep',
        message: `${message} (after ${seconds(tookMs)} since the previous step)`,
      });
      change.stepStartedAtMs = nowMs;
      change.lastMessage = message;
      return outcome;
    }
    const attempts = failed && failed.message === message ? failed.attempts + 1 : 1;
    const delay = Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** (attempts - 1));
    this.backoff.set(key, { attempts, notBeforeMs: nowMs + delay, error: result.error, message });
    events.push({
      type: 'Warning',
      reason: 'MembershipStepRetry',
      message: `${message}: refused or failed (${result.error}); retrying in ${seconds(delay)}`,
    });
    outcome.changing = { shard, message, retrying: `attempt ${attempts} failed: ${result.error}` };
    outcome.requeueAfterMs = delay;
    return outcome;
  }

  private async execute(
    cluster: BankCluster,
    shard: number,
    step: Extract<MembershipStep, { kind: 'scale' | 'change' }>,
    shapes: ShardShape[],
    podViews: PodView[],
    leader: string | undefined,
  ): Promise<{ ok: true } | { ok: false; error: string }> {
    if (step.kind === 'scale') {
      const shape = shapes[shard]!;
      const namespace = cluster.metadata.namespace ?? 'default';
      // A pod added for a new member starts on an empty disk: a claim a removed member left
      // at that ordinal (kept by a crash before its deletion below) is deleted first.
      for (const o of step.fresh ?? []) {
        const claim = `data-${names.pod(cluster.metadata.name, shard, o)}`;
        try {
          await this.client.delete(RESOURCES.persistentVolumeClaim, namespace, claim);
        } catch (err) {
          if (!isNotFound(err)) return { ok: false, error: `deleting the stale claim ${claim}: ${errorMessage(err)}` };
        }
      }
      if (step.pods < shape.pods) {
        const key = `${namespace}/${cluster.metadata.name}`;
        const claims = this.orphanedClaims.get(key) ?? new Set<string>();
        // A removed member's data must never come back as that member: its claim goes.
        for (let o = step.pods; o < shape.pods; o++) claims.add(`data-${names.pod(cluster.metadata.name, shard, o)}`);
        this.orphanedClaims.set(key, claims);
      }
      shape.pods = step.pods;
      this.pendingScales.set(`${cluster.metadata.namespace ?? 'default'}/${cluster.metadata.name}/${shard}`, {
        pods: step.pods,
        atMs: this.now(),
      });
      return { ok: true };
    }
    const addresses = this.addresses(cluster, shard, podViews, leader);
    try {
      const result = await this.api.change(cluster, shard, addresses, step.expectedConfigurationSlot, step.change);
      return result.ok ? { ok: true } : { ok: false, error: result.error };
    } catch (err) {
      return { ok: false, error: errorMessage(err) };
    }
  }

  /** Running pods' addresses, the leader's first. */
  private addresses(cluster: BankCluster, shard: number, podViews: PodView[], leader: string | undefined): string[] {
    const running = podViews
      .filter((p) => p.running)
      .sort((a, b) => a.ordinal - b.ordinal)
      .map((p) => podAddress(cluster, shard, p.ordinal));
    return leader && running.includes(leader) ? [leader, ...running.filter((a) => a !== leader)] : running;
  }

  private async read(
    cluster: BankCluster,
    shard: number,
    podViews: PodView[],
    leader: string | undefined,
  ): Promise<MembershipRead | undefined> {
    const addresses = this.addresses(cluster, shard, podViews, leader);
    if (addresses.length === 0) return undefined;
    try {
      return await this.api.read(cluster, shard, addresses);
    } catch {
      return undefined;
    }
  }

  private podViews(cluster: BankCluster, shard: number): PodView[] {
    const namespace = cluster.metadata.namespace ?? 'default';
    const prefix = `${names.statefulSet(cluster.metadata.name, shard)}-`;
    return this.cache
      .list(RESOURCES.pod, namespace, shardSelector(cluster, shard))
      .filter((p) => p.metadata.name.startsWith(prefix))
      .map((p) => {
        const status = (p.status ?? {}) as { phase?: string; conditions?: { type: string; status: string }[] };
        return {
          ordinal: Number(p.metadata.name.slice(prefix.length)),
          running: status.phase === 'Running' && p.metadata.deletionTimestamp === undefined,
          ready: status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
          lostDisk: false,
        };
      })
      .filter((p) => Number.isInteger(p.ordinal));
  }

  /** Deletes the claims of pods scaled away, once those pods are gone. */
  private async deleteOrphanedClaims(key: string, namespace: string): Promise<void> {
    const claims = this.orphanedClaims.get(key);
    if (!claims) return;
    for (const claim of [...claims]) {
      const pod = claim.slice('data-'.length);
      if (this.cache.get(RESOURCES.pod, namespace, pod)) continue;
      try {
        await this.client.delete(RESOURCES.persistentVolumeClaim, namespace, claim);
      } catch (err) {
        if (!isNotFound(err)) continue;
      }
      claims.delete(claim);
    }
    if (claims.size === 0) this.orphanedClaims.delete(key);
  }
}

/** Voters, and those a newer member at the same address replaced (they never vote again). */
function votersOf(view: MembershipView): { voters: number; deadVoters?: number } {
  const voters = view.members.filter((m) => m.voter);
  const dead = voters.filter((v) => view.members.some((m) => m.address === v.address && m.id > v.id)).length;
  return { voters: voters.length, ...(dead > 0 ? { deadVoters: dead } : {}) };
}

function unreadOf(memberships: (ShardMembership | undefined)[]): number[] {
  return memberships.flatMap((m, shard) => (m ? [] : [shard]));
}

function membershipOf(cluster: BankCluster, shard: number, view: MembershipView): ShardMembership {
  const pods: Record<number, number> = {};
  for (const m of view.members) {
    const ordinal = ordinalOfAddress(cluster, shard, m.address);
    if (ordinal !== undefined) pods[m.id] = ordinal;
  }
  return {
    voters: view.members
      .filter((m) => m.voter)
      .map((m) => m.id)
      .sort((a, b) => a - b),
    learners: view.members
      .filter((m) => !m.voter)
      .map((m) => m.id)
      .sort((a, b) => a - b),
    pods,
    configurationSlot: view.configurationSlot,
  };
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
