// The `--endpoints` / `--peers` list format shared with the replica: shards separated by
// `;`, replicas of a shard (by ordinal) by `,`: `h:p,h:p,h:p;h:p,h:p,h:p`.
import { assert } from '../util/assert.js';

export const ENDPOINTS_SHARDS_MAX = 64;
export const ENDPOINTS_REPLICAS_MAX = 7;

export class EndpointsError extends Error {
  override name = 'EndpointsError';
}

const HOST_PORT_PATTERN = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})$/;

export function isHostPort(text: string): boolean {
  const match = HOST_PORT_PATTERN.exec(text);
  if (match === null) return false;
  const port = Number(match[2]);
  return port >= 1 && port <= 65535;
}

/** Parses `h:p,h:p;h:p,h:p` into `[shard][ordinal]` addresses; throws EndpointsError naming the bad part. */
export function parseEndpoints(text: string): string[][] {
  const trimmed = text.trim();
  if (trimmed.length === 0) throw new EndpointsError('endpoints: must not be empty (format h:p,h:p;h:p,h:p)');
  const shards = trimmed.split(';').map((group, shard) => {
    const replicas = group.split(',').map((part) => part.trim());
    for (const address of replicas) {
      if (!isHostPort(address)) {
        throw new EndpointsError(
          `endpoints: shard ${shard}: ${JSON.stringify(address)} is not host:port (format h:p,h:p;h:p,h:p)`,
        );
      }
    }
    if (replicas.length > ENDPOINTS_REPLICAS_MAX) {
      throw new EndpointsError(
        `endpoints: shard ${shard} lists ${replicas.length} replicas, at most ${ENDPOINTS_REPLICAS_MAX}`,
      );
    }
    return replicas;
  });
  if (shards.length > ENDPOINTS_SHARDS_MAX) {
    throw new EndpointsError(`endpoints: ${shards.length} shards, at most ${ENDPOINTS_SHARDS_MAX}`);
  }
  return shards;
}

export function formatEndpoints(endpoints: readonly (readonly string[])[]): string {
  assert(endpoints.length > 0, 'formatEndpoints: no shard');
  return endpoints.map((replicas) => replicas.join(',')).join(';');
}
