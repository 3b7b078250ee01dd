// The work queue's guarantees (dedup, one worker per key, re-queue after done) and the
// rate limiter's backoff.
import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../../operator/controller/rate-limiter.js';
import { WorkQueue } from '../../operator/controller/work-queue.js';

describe('WorkQueue', () => {
  it('queues a key once however often it is added', async () => {
    const q = new WorkQueue();
    q.add('ns/a');
    q.add('ns/b');
    q.add('ns/a');
    expect(q.length).toBe(2);
    expect(await q.get()).toBe('ns/a');
    expect(await q.get()).toBe('ns/b');
  });

  it('never hands a key in progress to a second worker, and queues it again when done', async () => {
    const q = new WorkQueue();
    q.add('ns/a');
    const key = await q.get();
    q.add('ns/a');
    expect(q.length).toBe(0);
    let second: string | undefined;
    const waiting = q.get().then((k) => (second = k));
    await Promise.resolve();
    expect(second).toBeUndefined();
    q.done(key!);
    await waiting;
    expect(second).toBe('ns/a');
  });

  it('hands a key to a waiting worker at once', async () => {
    const q = new WorkQueue();
    const waiting = q.get();
    q.add('ns/x');
    expect(await waiting).toBe('ns/x');
  });

  it('adds a key later with addAfter and rate-limited retries', async () => {
    const q = new WorkQueue({ baseDelayMs: 5, maxDelayMs: 20 });
    expect(q.addRateLimited('ns/a')).toBe(5);
    expect(await q.get()).toBe('ns/a');
    q.done('ns/a');
    expect(q.addRateLimited('ns/a')).toBe(10);
    expect(await q.get()).toBe('ns/a');
  });

  it('resolves waiting workers with undefined on shutdown and ignores later adds', async () => {
    const q = new WorkQueue();
    const waiting = q.get();
    q.shutDown();
    expect(await waiting).toBeUndefined();
    q.add('ns/a');
    expect(await q.get()).toBeUndefined();
  });
});

describe('RateLimiter', () => {
  it('backs off exponentially per key up to the maximum, and forget resets it', () => {
    const r = new RateLimiter({ baseDelayMs: 100, maxDelayMs: 1000, burst: 1000 });
    expect([r.when('a'), r.when('a'), r.when('a'), r.when('a'), r.when('a')]).toEqual([100, 200, 400, 800, 1000]);
    expect(r.when('b')).toBe(100);
    r.forget('a');
    expect(r.when('a')).toBe(100);
  });

  it('limits the overall retry rate once the burst is spent', () => {
    let now = 0;
    const r = new RateLimiter({ baseDelayMs: 1, ratePerSecond: 10, burst: 2 }, () => now);
    expect(r.when('a')).toBe(1);
    expect(r.when('b')).toBe(1);
    expect(r.when('c')).toBe(100);
    now = 1000;
    expect(r.when('d')).toBe(1);
  });
});
