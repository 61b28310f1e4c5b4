/** Cosine similarity in double precision (pgvector sums in single precision). */
export function cosine(a: readonly number[], b: readonly number[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(na * nb);
}

/** The embedding size of every vector column (vector(1024)). */
export const DIMS = 1024;

/** mulberry32: a small seeded PRNG, so every run builds the same vectors. */
export function prng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random vector with components in [-0.5, 0.5). */
export function randomVector(rand: () => number): number[] {
  return Array.from({ length: DIMS }, () => rand() - 0.5);
}

/** `base` plus a little noise: a query that has near neighbours. */
export function near(base: readonly number[], rand: () => number, noise = 0.05): number[] {
  return base.map((x) => x + (rand() - 0.5) * noise);
}

/** pgvector's text form ('[1,2,3]'), six decimals (short text; cosine ignores the rounding). */
export const vectorLiteral = (v: readonly number[]) => `[${v.map((x) => x.toFixed(6)).join(',')}]`;
