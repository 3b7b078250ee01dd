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
