/**
 * The known key an unknown one was probably meant to be: configuration keys
 * are mistyped (`blocksize`, `lanAdress`) or shortened (`quarantine`) far
 * more often than invented.
 */

/** Edits (insert, delete, substitute) between two strings (Levenshtein). */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitute = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, substitute);
    }
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * The closest of `known` to `word`, or undefined when none is close enough
 * to be a likely typo. Case is ignored (YAML keys are camelCase, people type
 * them otherwise), and the one key that starts with what was written counts
 * as close (`lease` for leaseSeconds, but `max` is too short a start).
 */
export function closestKey(word: string, known: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(w, k.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  if (best !== undefined && bestDistance <= Math.max(1, Math.floor(w.length / 3))) return best;
  const extending = w.length >= 3 ? known.filter((k) => k.toLowerCase().startsWith(w)) : [];
  return extending.length === 1 ? extending[0] : undefined;
}
