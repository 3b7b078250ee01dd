// The operator process as a library: leader election gates the controller; HTTP serves
// metrics and health; stop() shuts down gracefully (finish running reconciles, release
// the Lease, close NATS watches). main.ts runs it from flags; tests run it in-process.
import { hostname } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import { pino, type Logger } from 'pino';
import { FIELD_MANAGER } from './builders/labels.js';
import { Controller } from './controller/controller.js';
import type { InformerOptions } from './controller/informer.js';
import { LeaderElector } from './controller/leader-election.js';
import { KubeClient } from './kube/kube-client.js';
import { NatsLeaderDirectory, type LeaderDirectory } from './leaders/leader-directory.js';
import { EventRecorder } from './observability/event-recorder.js';
import { startHttpServer } from './observability/http-server.js';
import { OperatorMetrics } from './observability/metrics.js';
import { Reconciler, type ReconcilerDeps } from './reconcile/reconciler.js';

export interface OperatorOptions {
  kubeConfig: KubeConfig;
  /** Namespace of the Lease (the operator's own namespace). */
  leaseNamespace: string;
  leaseName?: string;
  identity?: string;
  /** 0 picks a free port; undefined serves no HTTP. */
  httpPort?: number;
  httpHost?: string;
  /**
   * The nats-server image to run, one NATS per BankCluster with spec.nats.managed
   * (operator/builders/nats.ts); undefined: such clusters get no NATS (leaders by probing).
   */
  natsImage?: string;
  /** Where to keep each cluster's NATS watcher files (the operator's own leader watch). */
  natsFilesDir?: string;
  /** Namespace allowed to reach the replicas' HTTP port through each cluster's NetworkPolicy. */
  monitoringNamespace?: string;
  /** Lifetime of the certificates the operator issues (default 90 days; renewed at 2/3). */
  certificateLifetimeMs?: number;
  logger?: Logger;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  notReadyRequeueMs?: number;
  informer?: InformerOptions;
  /** How the membership driver reaches replicas (tests give a scripted one; default gRPC). */
  membership?: ReconcilerDeps['membership'];
  /** Exit the process (code 1) when the Lease is lost, so the Deployment restarts it clean. */
  exitOnLostLease?: boolean;
  /** Replaces the NATS leader directory (tests). */
  leaders?: LeaderDirectory;
}

export class Operator {
  private controller: Controller | undefined;
  private leaders: LeaderDirectory | undefined;
  private reconciler: Reconciler | undefined;
  private http: { port: number; close(): Promise<void> } | undefined;
  private stopping = false;
  readonly metrics = new OperatorMetrics();
  readonly client: KubeClient;
  readonly elector: LeaderElector;
  readonly identity: string;
  private readonly logger: Logger;

  constructor(private readonly options: OperatorOptions) {
    this.logger = options.logger ?? pino({ name: 'shardbank-operator' });
    this.identity = options.identity ?? `${hostname()}-${process.pid}`;
    this.client = new KubeClient(options.kubeConfig, FIELD_MANAGER);
    this.elector = new LeaderElector(
      this.client,
      {
        namespace: options.leaseNamespace,
        name: options.leaseName ?? 'shardbank-operator',
        identity: this.identity,
        leaseDurationMs: options.leaseDurationMs,
        renewDeadlineMs: options.renewDeadlineMs,
        retryPeriodMs: options.retryPeriodMs,
        onStartedLeading: () => void this.lead(),
        onStoppedLeading: () => void this.stop(1),
      },
      this.logger,
    );
    this.metrics.attach({
      isLeader: () => this.elector.isLeader,
      informerStats: () => this.controller?.informerStats() ?? [],
    });
  }

  get httpPort(): number | undefined {
    return this.http?.port;
  }

  get isLeader(): boolean {
    return this.elector.isLeader;
  }

  /** True once this replica leads and its caches are synced. */
  get isActive(): boolean {
    return this.elector.isLeader && (this.controller?.synced ?? false);
  }

  async start(): Promise<void> {
    if (this.options.httpPort !== undefined) {
      this.http = await startHttpServer(this.options.httpPort, this.options.httpHost ?? '0.0.0.0', {
        healthy: () => ({ ok: !this.stopping, detail: this.stopping ? 'shutting down' : 'alive' }),
        ready: () => {
          if (this.stopping) return { ok: false, detail: 'shutting down' };
          if (!this.elector.isLeader) return { ok: true, detail: 'standby: waiting for the lease' };
          const synced = this.controller?.synced ?? false;
          return { ok: synced, detail: synced ? 'leader, caches synced' : 'leader, caches syncing' };
        },
        metrics: () => this.renderMetrics(),
      });
    }
    this.elector.start();
    this.logger.info({ identity: this.identity, httpPort: this.http?.port }, 'operator started; waiting for the lease');
  }

  private renderMetrics(): Promise<string> {
    return this.metrics.render();
  }

  private async lead(): Promise<void> {
    if (this.stopping) return;
    const logger = this.logger.child({ component: 'controller' });
    const controller = new Controller(this.client, this.metrics, logger, { informer: this.options.informer });
    this.controller = controller;
    this.leaders = this.options.leaders ?? new NatsLeaderDirectory((ns, name) => controller.enqueue(ns, name), logger);
    const events = new EventRecorder(this.client, FIELD_MANAGER, this.identity, logger);
    this.reconciler = new Reconciler({
      client: this.client,
      cache: controller,
      leaders: this.leaders,
      events,
      metrics: this.metrics,
      logger,
      build: {
        natsImage: this.options.natsImage,
        monitoringNamespace: this.options.monitoringNamespace,
        operatorNamespace: this.options.leaseNamespace,
      },
      ...(this.options.natsFilesDir ? { natsFilesDir: this.options.natsFilesDir } : {}),
      certificates: { leafLifetimeMs: this.options.certificateLifetimeMs },
      notReadyRequeueMs: this.options.notReadyRequeueMs,
      ...(this.options.membership ? { membership: this.options.membership } : {}),
    });
    controller.setReconciler(this.reconciler);
    await controller.start();
    this.logger.info('caches synced; reconciling');
  }

  /**
   * Graceful shutdown: stop taking work and finish running reconciles, then release the
   * Lease (a standby takes over at once), then close NATS watches and HTTP.
   */
  async stop(exitCode?: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await this.controller?.stop();
    await this.elector.stop();
    await this.leaders?.close();
    this.reconciler?.close();
    await this.http?.close();
    this.logger.info('operator stopped');
    if (exitCode !== undefined && this.options.exitOnLostLease) process.exit(exitCode);
  }
}
