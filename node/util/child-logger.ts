// A child logger that binds only what its parent does not already carry. pino writes every
// binding of every level of a child chain into each line, so a component that adds cluster,
// shard and replica under a replica's logger (whose base already has them) printed each key
// twice per line: duplicate keys in JSON, which some log shippers reject and others merge.
import type { Logger } from 'pino';

export function childLogger(parent: Logger, bindings: Record<string, string | number>): Logger {
  const bound = parent.bindings();
  const extra: Record<string, string | number> = {};
  for (const [key, value] of Object.entries(bindings)) if (bound[key] !== value) extra[key] = value;
  return parent.child(extra);
}
