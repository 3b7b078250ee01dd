// Reconcile one BankCluster: a flat list of guarded steps (load → validate → finalize on
// deletion → finalizer → paused → objects → leader labels → status). Each step either
// lets the next one run or ends the reconcile with a result.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { API_GROUP, API_VERSION, KIND, validateBankCluster, type BankCluster } from '../../node/cluster/bankcluster.js';
import { names } from '../../node/cluster/bankcluster.js';
import { FINALIZER } from '../builders/labels.js';
import { natsModeOf, natsUrlOf } from '../builders/nats.js';
import type { BuildOptions } from '../builders/statefulset.js';
import type { NatsSecurity } from '../../node/discovery/nats-security.js';
import { errorMessage, isNotFound } from '../kube/api-error.js';
import type { KubeClient } from '../kube/kube-client.js';
import type { KubeObject } from '../kube/kube-object.js';
import { RESOURCES, type ResourceKind } from '../kube/resources.js';
import { stableJson } from '../kube/stable-json.js';
import type { LeaderDirectory, ClusterRef } from '../leaders/leader-directory.js';
import type { EventRecorder } from '../observability/event-recorder.js';
import type { OperatorMetrics } from '../observability/metrics.js';
import { computeStatus, PHASE, type BankClusterStatus, type ObservedShard } from '../status/bankcluster-status.js';
import { AppliedMemo, applyIfChanged, hashOf } from './apply-if-changed.js';
import { Certificates, type CertificateOptions, type CertificateOutcome } from './certificates.js';
import { desiredObjects } from './desired-objects.js';
import { addFinalizer, finalizeCluster, removeFinalizer } from './finalize.js';
import { labelLeaderPods } from './leader-labels.js';
import { NatsStep, OperatorNatsFiles, type NatsOutcome } from './nats.js';
import { ownedBy, type ObjectCache } from './object-cache.js';
import { Rollout, type ShardRollout } from './rollout.js';

export interface ReconcileResult {
  /** Reconcile again after this long even without a change (status not final yet). */
  requeueAfterMs?: number;
}

export interface ReconcilerDeps {
  client: KubeClient;
  cache: ObjectCache;
  leaders: LeaderDirectory;
  events: EventRecorder;
  metrics: OperatorMetrics;
  logger: Logger;
  build: BuildOptions;
  certificates?: CertificateOptions;
  /** How often to look again at a cluster that is not Ready yet. */
  notReadyRequeueMs?: number;
  /** Where the operator keeps each cluster's NATS watcher files (default under the temp dir). */
  natsFilesDir?: string;
}

const DONE: ReconcileResult = {};
/** How soon to look again at a shard whose rolling update waits (pod events also wake it). */
const ROLLOUT_REQUEUE_MS = 2_000;
const CERTIFICATE_REQUEUE_MAX_MS = 6 * 3_600_000;

export class Reconciler {
  private readonly memo = new AppliedMemo();
  private readonly rollout: Rollout;
  private readonly certificates: Certificates;
  private readonly nats: NatsStep;
  private readonly natsFiles: OperatorNatsFiles;
  /** Per namespace/name: the watcher files the operator's leader directory connects with. */
  private readonly natsSecurity = new Map<string, NatsSecurity>();

  constructor(private readonly deps: ReconcilerDeps) {
    this.rollout = new Rollout(deps.client, deps.cache);
    this.certificates = new Certificates(deps.client, deps.cache, deps.certificates);
    this.nats = new NatsStep(deps.client, deps.cache, deps.build.natsImage);
    this.natsFiles = new OperatorNatsFiles(deps.natsFilesDir ?? join(tmpdir(), 'shardbank-operator-nats'));
  }

  /**
   * Starts (or keeps) the cluster's leader watch. A cluster with NATS is watched only once
   * its watcher files exist: a watch without them would only be refused by the server.
   */
  private async ensureLeaders(cluster: BankCluster): Promise<ClusterRef> {
    const ref = this.clusterRef(cluster);
    if (natsModeOf(cluster, this.deps.build.natsImage) !== 'none' && ref.natsSecurity === undefined) return ref;
    await this.deps.leaders
      .ensure(ref)
      .catch((err: unknown) => this.deps.logger.warn({ err: errorMessage(err) }, 'leader watch failed'));
    return ref;
  }

