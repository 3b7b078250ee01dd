// Ballots are (round, ordinal), totally ordered: round first, then the proposer's ordinal,
// so two replicas can never hold the same ballot.
import type { Ballot } from '../gen/shardbank/v1/peer.js';

export type { Ballot };

export const ZERO_BALLOT: Ballot = Object.freeze({ round: 0, ordinal: 0 });

export function compareBallots(a: Ballot, b: Ballot): number {
  if (a.round !== b.round) return a.round < b.round ? -1 : 1;
  if (a.ordinal !== b.ordinal) return a.ordinal < b.ordinal ? -1 : 1;
  return 0;
}

export function ballotEquals(a: Ballot, b: Ballot): boolean {
  return a.round === b.round && a.ordinal === b.ordinal;
}

export function ballotLess(a: Ballot, b: Ballot): boolean {
  return compareBallots(a, b) < 0;
}

export function maxBallot(a: Ballot, b: Ballot): Ballot {
  return compareBallots(a, b) >= 0 ? a : b;
}

export function ballotString(b: Ballot): string {
  return `${b.round}.${b.ordinal}`;
}

/** Ballots arrive from the network as optional fields; a missing one is the zero ballot. */
export function ballotOf(b: Ballot | undefined): Ballot {
  return b ?? ZERO_BALLOT;
}
