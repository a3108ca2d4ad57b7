/**
 * Counters for the per-packet path: a fixed set of names known at start,
 * stored in a Float64Array so that counting is one indexed add with no
 * allocation. Exported to Prometheus and `distnat status` by snapshot.
 */
export class CounterSet<N extends string> {
  private readonly values: Float64Array;
  private readonly index: Record<N, number>;

  constructor(readonly names: readonly N[]) {
    this.values = new Float64Array(names.length);
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