  async reconcile(namespace: string, name: string): Promise<ReconcileResult> {
    const raw = await this.load(namespace, name);
    if (!raw) {
      await this.deps.leaders.forget({ namespace, name });
      return DONE;
    }
    const parsed = validateBankCluster(raw);
    if (!parsed.ok) return this.rejectSpec(raw, parsed.errors.map((e) => e.message).join('; '));
    const cluster: BankCluster = { ...parsed.value, metadata: { ...parsed.value.metadata, namespace } };
    if (raw.metadata.deletionTimestamp) return this.finalize(raw, cluster);
    if (!(raw.metadata.finalizers ?? []).includes(FINALIZER)) await addFinalizer(this.deps.client, raw);
    let ref = await this.ensureLeaders(cluster);
    if (cluster.spec.paused) return this.writeStatus(raw, cluster, undefined);
    let reconcileError: string | undefined;
    let rollouts: ShardRollout[] = [];
    let certificates: CertificateOutcome | undefined;
    let nats: NatsOutcome | undefined;
    try {
      nats = await this.nats.prepare(cluster);
      certificates = await this.certificates.ensure(cluster, NatsStep.certificateRequest(nats));
      await this.reportCertificates(raw, certificates);
      await this.reportNats(raw, nats);
      await this.applyObjects(cluster, certificates, nats);
      ref = await this.useNatsFiles(cluster, nats, certificates);
      await this.deleteStalePdbs(cluster);
      rollouts = await this.rollOut(cluster, raw, ref);
      await this.labelLeaders(cluster, ref);
    } catch (err) {
      reconcileError = errorMessage(err);
    }
    const result = await this.writeStatus(raw, cluster, reconcileError, rollouts, certificates, nats);
    if (reconcileError) throw new Error(reconcileError);
    let requeueAfterMs = result.requeueAfterMs;
    if (rollouts.some((r) => r.step.kind !== 'done'))
      requeueAfterMs = Math.min(requeueAfterMs ?? ROLLOUT_REQUEUE_MS, ROLLOUT_REQUEUE_MS);
    // The next certificate renewal (or look at the user's Secrets).
    if (certificates && Number.isFinite(certificates.recheckAtMs)) {
      // Capped: a timer longer than 2^31 ms fires at once, and a renewal months away can wait
      // for a later look as well.
      const untilRecheck = Math.min(CERTIFICATE_REQUEUE_MAX_MS, Math.max(1_000, certificates.recheckAtMs - Date.now()));
      requeueAfterMs = Math.min(requeueAfterMs ?? untilRecheck, untilRecheck);
    }
    // The user's NATS Secret is not watched: look at it again.
    if (nats?.mode === 'external')
      requeueAfterMs = Math.min(requeueAfterMs ?? NatsStep.externalRecheckMs, NatsStep.externalRecheckMs);
    return requeueAfterMs === undefined ? DONE : { requeueAfterMs };
  }

  /** A Warning event naming what is wrong with spec.nats.credentialsSecret. */
  private async reportNats(raw: KubeObject, nats: NatsOutcome): Promise<void> {
    if (nats.problems.length > 0)
      await this.deps.events.record(this.target(raw), 'Warning', 'InvalidNatsSecret', nats.problems.join('; '));
  }

  /** The watcher's files for the operator's own leader directory, then the watch with them. */
  private async useNatsFiles(
    cluster: BankCluster,
    nats: NatsOutcome,
    certificates: CertificateOutcome,
  ): Promise<ClusterRef> {
    const namespace = cluster.metadata.namespace ?? 'default';
    const ca = nats.watcher?.ca ?? certificates.natsTls?.ca;
    if (nats.watcher && ca) {
      const security = this.natsFiles.write(namespace, cluster.metadata.name, {
        ca,
        credentials: nats.watcher.credentials,
      });
      this.natsSecurity.set(`${namespace}/${cluster.metadata.name}`, security);
    }
    return this.ensureLeaders(cluster);
  }

