// List-then-watch cache of one resource kind across all namespaces.
//  - lists, then watches from the list's resourceVersion, resuming from the last seen one
//    (bookmarks included) when the server ends a stream;
//  - 410 Gone (on open or as an ERROR event) leads to a fresh list;
//  - a periodic resync hands every cached object to the handler again;
//  - a watchdog aborts a stream that has been silent longer than the server's own
//    timeout plus slack (a half-open TCP connection never ends by itself).
import type { Logger } from 'pino';
import { errorMessage, isGone, KubeApiError } from '../kube/api-error.js';
import type { KubeClient, WatchEvent, WatchHandle } from '../kube/kube-client.js';
import { objectKey, type KubeObject } from '../kube/kube-object.js';
import type { ResourceKind } from '../kube/resources.js';

export type InformerEventType = 'add' | 'update' | 'delete' | 'resync';
export type InformerHandler<T extends KubeObject> = (type: InformerEventType, object: T) => void;

export interface InformerOptions {
  labelSelector?: string;
  resyncMs?: number;
  watchTimeoutSeconds?: number;
  /** A stream with no event (bookmarks count) for this long is aborted and resumed. */
  stallMs?: number;
  retryMs?: number;
}

export interface InformerStats {
  relists: number;
  watchRestarts: number;
  stalls: number;
}

export class Informer<T extends KubeObject> {
  private readonly cache = new Map<string, T>();
  private resourceVersion = '';
  private running = false;
  private synced = false;
  private stream: WatchHandle | undefined;
  private lastEventAt = 0;
  private timers: NodeJS.Timeout[] = [];
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  readonly stats: InformerStats = { relists: 0, watchRestarts: 0, stalls: 0 };
  private readonly opts: Required<Omit<InformerOptions, 'labelSelector'>> & { labelSelector?: string };

  constructor(
    private readonly client: KubeClient,
    private readonly resource: ResourceKind,
    private readonly handler: InformerHandler<T>,
    private readonly logger: Logger,
    options: InformerOptions = {},
  ) {
    this.opts = {
      resyncMs: options.resyncMs ?? 5 * 60_000,
      watchTimeoutSeconds: options.watchTimeoutSeconds ?? 300,
      stallMs: options.stallMs ?? ((options.watchTimeoutSeconds ?? 300) + 60) * 1000,
      retryMs: options.retryMs ?? 1_000,
      labelSelector: options.labelSelector,
    };
  }

  get hasSynced(): boolean {
    return this.synced;
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.timers.push(setInterval(() => this.resync(), this.opts.resyncMs));
    this.timers.push(setInterval(() => this.checkStall(), Math.min(this.opts.stallMs / 4, 10_000)));
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.stream?.abort();
    this.wake?.();
    await this.loop;
  }

  private resync(): void {
    for (const object of this.cache.values()) this.handler('resync', object);
  }

  private checkStall(): void {
    if (this.stream && Date.now() - this.lastEventAt > this.opts.stallMs) {
      this.stats.stalls += 1;
      this.logger.warn({ resource: this.resource.plural }, 'watch stream silent too long: restarting it');
      this.stream.abort();
    }
  }

  private async run(): Promise<void> {
    let needList = true;
    while (this.running) {
      try {
        if (needList) await this.relist();
        needList = false;
        await this.watchOnce();
      } catch (err) {
        if (isGone(err)) {
          needList = true;
          continue;
        }
        this.logger.warn({ resource: this.resource.plural, err: errorMessage(err) }, 'list/watch failed; retrying');
        // An API error may mean our resourceVersion is unusable: list again. A network
        // error just resumes the watch from where it was.
        if (err instanceof KubeApiError) needList = true;
        await this.pause(this.opts.retryMs);
      }
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /** Lists everything and replaces the cache, telling the handler what changed. */
  private async relist(): Promise<void> {
    this.stats.relists += 1;
    const list = await this.client.list<T>(this.resource, undefined, this.opts.labelSelector);
    const seen = new Set<string>();
    for (const object of list.items) {
      const key = objectKey(object);
      seen.add(key);
      const old = this.cache.get(key);
      this.cache.set(key, object);
      if (!old) this.handler('add', object);
      else if (old.metadata.resourceVersion !== object.metadata.resourceVersion) this.handler('update', object);
    }
    for (const [key, old] of this.cache) {
      if (!seen.has(key)) {
        this.cache.delete(key);
        this.handler('delete', old);
      }
    }
    this.resourceVersion = list.metadata.resourceVersion ?? '';
    this.synced = true;
  }

  private async watchOnce(): Promise<void> {
    let gone = false;
    this.lastEventAt = Date.now();
    this.stream = await this.client.watch(
      this.resource,
      {
        resourceVersion: this.resourceVersion,
        timeoutSeconds: this.opts.watchTimeoutSeconds,
        labelSelector: this.opts.labelSelector,
      },
      (event) => {
        this.lastEventAt = Date.now();
        if (this.apply(event) === 'gone') {
          gone = true;
          this.stream?.abort();
        }
      },
    );
    await this.stream.done;
    this.stream = undefined;
    this.stats.watchRestarts += 1;
    if (gone) throw new KubeApiError(410, 'Expired', 'watch: resourceVersion too old');
  }

  private apply(event: WatchEvent): 'ok' | 'gone' {
    const object = event.object as T;
    switch (event.type) {
      case 'ERROR':
        if (event.object.code === 410) return 'gone';
        this.logger.warn({ resource: this.resource.plural, status: event.object }, 'watch error event');
        return 'gone';
      case 'BOOKMARK':
        this.resourceVersion = object.metadata.resourceVersion ?? this.resourceVersion;
        return 'ok';
      case 'ADDED':
      case 'MODIFIED': {
        const key = objectKey(object);
        const existed = this.cache.has(key);
        this.cache.set(key, object);
        this.resourceVersion = object.metadata.resourceVersion ?? this.resourceVersion;
        this.handler(existed ? 'update' : 'add', object);
        return 'ok';
      }
      case 'DELETED':
        this.cache.delete(objectKey(object));
        this.resourceVersion = object.metadata.resourceVersion ?? this.resourceVersion;
        this.handler('delete', object);
        return 'ok';
      default:
        return 'ok';
    }
  }
}
