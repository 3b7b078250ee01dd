// Assertions catch programmer errors and stay on in production (TigerBeetle style):
// a broken invariant in a ledger must stop the process, never be silently carried on.
export class InvariantViolation extends Error {
  override name = 'InvariantViolation';
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantViolation(message);
}

export function assertNever(value: never, what = 'value'): never {
  throw new InvariantViolation(`unexpected ${what}: ${JSON.stringify(value)}`);
}

/**
 * For invariants checked on a hot path whose message is built from values: write
 * `if (!cond) invariantViolated(\`...\`)`, so the message (template literal, ids turned into
 * strings) is only built when the check fails. `assert(cond, \`...\`)` builds it on every call:
 * in the replicated state machine that was a string allocation per command per replica.
 */
export function invariantViolated(message: string): never {
  throw new InvariantViolation(message);
}
