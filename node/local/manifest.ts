// Loads the BankCluster manifest for `shardbank up -f FILE` (YAML or JSON), with the
// shared validation; every error names its field.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import {
  defaultBankCluster,
  topologyOf,
  unknownBankClusterFields,
  validateBankCluster,
  type BankCluster,
} from '../cluster/bankcluster.js';
import type { Topology } from '../cluster/topology.js';

export class ManifestLoadError extends Error {
  override name = 'ManifestLoadError';
  /** The first bad field, when one is to blame. */
  field?: string;
}

export function parseManifestText(text: string, source: string): BankCluster {
  let parsed: unknown;
  try {
    parsed = parse(text);
  } catch (error) {
    throw new ManifestLoadError(`${source}: not valid YAML: ${(error as Error).message}`, { cause: error });
  }
  const validated = validateBankCluster(parsed);
  const errors = [...unknownBankClusterFields(parsed), ...(validated.ok ? [] : validated.errors)];
  if (errors.length > 0 || !validated.ok) {
    const error = new ManifestLoadError(
      `${source}: invalid BankCluster:\n${errors.map((e) => `  - ${e.message}`).join('\n')}`,
    );
    error.field = errors[0]?.field;
    throw error;
  }
  return validated.value;
}

export function loadManifest(path: string | undefined): BankCluster {
  if (path === undefined) return defaultBankCluster();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ManifestLoadError(
      `${path}: cannot read the manifest (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
      { cause: error },
    );
  }
  return parseManifestText(text, path);
}

export function manifestTopology(manifest: BankCluster): Topology {
  return topologyOf(manifest.spec);
}

export function sameTopology(a: Topology, b: Topology): boolean {
  return (
    a.shards === b.shards &&
    a.itemsPerShard === b.itemsPerShard &&
    a.replicasPerShard === b.replicasPerShard &&
    a.initialBalance === b.initialBalance
  );
}

export function describeTopology(topology: Topology): string {
  return `${topology.shards} shards x ${topology.replicasPerShard} replicas, ${topology.itemsPerShard} items per shard, initial balance ${topology.initialBalance}`;
}
