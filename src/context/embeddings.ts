import OpenAI from 'openai';
import pMap from 'p-map';

export interface EmbedOptions {
  signal?: AbortSignal;
  /** Told the tokens each request was billed for (the API's `usage.prompt_tokens`); a local model reports none. */
  onUsage?: (usage: { promptTokens: number }) => void;
}

/** Turns texts into vectors; one vector per text, in order. */
export interface Embedder {
  readonly dimensions: number;
  readonly model: string;
  embed(texts: string[], opts?: EmbedOptions): Promise<number[][]>;
}

/**
 * Vectors of the wrong length cannot be stored in (or compared with) the databases' vector(N)
 * columns. Thrown on the first embedding call whose model returns another size, so the operator
 * sees it before any turn silently loses its context.
 */
export class EmbeddingDimensionMismatchError extends Error {
  constructor(
    /** What EMBEDDING_DIMENSIONS says. */
    readonly expected: number,
    /** What the model returned. */
    readonly actual: number,
    /** Where the other number comes from (the model). */
    readonly where: string,
  ) {
    super(
      `embedding dimensions mismatch: configured ${expected} (EMBEDDING_DIMENSIONS), but ${where} has ${actual}. ` +
        `Set EMBEDDING_DIMENSIONS to match the databases' vector(N) columns, or choose an embedding model ` +
        `that can return ${expected} dimensions (text-embedding-3-small and -large take a dimensions parameter)`,
    );
    this.name = 'EmbeddingDimensionMismatchError';
  }
}

/** The embeddings API answered, but not with one vector per input. */
export class EmbeddingResponseError extends Error {
  constructor(
    readonly model: string,
    readonly inputs: number,
    readonly vectors: number,
  ) {
    super(
      `embeddings API (model ${model}) returned ${vectors} vectors for ${inputs} inputs; ` +
        'check that EMBEDDING_BASE_URL points at an OpenAI-compatible embeddings endpoint',
    );
    this.name = 'EmbeddingResponseError';
  }
}

/**
 * A vector as pgvector's text input: what PostgREST passes on to a `vector` parameter or column.
 * pgvector refuses NaN and infinities with an error that names neither the row nor the cause, so
 * they are caught here instead.
 */
export function vectorLiteral(v: readonly number[]): string {
  for (let i = 0; i < v.length; i++) {
    if (!Number.isFinite(v[i]))
      throw new RangeError(`vector element ${i} is ${v[i]}; pgvector takes finite numbers only`);
  }
  return `[${v.join(',')}]`;
}

export interface OpenAIEmbedderOptions {
  apiKey: string;
  /** Any OpenAI-compatible server; default OpenAI's. */
  baseURL?: string | undefined;
  /** Default 'text-embedding-3-small'. */
  model?: string;
  /** Length of every vector, sent to the API and checked on the way back. Default 1024. */
  dimensions?: number;
  /** Inputs per request when embedding many texts (ingestion). Default 256. */
  maxBatch?: number;
  /** Requests in flight at once when a call needs several. Default 4. */
  maxConcurrency?: number;
  /** For tests and proxies; default the global fetch. */
  fetch?: typeof fetch;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`OpenAIEmbedder: ${name} must be a positive integer, got ${value}`);
  }
  return value;
}

/**
 * Embeddings through the OpenAI embeddings API. `dimensions` is sent with every request so that
 * text-embedding-3 models return vectors that fit the databases' vector(1024) columns.
 *
 * A call with at most `maxBatch` texts is one request (the worker embeds each user turn once);
 * larger calls (document ingestion) are split into batches, at most `maxConcurrency` in flight.
 */
export class OpenAIEmbedder implements Embedder {
  readonly dimensions: number;
  readonly model: string;
  private readonly client: OpenAI;
  private readonly maxBatch: number;
  private readonly maxConcurrency: number;

  constructor(opts: OpenAIEmbedderOptions) {
    this.model = opts.model ?? 'text-embedding-3-small';
    this.dimensions = positiveInteger('dimensions', opts.dimensions ?? 1024);
    this.maxBatch = positiveInteger('maxBatch', opts.maxBatch ?? 256);
    this.maxConcurrency = positiveInteger('maxConcurrency', opts.maxConcurrency ?? 4);
    // Retries are the caller's business: a turn's lookup has a time budget, ingestion its own policy.
    this.client = new OpenAI({
      apiKey: opts.apiKey,
      baseURL: opts.baseURL,
      maxRetries: 0,
      fetch: opts.fetch,
    });
  }

  async embed(texts: string[], opts: EmbedOptions = {}): Promise<number[][]> {
    if (texts.length === 0) return [];
    const batches: string[][] = [];
    for (let i = 0; i < texts.length; i += this.maxBatch) batches.push(texts.slice(i, i + this.maxBatch));
    // p-map starts no new batch after the first failure, and rejects with it.
    const results = await pMap(batches, (batch) => this.embedBatch(batch, opts), {
      concurrency: this.maxConcurrency,
    });
    return results.flat();
  }

  private async embedBatch(input: string[], { signal, onUsage }: EmbedOptions): Promise<number[][]> {
    // encoding_format 'float': without it the SDK asks for base64 and decodes it to Float32Array,
    // which is not the number[] this interface promises.
    const res = await this.client.embeddings.create(
      { model: this.model, input, dimensions: this.dimensions, encoding_format: 'float' },
      { signal },
    );
    if (res.usage) onUsage?.({ promptTokens: res.usage.prompt_tokens });
    if (res.data.length !== input.length) {
      throw new EmbeddingResponseError(this.model, input.length, res.data.length);
    }
    // The API documents `index` as the input's position; nothing promises the array is in that order.
    const ordered = [...res.data].sort((a, b) => a.index - b.index).map((d) => d.embedding);
    for (const v of ordered) {
      if (v.length !== this.dimensions) {
        throw new EmbeddingDimensionMismatchError(this.dimensions, v.length, `model ${this.model}`);
      }
    }
    return ordered;
  }
}
