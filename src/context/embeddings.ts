import OpenAI from 'openai';

/** Turns texts into vectors; one vector per text, in order. */
export interface Embedder {
  readonly dimensions: number;
  readonly model: string;
  embed(texts: string[], opts?: { signal?: AbortSignal }): Promise<number[][]>;
}

export class EmbeddingDimensionMismatchError extends Error {
  constructor(
    readonly expected: number,
    readonly actual: number,
    where: string,
  ) {
    super(
      `embedding dimensions mismatch (${where}): configured ${expected}, got ${actual}. Set EMBEDDING_DIMENSIONS to match the vector(N) columns, or choose an embedding model that can return ${expected} dimensions`,
    );
    this.name = 'EmbeddingDimensionMismatchError';
  }
}

/** Fails at startup, not at the first turn, when the database's vector columns disagree with the config. */
export function assertColumnDimensions(expected: number, actual: number | null, where: string): void {
  if (actual !== null && actual !== expected)
    throw new EmbeddingDimensionMismatchError(expected, actual, where);
}

/** A vector as pgvector's text input: what PostgREST passes on to a `vector` parameter or column. */
export function vectorLiteral(v: readonly number[]): string {
  return `[${v.join(',')}]`;
}

export interface OpenAIEmbedderOptions {
  apiKey: string;
  /** Any OpenAI-compatible server. */
  baseURL?: string | undefined;
  model?: string;
  dimensions?: number;
  /** Inputs per request when embedding many texts (ingestion). */
  maxBatch?: number;
  fetch?: typeof fetch;
}

/**
 * Embeddings through the OpenAI embeddings API. `dimensions` is sent with every request so that
 * text-embedding-3 models return vectors that fit the databases' vector(1024) columns.
 */
export class OpenAIEmbedder implements Embedder {
  readonly dimensions: number;
  readonly model: string;
  private readonly client: OpenAI;
  private readonly maxBatch: number;

  constructor(opts: OpenAIEmbedderOptions) {
    this.model = opts.model ?? 'text-embedding-3-small';
    this.dimensions = opts.dimensions ?? 1024;
    this.maxBatch = opts.maxBatch ?? 256;
    // Retries are the caller's business: a turn's lookup has a time budget, ingestion its own policy.
    this.client = new OpenAI({
      apiKey: opts.apiKey,
      baseURL: opts.baseURL,
      maxRetries: 0,
      fetch: opts.fetch,
    });
  }

  async embed(texts: string[], opts: { signal?: AbortSignal } = {}): Promise<number[][]> {
    if (texts.length === 0) return [];
    const batches: string[][] = [];
    for (let i = 0; i < texts.length; i += this.maxBatch) batches.push(texts.slice(i, i + this.maxBatch));
    const results = await Promise.all(batches.map((batch) => this.embedBatch(batch, opts.signal)));
    return results.flat();
  }

  private async embedBatch(input: string[], signal: AbortSignal | undefined): Promise<number[][]> {
    const res = await this.client.embeddings.create(
      { model: this.model, input, dimensions: this.dimensions, encoding_format: 'float' },
      { signal },
    );
    const ordered = [...res.data].sort((a, b) => a.index - b.index).map((d) => d.embedding);
    if (ordered.length !== input.length) {
      throw new Error(`embeddings API returned ${ordered.length} vectors for ${input.length} inputs`);
    }
    for (const v of ordered) {
      if (v.length !== this.dimensions) {
        throw new EmbeddingDimensionMismatchError(this.dimensions, v.length, `model ${this.model}`);
      }
    }
    return ordered;
  }
}
