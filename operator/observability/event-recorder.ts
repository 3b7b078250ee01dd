// Kubernetes Events (core/v1) about a BankCluster. Identical events for the same object
// are recorded once per suppression window, so a requeue loop does not flood the API.
import type { Logger } from 'pino';
import { errorMessage } from '../kube/api-error.js';
import type { KubeClient } from '../kube/kube-client.js';
import { RESOURCES } from '../kube/resources.js';

export interface EventTarget {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; uid?: string };
}

const suppressMs = 5 * 60_000;
const rememberedMax = 10_000;

export class EventRecorder {
  private readonly recent = new Map<string, number>();

  constructor(
    private readonly client: KubeClient,
    private readonly component: string,
    private readonly instance: string,
    private readonly logger: Logger,
  ) {}

  async record(target: EventTarget, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const key = `${target.metadata.uid}/${type}/${reason}/${message}`;
    const now = Date.now();
    const last = this.recent.get(key);
    if (last !== undefined && now - last < suppressMs) return;
    if (this.recent.size >= rememberedMax) this.recent.clear();
    this.recent.set(key, now);
    const timestamp = new Date(now).toISOString().replace(/\.\d+Z$/, 'Z');
    const namespace = target.metadata.namespace ?? 'default';
    try {
      await this.client.create(RESOURCES.event, {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: {
          name: `${target.metadata.name}.${now.toString(16)}${Math.floor(Math.random() * 0xffff).toString(16)}`,
          namespace,
        },
        involvedObject: {
          apiVersion: target.apiVersion,
          kind: target.kind,
          name: target.metadata.name,
          namespace,
          uid: target.metadata.uid,
        },
        type,
        reason,
        message,
        source: { component: this.component },
        reportingComponent: this.component,
        reportingInstance: this.instance,
        firstTimestamp: timestamp,
        lastTimestamp: timestamp,
        count: 1,
      });
    } catch (err) {
      this.logger.warn({ err: errorMessage(err), reason }, 'could not record event');
    }
  }
}
