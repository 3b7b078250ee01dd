// Splits a list into consecutive parts of at most `size` items (the last may be shorter).
export function chunk<T>(values: readonly T[], size: number): T[][] {
  const parts: T[][] = [];
  for (let index = 0; index < values.length; index += size) parts.push(values.slice(index, index + size));
  return parts;
}
