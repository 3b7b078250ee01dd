// Client-side checks of a transfer's arguments. They give a clear message early; the
// server validates everything again and is the authority (SPEC section 2).
import { isItem, itemCount, type Topology } from '../cluster/topology.js';

export const CLIENT_ID_LENGTH_MAX = 128;

export interface TransferInput {
  readonly from: number;
  readonly to: number;
  readonly amount: number;
}

export type InputCheck = { ok: true } | { ok: false; field: string; message: string };

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

export function checkItem(topology: Topology, field: string, value: unknown): InputCheck {
  if (typeof value !== 'number' || !isItem(topology, value)) {
    return {
      ok: false,
      field,
      message: `${field}: must be an item from 1 to ${itemCount(topology)}, got ${describe(value)}`,
    };
  }
  return { ok: true };
}

export function checkAmount(value: unknown, amountMax: number): InputCheck {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    return { ok: false, field: 'amount', message: `amount: must be a positive integer, got ${describe(value)}` };
  }
  if (value > amountMax) {
    return { ok: false, field: 'amount', message: `amount: must be at most ${amountMax}, got ${value}` };
  }
  return { ok: true };
}

export function checkClientId(value: unknown): InputCheck {
  if (typeof value !== 'string' || value.length === 0 || value.length > CLIENT_ID_LENGTH_MAX) {
    return {
      ok: false,
      field: 'client_id',
      message: `client_id: must be 1 to ${CLIENT_ID_LENGTH_MAX} characters, got ${describe(value)}`,
    };
  }
  return { ok: true };
}

export function checkRequestId(value: unknown): InputCheck {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    return {
      ok: false,
      field: 'request_id',
      message: `request_id: must be a positive integer, got ${describe(value)}`,
    };
  }
  return { ok: true };
}

/** The first problem with a transfer's arguments, or ok. */
export function checkTransferInput(topology: Topology, input: TransferInput, amountMax: number): InputCheck {
  const checks = [
    checkItem(topology, 'from', input.from),
    checkItem(topology, 'to', input.to),
    checkAmount(input.amount, amountMax),
  ];
  for (const check of checks) if (!check.ok) return check;
  if (input.from === input.to) return { ok: false, field: 'to', message: `to: must differ from from (${input.from})` };
  return { ok: true };
}

/**
 * Parses a command-line number strictly: `"10"` → 10, `"1.5"` → 1.5, `"-1"` → -1; `"1e3"`,
 * `"abc"`, `""` stay strings. The checks above then name the field and show what was given.
 */
export function parseIntegerArgument(text: string): number | string {
  const trimmed = text.trim();
  if (!/^-?[0-9]+(\.[0-9]+)?$/.test(trimmed)) return text;
  const value = Number(trimmed);
  return Number.isFinite(value) && Math.abs(value) <= Number.MAX_SAFE_INTEGER ? value : text;
}