  /** Events for certificates issued or renewed, client Secrets removed, and unusable Secrets. */
  private async reportCertificates(raw: KubeObject, certificates: CertificateOutcome): Promise<void> {
    const target = this.target(raw);
    if (certificates.issued.length > 0) {
      this.deps.logger.info({ cluster: raw.metadata.name, secrets: certificates.issued }, 'certificates issued');
      await this.deps.events.record(target, 'Normal', 'CertificatesIssued', `issued ${certificates.issued.join(', ')}`);
    }
    if (certificates.deleted.length > 0)
      await this.deps.events.record(
        target,
        'Normal',
        'ClientCredentialsDeleted',
        `deleted ${certificates.deleted.join(', ')} (no longer in spec.clients)`,
      );
    if (certificates.problems.length > 0)
      await this.deps.events.record(target, 'Warning', 'InvalidTLSSecrets', certificates.problems.join('; '));
  }

  /** One step of each shard's rolling update (followers first, the leader last). */
  private async rollOut(cluster: BankCluster, raw: KubeObject, ref: ClusterRef): Promise<ShardRollout[]> {
    const out: ShardRollout[] = [];
    const leadersKnowable = ref.natsUrl !== undefined;
    for (let shard = 0; shard < cluster.spec.shards; shard++) {
      const r = await this.rollout.step(cluster, shard, this.deps.leaders.leader(ref, shard)?.ordinal, leadersKnowable);
      if (r.evicted && r.step.kind === 'evict') {
        this.deps.logger.info(
          { cluster: cluster.metadata.name, shard, pod: r.step.pod.name, role: r.step.role },
          'rolling update: evicting pod',
        );
        await this.deps.events.record(
          this.target(raw),
          'Normal',
          'RollingUpdate',
          `shard ${shard}: evicted ${r.step.role} ${r.step.pod.name} (${r.step.message})`,
        );
      }
      out.push(r);
    }
    return out;
  }

  private load(namespace: string, name: string): Promise<KubeObject | undefined> {
    return this.deps.client.getIfExists<KubeObject>(RESOURCES.bankCluster, namespace, name);
  }

  private clusterRef(cluster: BankCluster): ClusterRef {
    const security = this.natsSecurity.get(`${cluster.metadata.namespace ?? 'default'}/${cluster.metadata.name}`);
    return {
      namespace: cluster.metadata.namespace ?? 'default',
      name: cluster.metadata.name,
      incarnation: cluster.metadata.uid ?? '',
      natsUrl: natsUrlOf(cluster, this.deps.build.natsImage),
      ...(security ? { natsSecurity: security } : {}),
    };
  }

  private target(raw: KubeObject) {
    return { apiVersion: `${API_GROUP}/${API_VERSION}`, kind: KIND, metadata: raw.metadata };
  }

  private async rejectSpec(raw: KubeObject, message: string): Promise<ReconcileResult> {
    await this.deps.events.record(this.target(raw), 'Warning', 'InvalidSpec', message);
    const previous = (raw.status ?? {}) as Partial<BankClusterStatus>;
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const conditions = (previous.conditions ?? []).filter((c) => c.type !== 'Degraded');
    conditions.push({
      type: 'Degraded',
      status: 'True',
      reason: 'InvalidSpec',
      message,
      lastTransitionTime: now,
      observedGeneration: raw.metadata.generation,
    });
    await this.applyStatus(raw, {
      ...previous,
      phase: PHASE.degraded,
      observedGeneration: raw.metadata.generation,
      conditions,
    });
    return DONE;
  }

