// Polls until a check passes or a generous deadline expires (see test/support/poll.ts).
import { pollUntil } from '../../support/poll.js';

export function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  options: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  return pollUntil(what, check, options.timeoutMs ?? 90_000, options.intervalMs ?? 250);
}
