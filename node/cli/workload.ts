// The transfer workload of bench and chaos: random (from, to) pairs, uniform or Zipf
// skewed, with a given share crossing shards. Pure apart from the injected random source.
import { itemCount, shardOfItem, type Topology } from '../cluster/topology.js';
import { assert } from '../util/assert.js';

export const PAIR_TRIES_MAX = 64;

export interface WorkloadSpec {
  readonly topology: Topology;
  /** Share of transfers whose `to` lives on another shard than `from` (0..1). */
  readonly crossShardRatio: number;
  /** Zipf exponent; 0 means uniform. */
  readonly zipfExponent: number;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Samples items 1..n; with Zipf, hot ranks are scattered over the shards by a fixed permutation. */
export class ItemSampler {
  private readonly cdf: Float64Array | undefined;
  private readonly stride: number;

  constructor(
    private readonly count: number,
    exponent: number,
    private readonly random: () => number,
  ) {
    assert(count >= 1, 'ItemSampler needs at least one item');
    assert(exponent >= 0, 'zipf exponent must not be negative');
    let stride = Math.max(1, Math.floor(count * 0.618033988749895));
    while (gcd(stride, count) !== 1) stride += 1;
    this.stride = stride;
    if (exponent > 0) {
      this.cdf = new Float64Array(count);
      let total = 0;
      for (let rank = 0; rank < count; rank += 1) {
        total += 1 / (rank + 1) ** exponent;
        this.cdf[rank] = total;
      }
      for (let rank = 0; rank < count; rank += 1) this.cdf[rank]! /= total;
    }
  }

  next(): number {
    if (this.cdf === undefined) return 1 + Math.floor(this.random() * this.count);
    const target = this.random();
    let low = 0;
    let high = this.count - 1;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.cdf[middle]! < target) low = middle + 1;
      else high = middle;
    }
    return 1 + ((low * this.stride) % this.count);
  }
}

export class PairGenerator {
  private readonly sampler: ItemSampler;

  constructor(
    private readonly spec: WorkloadSpec,
    private readonly random: () => number = Math.random,
  ) {
    assert(spec.crossShardRatio >= 0 && spec.crossShardRatio <= 1, 'crossShardRatio must be within 0..1');
    assert(itemCount(spec.topology) >= 2, 'a workload needs at least two items');
    this.sampler = new ItemSampler(itemCount(spec.topology), spec.zipfExponent, random);
  }

  next(): { from: number; to: number } {
    const topology = this.spec.topology;
    const from = this.sampler.next();
    const wantCross = topology.shards > 1 && this.random() < this.spec.crossShardRatio;
    const fromShard = shardOfItem(topology, from);
    const fits = (to: number) => to !== from && (shardOfItem(topology, to) !== fromShard) === wantCross;
    for (let tries = 0; tries < PAIR_TRIES_MAX; tries += 1) {
      const to = this.sampler.next();
      if (fits(to)) return { from, to };
    }
    return { from, to: this.uniformPartner(from, fromShard, wantCross) };
  }

  /** A partner drawn uniformly when the skewed draw keeps missing (e.g. one hot item). */
  private uniformPartner(from: number, fromShard: number, cross: boolean): number {
    const { itemsPerShard, shards } = this.spec.topology;
    if (cross) {
      const shard = (fromShard + 1 + Math.floor(this.random() * (shards - 1))) % shards;
      return shard * itemsPerShard + 1 + Math.floor(this.random() * itemsPerShard);
    }
    assert(itemsPerShard >= 2 || shards > 1, 'no partner item exists');
    const first = fromShard * itemsPerShard + 1;
    const offset = Math.floor(this.random() * (itemsPerShard - 1));
    const to = first + offset;
    return to >= from ? to + 1 : to;
  }
}
