import type { Embedder } from './embeddings.js';

const STOP_WORDS = new Set(
  (
    'a an and are as at be but by do does for from has have how i in is it its me my of on or our so ' +
    'that the their them then there these they this to was we were what when where which who why will ' +
    'with you your can could would should about into than too very just also'
  ).split(' '),
);

/** FNV-1a, 32 bit: fast and stable across runs and machines. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Words: runs of letters, combining marks (so Devanagari or decomposed accents stay one word) and
 * digits, after NFKC so the same text typed two ways embeds the same.
 */
function tokenize(text: string): string[] {
  return (
    text
      .normalize('NFKC')
      .toLowerCase()
      .match(/[\p{L}\p{M}\p{N}]+/gu) ?? []
  );
}

/**
 * A deterministic local embedding model (feature hashing of words and word pairs). Texts that
 * share words are close; unrelated texts are near-orthogonal. It is what the embedded stack's demo
 * data and the loopback OpenAI-compatible test server use, and the worker's embedder when no
 * OpenAI key is configured, so retrieval works offline. Not a substitute for a real model in
 * production: it knows nothing of synonyms.
 */
export class HashingEmbedder implements Embedder {
  readonly model = 'local-hashing-v1';
  readonly dimensions: number;

  constructor(opts: { dimensions?: number } = {}) {
    const dimensions = opts.dimensions ?? 1024;
    if (!Number.isInteger(dimensions) || dimensions < 1) {
      throw new RangeError(`HashingEmbedder: dimensions must be a positive integer, got ${dimensions}`);
    }
    this.dimensions = dimensions;
  }

  /** Synchronous work behind the async interface; there is nothing to cancel. */
  async embed(texts: string[]): Promise<number[][]> {
    return texts.map((t) => this.embedOne(t));
  }

  embedOne(text: string): number[] {
    const v = new Float64Array(this.dimensions);
    const words = tokenize(text).filter((w) => !STOP_WORDS.has(w));
    // Bucket from the hash's value, sign from its top bit: colliding features cancel out on
    // average instead of piling up, so unrelated texts stay near-orthogonal.
    const add = (feature: string, weight: number) => {
      const h = fnv1a(feature);
      v[h % this.dimensions]! += h & 0x80000000 ? -weight : weight;
    };
    // Bigrams (at half weight) reward shared phrases over the same words in another order.
    for (let i = 0; i < words.length; i++) {
      add(words[i]!, 1);
      if (i + 1 < words.length) add(`${words[i]} ${words[i + 1]}`, 0.5);
    }
    let sumSquares = 0;
    for (const x of v) sumSquares += x * x;
    let norm = Math.sqrt(sumSquares);
    if (norm === 0) {
      // Nothing but stop words: a fixed unit vector, so distances stay defined.
      v[0] = 1;
      norm = 1;
    }
    return Array.from(v, (x) => x / norm);
  }
}