  private async finalize(raw: KubeObject, cluster: BankCluster): Promise<ReconcileResult> {
    if (!(raw.metadata.finalizers ?? []).includes(FINALIZER)) return DONE;
    const outcome = await finalizeCluster(this.deps.client, cluster);
    const target = this.target(raw);
    if (outcome.deleted.length > 0)
      await this.deps.events.record(target, 'Normal', 'Deleted', `deleted ${outcome.deleted.join(', ')}`);
    if (outcome.pvcsRetained.length > 0) {
      await this.deps.events.record(
        target,
        'Normal',
        'VolumesRetained',
        `kept ${outcome.pvcsRetained.length} PVCs (spec.storage.retainOnDelete): ${outcome.pvcsRetained.join(', ')}`,
      );
    }
    if (outcome.pvcsDeleted.length > 0)
      await this.deps.events.record(
        target,
        'Normal',
        'VolumesDeleted',
        `deleted PVCs ${outcome.pvcsDeleted.join(', ')}`,
      );
    await this.deps.leaders.forget({ namespace: cluster.metadata.namespace ?? 'default', name: cluster.metadata.name });
    this.rollout.forget(cluster.metadata.namespace ?? 'default', cluster.metadata.name);
    this.certificates.forget(cluster.metadata.namespace ?? 'default', cluster.metadata.name);
    this.natsFiles.forget(cluster.metadata.namespace ?? 'default', cluster.metadata.name);
    this.natsSecurity.delete(`${cluster.metadata.namespace ?? 'default'}/${cluster.metadata.name}`);
    await removeFinalizer(this.deps.client, raw);
    this.deps.logger.info({ cluster: cluster.metadata.name, ...outcome }, 'BankCluster finalized');
    return DONE;
  }

  private async applyObjects(cluster: BankCluster, certificates: CertificateOutcome, nats: NatsOutcome): Promise<void> {
    const namespace = cluster.metadata.namespace ?? 'default';
    const build = { ...this.deps.build, tlsDigests: certificates.digests };
    const managed =
      nats.mode === 'managed' && nats.users
        ? { users: nats.users, ...(certificates.natsTls ? { tls: certificates.natsTls } : {}) }
        : undefined;
    for (const { resource, object } of desiredObjects(cluster, build, {
      statefulSets: certificates.ready && nats.ready,
      ...(managed ? { nats: managed } : {}),
    })) {
      // The caches only hold objects with our labels: one missing there may still exist.
      const live =
        this.deps.cache.get(resource, namespace, object.metadata.name) ??
        (await this.getLive(resource, namespace, object.metadata.name));
      if (live && !ownedBy(live, cluster.metadata.uid)) {
        throw new Error(
          `${resource.kind} ${object.metadata.name} exists and is not owned by this BankCluster; not touching it`,
        );
      }
      if (await applyIfChanged(this.deps.client, this.memo, resource, object, live)) {
        this.deps.metrics.applies.inc({ kind: resource.kind });
        const verb = live ? 'Updated' : 'Created';
        await this.deps.events.record(
          this.target(cluster as unknown as KubeObject),
          'Normal',
          verb,
          `${verb.toLowerCase()} ${resource.kind} ${object.metadata.name} (${hashOf(object).slice(0, 8)})`,
        );
      }
    }
  }

  private getLive(resource: ResourceKind, namespace: string, name: string): Promise<KubeObject | undefined> {
    return this.deps.client.getIfExists<KubeObject>(resource, namespace, name);
  }

  /** A cluster scaled to one replica per shard keeps no PodDisruptionBudget. */
  private async deleteStalePdbs(cluster: BankCluster): Promise<void> {
    if (cluster.spec.replicasPerShard > 1) return;
    const namespace = cluster.metadata.namespace ?? 'default';
    for (let shard = 0; shard < cluster.spec.shards; shard++) {
      const name = names.pdb(cluster.metadata.name, shard);
      const live = this.deps.cache.get(RESOURCES.podDisruptionBudget, namespace, name);
      if (live && ownedBy(live, cluster.metadata.uid)) {
        await this.deps.client.delete(RESOURCES.podDisruptionBudget, namespace, name).catch((err: unknown) => {
          if (!isNotFound(err)) throw err;
        });
      }
    }
    await this.deps.events.record(
      this.target(cluster as unknown as KubeObject),
      'Warning',
      'NoDisruptionBudget',
      'replicasPerShard is 1: no PodDisruptionBudget can keep a majority; a node drain stops each shard',
    );
  }

