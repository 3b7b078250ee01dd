// The informer against a scripted API: list then watch from the list's resourceVersion,
// 410 Gone → relist, a server-closed stream → resume without relist, a silent stream →
// the watchdog restarts it, periodic resync.
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Informer, type InformerEventType } from '../../operator/controller/informer.js';
import type { KubeClient, WatchEvent, WatchHandle } from '../../operator/kube/kube-client.js';
import type { KubeObject } from '../../operator/kube/kube-object.js';
import { RESOURCES } from '../../operator/kube/resources.js';
import { eventually } from './support/eventually.js';

function obj(name: string, rv: string): KubeObject {
  return { metadata: { name, namespace: 'ns', resourceVersion: rv } };
}

class ScriptedApi {
  lists: KubeObject[][] = [];
  listRvs: string[] = [];
  listCalls = 0;
  watchCalls: string[] = [];
  private current: { emit: (e: WatchEvent) => void; end: () => void } | undefined;

  list = async () => {
    const items = this.lists[Math.min(this.listCalls, this.lists.length - 1)] ?? [];
    const rv = this.listRvs[Math.min(this.listCalls, this.listRvs.length - 1)] ?? '1';
    this.listCalls += 1;
    return { metadata: { resourceVersion: rv }, items };
  };

  watch = async (
    _r: unknown,
    params: { resourceVersion: string },
    onEvent: (e: WatchEvent) => void,
  ): Promise<WatchHandle> => {
    this.watchCalls.push(params.resourceVersion);
    let end!: () => void;
    const done = new Promise<void>((resolve) => (end = resolve));
    this.current = { emit: onEvent, end };
    return { done, abort: () => end() };
  };

  emit(e: WatchEvent): void {
    this.current!.emit(e);
  }

  endStream(): void {
    this.current!.end();
  }

  asClient(): KubeClient {
    return this as unknown as KubeClient;
  }
}

const informers: Informer<KubeObject>[] = [];
afterEach(async () => {
  for (const i of informers.splice(0)) await i.stop();
});

function start(api: ScriptedApi, options: ConstructorParameters<typeof Informer>[4] = {}) {
  const events: [InformerEventType, string][] = [];
  const informer = new Informer<KubeObject>(
    api.asClient(),
    RESOURCES.statefulSet,
    (t, o) => events.push([t, o.metadata.name]),
    pino({ level: 'silent' }),
    {
      retryMs: 10,
      ...options,
    },
  );
  informers.push(informer);
  informer.start();
  return { informer, events };
}

describe('Informer', () => {
  it('lists, then watches from the list resourceVersion and keeps its cache current', async () => {
    const api = new ScriptedApi();
    api.lists = [[obj('a', '5')]];
    api.listRvs = ['10'];
    const { informer, events } = start(api);
    await eventually('watch opened', () => api.watchCalls.length === 1);
    expect(api.watchCalls[0]).toBe('10');
    expect(informer.hasSynced).toBe(true);
    api.emit({ type: 'ADDED', object: obj('b', '11') });
    api.emit({ type: 'MODIFIED', object: obj('a', '12') });
    api.emit({ type: 'DELETED', object: obj('b', '13') });
    expect(events).toEqual([
      ['add', 'a'],
      ['add', 'b'],
      ['update', 'a'],
      ['delete', 'b'],
    ]);
    expect(informer.list().map((o) => o.metadata.name)).toEqual(['a']);
    expect(informer.get('ns/a')?.metadata.resourceVersion).toBe('12');
  });

  it('relists on 410 Gone and reports objects that vanished meanwhile', async () => {
    const api = new ScriptedApi();
    api.lists = [[obj('a', '5'), obj('b', '6')], [obj('b', '30')]];
    api.listRvs = ['10', '31'];
    const { informer, events } = start(api);
    await eventually('first watch', () => api.watchCalls.length === 1);
    api.emit({
      type: 'ERROR',
      object: { metadata: { name: '' }, code: 410, reason: 'Expired', message: 'too old resource version' },
    });
    await eventually('second watch after relist', () => api.watchCalls.length === 2);
    expect(api.watchCalls).toEqual(['10', '31']);
    expect(api.listCalls).toBe(2);
    expect(informer.stats.relists).toBe(2);
    expect(events).toEqual([
      ['add', 'a'],
      ['add', 'b'],
      ['update', 'b'],
      ['delete', 'a'],
    ]);
  });

  it('resumes from the last seen resourceVersion (bookmarks too) when the server ends the stream', async () => {
    const api = new ScriptedApi();
    api.listRvs = ['10'];
    start(api);
    await eventually('first watch', () => api.watchCalls.length === 1);
    api.emit({ type: 'ADDED', object: obj('a', '15') });
    api.emit({ type: 'BOOKMARK', object: obj('', '20') });
    api.endStream();
    await eventually('second watch', () => api.watchCalls.length === 2);
    expect(api.watchCalls).toEqual(['10', '20']);
    expect(api.listCalls).toBe(1);
  });

  it('restarts a stream that stays silent past the stall deadline', async () => {
    const api = new ScriptedApi();
    api.listRvs = ['7'];
    const { informer } = start(api, { stallMs: 200 });
    await eventually('watch restarted by the watchdog', () => api.watchCalls.length >= 2, { timeoutMs: 30_000 });
    expect(informer.stats.stalls).toBeGreaterThanOrEqual(1);
    expect(api.watchCalls[1]).toBe('7');
    expect(api.listCalls).toBe(1);
  });

  it('hands every cached object to the handler again on resync', async () => {
    const api = new ScriptedApi();
    api.lists = [[obj('a', '1'), obj('b', '2')]];
    const { events } = start(api, { resyncMs: 50 });
    await eventually('resync events', () => events.filter(([t]) => t === 'resync').length >= 2, { timeoutMs: 30_000 });
  });
});
