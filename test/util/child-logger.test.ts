import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { childLogger } from '../../node/util/child-logger.js';

/** The keys of one JSON log line in the order written, duplicates included (JSON.parse would merge them). */
function keysOf(line: string): string[] {
  return [...line.matchAll(/[{,]"([a-z_]+)":/gi)].map((m) => m[1]!);
}

function capture(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { lines, stream };
}

describe('childLogger', () => {
  it('writes cluster, shard and replica once per line under a replica logger that has them', async () => {
    const { lines, stream } = capture();
    const replica = pino({ base: { cluster: 'local', shard: 1, replica: 2 } }, stream);
    const announcer = childLogger(replica, { component: 'leader-announcer', cluster: 'local', shard: 1, replica: 2 });
    announcer.warn('announced');
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines).toHaveLength(1);
    const keys = keysOf(lines[0]!);
    expect(new Set(keys).size).toBe(keys.length);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      cluster: 'local',
      shard: 1,
      replica: 2,
      component: 'leader-announcer',
    });
  });

  it('binds every field under a bare logger, and keeps a field whose value differs from the parent', async () => {
    const { lines, stream } = capture();
    const bare = childLogger(pino({ base: {} }, stream), { component: 'leader-watcher', cluster: 'a' });
    bare.warn('one');
    const other = childLogger(pino({ base: { cluster: 'a' } }, stream), { cluster: 'b' });
    other.warn('two');
    await new Promise((resolve) => setImmediate(resolve));
    expect(JSON.parse(lines[0]!)).toMatchObject({ component: 'leader-watcher', cluster: 'a' });
    expect(JSON.parse(lines[1]!).cluster).toBe('b');
  });
});
