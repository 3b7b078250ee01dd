// Waiting for a condition in integration tests (see test/support/poll.ts).
import { pollUntil } from '../support/poll.js';

export function eventually<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  what: string,
  timeoutMs = 20_000,
  intervalMs = 50,
): Promise<T> {
  return pollUntil(what, probe, timeoutMs, intervalMs);
}
