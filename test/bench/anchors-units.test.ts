// The comparison workloads' pure parts: argument checks, the uniform pair, quantiles.
import { describe, expect, it } from 'vitest';
import { ACCOUNTS, parseWorkloadArgs, quantile, randomPair } from '../../node/bench/anchors/closed-loop.js';

describe('comparison workload driver', () => {
  it('draws two distinct accounts from 1 to 9000, every account reachable on both sides', () => {
    const seenFrom = new Set<number>();
    const seenTo = new Set<number>();
    let step = 0;
    // A deterministic sweep of the random source over [0, 1).
    const sweep = () => (step++ * 0.61803398875) % 1;
    const bad: [number, number][] = [];
    for (let i = 0; i < 200_000; i += 1) {
      const [from, to] = randomPair(sweep);
      if (from === to || !(from >= 1 && from <= ACCOUNTS && to >= 1 && to <= ACCOUNTS)) bad.push([from, to]);
      seenFrom.add(from);
      seenTo.add(to);
    }
    expect(bad).toEqual([]);
    expect(seenFrom.size).toBe(ACCOUNTS);
    expect(seenTo.size).toBe(ACCOUNTS);
    expect(randomPair(() => 0)).toEqual([1, 2]);
    expect(randomPair(() => 0.9999999)).toEqual([ACCOUNTS, ACCOUNTS - 1]);
  });

  it('takes nearest-rank quantiles and refuses bad arguments naming them', () => {
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(quantile(sorted, 0.5)).toBe(50);
    expect(quantile(sorted, 0.99)).toBe(99);
    expect(quantile([], 0.5)).toBe(0);
    expect(parseWorkloadArgs(['16', '10'])).toEqual({ clients: 16, seconds: 10 });
    expect(() => parseWorkloadArgs(['0', '10'])).toThrow(/^CLIENTS: /);
    expect(() => parseWorkloadArgs(['4', 'ten'])).toThrow(/^SECONDS: /);
  });
});