  private async labelLeaders(cluster: BankCluster, ref: ClusterRef): Promise<void> {
    for (let shard = 0; shard < cluster.spec.shards; shard++) {
      await labelLeaderPods(
        this.deps.client,
        this.deps.cache,
        cluster,
        shard,
        this.deps.leaders.leader(ref, shard)?.ordinal,
      );
    }
  }

  private observeShards(cluster: BankCluster, rollouts: ShardRollout[] = []): ObservedShard[] {
    const namespace = cluster.metadata.namespace ?? 'default';
    const ref = this.clusterRef(cluster);
    return Array.from({ length: cluster.spec.shards }, (_, shard) => {
      const sts = this.deps.cache.get(
        RESOURCES.statefulSet,
        namespace,
        names.statefulSet(cluster.metadata.name, shard),
      );
      const status = (sts?.status ?? {}) as Record<string, unknown>;
      const leader = this.deps.leaders.leader(ref, shard);
      const step = rollouts.find((r) => r.shard === shard)?.step;
      return {
        exists: sts !== undefined && !sts.metadata.deletionTimestamp,
        generation: sts?.metadata.generation,
        observedGeneration: status.observedGeneration as number | undefined,
        replicas: status.replicas as number | undefined,
        readyReplicas: status.readyReplicas as number | undefined,
        updatedReplicas: status.updatedReplicas as number | undefined,
        currentRevision: status.currentRevision as string | undefined,
        updateRevision: status.updateRevision as string | undefined,
        ...(leader ? { leader } : {}),
        ...(step && step.kind !== 'done' ? { rollout: step.message } : {}),
      };
    });
  }

  private async writeStatus(
    raw: KubeObject,
    cluster: BankCluster,
    reconcileError: string | undefined,
    rollouts: ShardRollout[] = [],
    certificates?: CertificateOutcome,
    nats?: NatsOutcome,
  ): Promise<ReconcileResult> {
    const previous = (raw.status ?? {}) as Partial<BankClusterStatus>;
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const leadersKnowable = this.clusterRef(cluster).natsUrl !== undefined;
    const status = computeStatus({
      cluster,
      shards: this.observeShards(cluster, rollouts),
      previous,
      leadersKnowable,
      reconcileError,
      ...(certificates ? { certificates } : {}),
      ...(nats ? { nats } : {}),
      now,
    });
    this.deps.metrics.clusterReady.set(
      { resource_namespace: cluster.metadata.namespace ?? '', resource_name: cluster.metadata.name },
      status.phase === PHASE.ready ? 1 : 0,
    );
    if (stableJson(status) !== stableJson(previous)) {
      await this.applyStatus(raw, status);
      if (previous.phase !== status.phase) {
        await this.deps.events.record(
          this.target(raw),
          status.phase === PHASE.degraded ? 'Warning' : 'Normal',
          `Phase${status.phase}`,
          `phase ${previous.phase ?? '(none)'} -> ${status.phase}`,
        );
      }
    }
    if (status.phase === PHASE.ready || status.phase === PHASE.paused) return DONE;
    return { requeueAfterMs: this.deps.notReadyRequeueMs ?? 30_000 };
  }

  /** Status goes only through the status subresource, applied with our field manager. */
  private async applyStatus(raw: KubeObject, status: Partial<BankClusterStatus>): Promise<void> {
    await this.deps.client.apply(
      RESOURCES.bankCluster,
      {
        apiVersion: `${API_GROUP}/${API_VERSION}`,
        kind: KIND,
        metadata: { name: raw.metadata.name, namespace: raw.metadata.namespace },
        status,
      },
      { subresource: 'status' },
    );
  }
}
