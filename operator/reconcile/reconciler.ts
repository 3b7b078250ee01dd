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
import { protectedVoters } from '../builders/pod-disruption-budget.js';
import { addFinalizer, finalizeCluster, removeFinalizer } from './finalize.js';
import { labelLeaderPods } from './leader-labels.js';
import { NatsStep, OperatorNatsFiles, type NatsOutcome } from './nats.js';
import { ownedBy, type ObjectCache } from './object-cache.js';
import { Rollout, type ShardRollout } from './rollout.js';
import { GrpcMembershipApi, type AdminCredentials, type MembershipApi } from './membership-client.js';
import { MembershipDriver, type DriverOutcome } from './membership-driver.js';
import { ordinalOfAddress, type ShardShape } from '../builders/shard-shape.js';

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
  /**
   * How the membership driver reaches the replicas (default: gRPC with the operator's admin
   * identity for the cluster, from the certificate step).
   */
  membership?: (admin: (cluster: BankCluster) => AdminCredentials | undefined) => MembershipApi;
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
  /** Per namespace/name: the operator's admin identity (membership calls). */
  private readonly admins = new Map<string, AdminCredentials>();
  /** Per namespace/name: shards whose rolling update had not finished at the last reconcile. */
  private readonly rollingOut = new Map<string, string>();
  private readonly membership: MembershipDriver;

  constructor(private readonly deps: ReconcilerDeps) {
    this.rollout = new Rollout(deps.client, deps.cache);
    this.certificates = new Certificates(deps.client, deps.cache, deps.certificates);
    this.nats = new NatsStep(deps.client, deps.cache, deps.build.natsImage);
    this.natsFiles = new OperatorNatsFiles(deps.natsFilesDir ?? join(tmpdir(), 'shardbank-operator-nats'));
    const admin = (cluster: BankCluster) => this.admins.get(this.key(cluster));
    const api = deps.membership ? deps.membership(admin) : new GrpcMembershipApi(admin);
    this.membership = new MembershipDriver(deps.client, deps.cache, api);
  }

  private key(cluster: BankCluster): string {
    return `${cluster.metadata.namespace ?? 'default'}/${cluster.metadata.name}`;
  }

  close(): void {
    this.membership.close();
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
    let membership: DriverOutcome | undefined;
    const recordedFounding = (raw.status as Partial<BankClusterStatus> | undefined)?.foundingReplicasPerShard;
    try {
      nats = await this.nats.prepare(cluster);
      // Certificates for every pod the shards have or a change of size adds (before the driver adds one).
      certificates = await this.certificates.ensure(
        cluster,
        NatsStep.certificateRequest(nats),
        this.liveShapes(cluster, recordedFounding),
      );
      if (certificates.admin) this.admins.set(this.key(cluster), certificates.admin);
      else this.admins.delete(this.key(cluster));
      await this.reportCertificates(raw, certificates);
      await this.reportNats(raw, nats);
      membership = await this.changeMembership(cluster, raw, ref, recordedFounding, certificates, nats);
      await this.applyObjects(cluster, certificates, nats, membership.shapes);
      ref = await this.useNatsFiles(cluster, nats, certificates);
      await this.deleteStalePdbs(cluster, membership.shapes);
      rollouts = await this.rollOut(cluster, raw, ref, membership);
      await this.labelLeaders(cluster, ref);
    } catch (err) {
      reconcileError = errorMessage(err);
    }
    const result = await this.writeStatus(raw, cluster, reconcileError, rollouts, certificates, nats, membership);
    if (reconcileError) throw new Error(reconcileError);
    let requeueAfterMs = result.requeueAfterMs;
    if (membership?.requeueAfterMs !== undefined)
      requeueAfterMs = Math.min(requeueAfterMs ?? membership.requeueAfterMs, membership.requeueAfterMs);
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

  /** Each shard's founding size and current pods, as the live StatefulSets say (before the driver moves them). */
  private liveShapes(cluster: BankCluster, recordedFounding: number | undefined): ShardShape[] {
    const namespace = cluster.metadata.namespace ?? 'default';
    const founding = this.membership.foundingOf(cluster, recordedFounding);
    return Array.from({ length: cluster.spec.shards }, (_, shard) => {
      const sts = this.deps.cache.get(
        RESOURCES.statefulSet,
        namespace,
        names.statefulSet(cluster.metadata.name, shard),
      );
      return {
        foundingReplicas: founding,
        pods: (sts?.spec as { replicas?: number } | undefined)?.replicas ?? founding,
      };
    });
  }

  /**
   * One step of the membership driver (reconcile/membership-driver.ts), held while a rolling
   * update runs or the certificates or NATS are not usable; its events recorded.
   */
  private async changeMembership(
    cluster: BankCluster,
    raw: KubeObject,
    ref: ClusterRef,
    recordedFounding: number | undefined,
    certificates: CertificateOutcome,
    nats: NatsOutcome,
  ): Promise<DriverOutcome> {
    const rolling = this.rollingOut.get(this.key(cluster));
    const hold = !certificates.ready
      ? 'certificates not usable'
      : !nats.ready
        ? 'NATS credentials not usable'
        : !certificates.admin
          ? (certificates.adminProblem ?? 'no admin identity')
          : rolling
            ? `rolling update: ${rolling}`
            : undefined;
    const outcome = await this.membership.run({
      cluster,
      recordedFounding,
      leaderAddress: (shard) => this.deps.leaders.leader(ref, shard)?.address,
      ...(hold ? { hold } : {}),
    });
    for (const event of outcome.events) {
      this.deps.logger.info({ cluster: cluster.metadata.name, reason: event.reason }, event.message);
      await this.deps.events.record(this.target(raw), event.type, event.reason, event.message);
    }
    return outcome;
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
  private async rollOut(
    cluster: BankCluster,
    raw: KubeObject,
    ref: ClusterRef,
    membership: DriverOutcome,
  ): Promise<ShardRollout[]> {
    const out: ShardRollout[] = [];
    const leadersKnowable = ref.natsUrl !== undefined;
    for (let shard = 0; shard < cluster.spec.shards; shard++) {
      // Pods are not replaced while a shard's membership changes (a change held for a rolling
      // update lets it finish first).
      if (membership.changing && !membership.held) {
        out.push({ shard, step: { kind: 'done' }, evicted: false });
        continue;
      }
      const r = await this.rollout.step(
        cluster,
        shard,
        this.leaderPod(cluster, ref, shard),
        leadersKnowable,
        membership.shapes[shard]?.pods ?? cluster.spec.replicasPerShard,
      );
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
    const busy = out.filter((r) => r.step.kind !== 'done').map((r) => `shard ${r.shard}`);
    if (busy.length > 0) this.rollingOut.set(this.key(cluster), busy.join(', '));
    else this.rollingOut.delete(this.key(cluster));
    return out;
  }

  /** The pod ordinal of a shard's leader: from its address (a member added later has a new id on an old pod). */
  private leaderPod(cluster: BankCluster, ref: ClusterRef, shard: number): number | undefined {
    const leader = this.deps.leaders.leader(ref, shard);
    if (!leader) return undefined;
    return ordinalOfAddress(cluster, shard, leader.address) ?? leader.ordinal;
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
    this.membership.forget(cluster.metadata.namespace ?? 'default', cluster.metadata.name);
    this.admins.delete(this.key(cluster));
    this.rollingOut.delete(this.key(cluster));
    await removeFinalizer(this.deps.client, raw);
    this.deps.logger.info({ cluster: cluster.metadata.name, ...outcome }, 'BankCluster finalized');
    return DONE;
  }

  private async applyObjects(
    cluster: BankCluster,
    certificates: CertificateOutcome,
    nats: NatsOutcome,
    shapes: ShardShape[],
  ): Promise<void> {
    const namespace = cluster.metadata.namespace ?? 'default';
    const build = { ...this.deps.build, tlsDigests: certificates.digests, shapes };
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

  /** A shard down to one voter keeps no PodDisruptionBudget. */
  private async deleteStalePdbs(cluster: BankCluster, shapes: ShardShape[]): Promise<void> {
    const single = Array.from({ length: cluster.spec.shards }, (_, shard) => shard).filter(
      (shard) => protectedVoters(cluster, shard, shapes) < 2,
    );
    if (single.length === 0) return;
    const namespace = cluster.metadata.namespace ?? 'default';
    for (const shard of single) {
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
      `shards ${single.join(', ')} have one voter: no PodDisruptionBudget can keep a majority; a node drain stops them`,
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

  private observeShards(
    cluster: BankCluster,
    rollouts: ShardRollout[] = [],
    membership?: DriverOutcome,
  ): ObservedShard[] {
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
      const members = membership?.memberships[shard];
      const leaderPod = leader ? (ordinalOfAddress(cluster, shard, leader.address) ?? leader.ordinal) : undefined;
      return {
        ...(members ? { membership: members } : {}),
        ...(leaderPod !== undefined ? { leaderPod } : {}),
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
    membership?: DriverOutcome,
  ): Promise<ReconcileResult> {
    const previous = (raw.status ?? {}) as Partial<BankClusterStatus>;
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const leadersKnowable = this.clusterRef(cluster).natsUrl !== undefined;
    const status = computeStatus({
      cluster,
      shards: this.observeShards(cluster, rollouts, membership),
      foundingReplicasPerShard: membership?.shapes[0]?.foundingReplicas ?? previous.foundingReplicasPerShard,
      ...(membership ? { membershipChange: membership.changing ?? null, membershipUnread: membership.unread } : {}),
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
