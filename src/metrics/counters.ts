/**
 * Counters for the per-packet path: a fixed set of names known at start,
 * stored in a Float64Array so that counting is one indexed add with no
 * allocation. Exported to Prometheus and `distnat status` by snapshot.
 */
export class CounterSet<N extends string> {
  private readonly values: Float64Array;
  private readonly index: Record<N, number>;

  /**
   * `values`: where to count, one element per name (a view of a
   * SharedArrayBuffer that another thread sums, see CounterSum). Default: an
   * array of its own.
   */
  constructor(
    readonly names: readonly N[],
    values?: Float64Array,
  ) {
    if (values !== undefined && values.length !== names.length)
      throw new RangeError(`${names.length} counters need as many values, not ${values.length}`);
    this.values = values ?? new Float64Array(names.length);
    this.index = Object.create(null) as Record<N, number>;
    names.forEach((n, i) => (this.index[n] = i));
  }

  inc(name: N, by = 1): void {
    this.values[this.index[name]]! += by;
  }

  get(name: N): number {
    return this.values[this.index[name]]!;
  }

  snapshot(): Record<N, number> {
    const out = {} as Record<N, number>;
    this.names.forEach((n, i) => (out[n] = this.values[i]!));
    return out;
  }
}

/** What the status and metrics read of a counter set: a CounterSet, or the sum of several. */
export interface CounterReader<N extends string> {
  readonly names: readonly N[];
  get(name: N): number;
  snapshot(): Record<N, number>;
}

/**
 * The sum of counter sets other threads count into (each a CounterSet over
 * one of `parts`, views of SharedArrayBuffers): read without asking them.
 * A value read while a thread adds to it is the one before or after the add
 * (aligned 8-byte words on the machines distnat runs on).
 */
export class CounterSum<N extends string> implements CounterReader<N> {
  private readonly index: Record<N, number>;

  constructor(
    readonly names: readonly N[],
    private readonly parts: readonly Float64Array[],
  ) {
    this.index = Object.create(null) as Record<N, number>;
    names.forEach((n, i) => (this.index[n] = i));
  }

  get(name: N): number {
    const i = this.index[name];
    let sum = 0;
    for (const p of this.parts) sum += p[i]!;
    return sum;
  }

  /** One part's value (a worker's own count). */
  partOf(part: number, name: N): number {
    return this.parts[part]![this.index[name]]!;
  }

  snapshot(): Record<N, number> {
    const out = {} as Record<N, number>;
    this.names.forEach((n) => (out[n] = this.get(n)));
    return out;
  }
}
