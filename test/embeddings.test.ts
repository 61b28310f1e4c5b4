import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EmbeddingDimensionMismatchError, OpenAIEmbedder, vectorLiteral } from '../src/context/embeddings.js';
import { HashingEmbedder } from '../src/context/hashing-embedder.js';
import { type OpenAIServer, startOpenAIServer } from './support/openai-server.js';
import { cosine } from './support/vectors.js';

function norm(v: readonly number[]): number {
  return Math.sqrt(v.reduce((s, x) => s + x * x, 0));
}

describe('OpenAIEmbedder against an OpenAI-compatible server', () => {
  let server: OpenAIServer;
  const reference = new HashingEmbedder({ dimensions: 1024 });

  beforeAll(async () => {
    server = await startOpenAIServer();
  });
  afterAll(async () => {
    await server.close();
  });
  beforeEach(() => {
    server.reset();
  });

  const embedder = (opts: Partial<ConstructorParameters<typeof OpenAIEmbedder>[0]> = {}) =>
    new OpenAIEmbedder({ apiKey: 'sk-test', baseURL: server.baseURL, ...opts });

  it('returns one 1024-dimension vector per text, in input order, from one request', async () => {
    const texts = ['What are your opening hours?', 'How do I get a refund?', 'Do you deliver to Lyon?'];
    const vectors = await embedder().embed(texts);
    expect(vectors).toHaveLength(3);
    for (const [i, v] of vectors.entries()) {
      expect(v).toHaveLength(1024);
      // The server embeds with the hashing model, so each vector can be matched to its text.
      expect(v).toEqual(reference.embedOne(texts[i]!));
    }
    const requests = server.embeddingRequests();
    expect(requests).toHaveLength(1);
    expect(requests[0]?.body).toEqual({
      model: 'text-embedding-3-small',
      input: texts,
      dimensions: 1024,
      encoding_format: 'float',
    });
  });

  it('sends the configured model and dimensions', async () => {
    const e = embedder({ model: 'text-embedding-3-large', dimensions: 256 });
    const [v] = await e.embed(['hello']);
    expect(v).toHaveLength(256);
    expect(server.embeddingRequests()[0]?.body).toMatchObject({
      model: 'text-embedding-3-large',
      dimensions: 256,
    });
  });

  it('sends up to 256 texts in one request, splits 600 into 3 consecutive batches and keeps the order', async () => {
    const texts = Array.from({ length: 600 }, (_, i) => `document chunk number ${i}`);
    await embedder().embed(texts.slice(0, 256));
    expect(server.embeddingRequests()).toHaveLength(1);

    server.reset();
    const vectors = await embedder().embed(texts);
    // Batches travel concurrently, so they may arrive in any order; each is a consecutive slice.
    const batches = server
      .embeddingRequests()
      .map((r) => r.body.input as string[])
      .sort((a, b) => texts.indexOf(a[0]!) - texts.indexOf(b[0]!));
    expect(batches).toEqual([texts.slice(0, 256), texts.slice(256, 512), texts.slice(512)]);
    expect(vectors).toHaveLength(600);
    for (const i of [0, 255, 256, 511, 512, 599]) expect(vectors[i]).toEqual(reference.embedOne(texts[i]!));
  });

  it('keeps at most maxConcurrency requests in flight', async () => {
    server.setDelay('embeddings', 50);
    let inFlight = 0;
    let peak = 0;
    const countingFetch: typeof fetch = async (input, init) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      try {
        return await fetch(input, init);
      } finally {
        inFlight--;
      }
    };
    const e = embedder({ maxBatch: 10, maxConcurrency: 2, fetch: countingFetch });
    const vectors = await e.embed(Array.from({ length: 55 }, (_, i) => `text ${i}`));
    expect(vectors).toHaveLength(55);
    expect(server.embeddingRequests()).toHaveLength(6);
    expect(peak).toBe(2);
  });

  it('embeds nothing without a request', async () => {
    expect(await embedder().embed([])).toEqual([]);
    expect(server.requests).toEqual([]);
  });

  it('puts vectors back in input order when the API lists them in another', async () => {
    // The API's `index` is the contract, not the array order: reverse the list on the way back.
    const reversingFetch: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      const body = (await res.json()) as { data: unknown[] };
      body.data.reverse();
      const headers = new Headers(res.headers);
      headers.delete('content-length');
      return new Response(JSON.stringify(body), { status: res.status, headers });
    };
    const texts = ['alpha beta', 'gamma delta', 'epsilon zeta'];
    const vectors = await embedder({ fetch: reversingFetch }).embed(texts);
    expect(vectors).toEqual(texts.map((t) => reference.embedOne(t)));
  });

  it('throws EmbeddingDimensionMismatchError naming both sizes when the model returns another size', async () => {
    server.forceDimensions(512);
    const err = await embedder()
      .embed(['hello'])
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(EmbeddingDimensionMismatchError);
    const mismatch = err as EmbeddingDimensionMismatchError;
    expect(mismatch.expected).toBe(1024);
    expect(mismatch.actual).toBe(512);
    expect(mismatch.message).toContain('1024');
    expect(mismatch.message).toContain('512');
    expect(mismatch.message).toContain('EMBEDDING_DIMENSIONS');
    expect(mismatch.message).toContain('text-embedding-3-small');
  });

  it('passes API errors on without retrying (the caller owns the retry policy)', async () => {
    server.failNext('embeddings', 429, 1);
    await expect(embedder().embed(['hello'])).rejects.toMatchObject({ status: 429 });
    expect(server.embeddingRequests()).toHaveLength(1);
  });

  it('gives up when the caller aborts (a turn out of time budget)', async () => {
    server.setDelay('embeddings', 2_000);
    const started = performance.now();
    await expect(embedder().embed(['hello'], { signal: AbortSignal.timeout(50) })).rejects.toThrow();
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('refuses a nonsensical batch size at construction', () => {
    expect(() => embedder({ maxBatch: 0 })).toThrow(/maxBatch/);
  });
});

describe('vectorLiteral', () => {
  it("writes pgvector's text form, which reads back to the same numbers", () => {
    const v = [0.1, -0.25, 3, 1e-7];
    const literal = vectorLiteral(v);
    expect(literal).toBe('[0.1,-0.25,3,1e-7]');
    expect(JSON.parse(literal)).toEqual(v);
  });

  it('refuses NaN and infinities, which pgvector would reject without saying which row', () => {
    expect(() => vectorLiteral([0.1, Number.NaN])).toThrow(/element 1/);
    expect(() => vectorLiteral([Number.POSITIVE_INFINITY])).toThrow(RangeError);
  });
});

describe('HashingEmbedder', () => {
  const e = new HashingEmbedder({ dimensions: 1024 });

  it('puts texts that share words closer than unrelated texts', () => {
    const query = e.embedOne('What is your refund policy for damaged items?');
    const related = e.embedOne('Refund policy: damaged items are refunded within 30 days.');
    const unrelated = e.embedOne('The shop opens at nine on Saturdays near the harbour.');
    expect(cosine(query, related)).toBeGreaterThan(0.4);
    expect(Math.abs(cosine(query, unrelated))).toBeLessThan(0.15);
    expect(cosine(query, related)).toBeGreaterThan(cosine(query, unrelated) + 0.3);
  });

  it('is deterministic across instances and calls', async () => {
    const text = 'Deterministic vectors let seeded rows match live queries.';
    const a = await new HashingEmbedder({ dimensions: 1024 }).embed([text]);
    const b = await new HashingEmbedder({ dimensions: 1024 }).embed([text]);
    expect(a).toEqual(b);
    expect(e.embedOne(text)).toEqual(a[0]);
  });

  it('returns unit vectors of the configured size, one per text in order', async () => {
    const small = new HashingEmbedder({ dimensions: 64 });
    const texts = ['one text', 'another, longer text with more words in it', 'x'];
    const vectors = await small.embed(texts);
    expect(vectors).toHaveLength(3);
    for (const [i, v] of vectors.entries()) {
      expect(v).toHaveLength(64);
      expect(norm(v)).toBeCloseTo(1, 10);
      expect(v).toEqual(small.embedOne(texts[i]!));
    }
    expect(small.model).toBe('local-hashing-v1');
    expect(small.dimensions).toBe(64);
    // The default size is the worker's vector(1024).
    const byDefault = new HashingEmbedder();
    expect(byDefault.dimensions).toBe(1024);
    expect(await byDefault.embed(texts)).toEqual(await e.embed(texts));
  });

  it('gives empty and all-stop-word texts a fixed unit vector, never NaN', () => {
    for (const text of ['', '   ', 'the and of it', '!!!']) {
      const v = e.embedOne(text);
      expect(v.every(Number.isFinite)).toBe(true);
      expect(norm(v)).toBeCloseTo(1, 10);
      expect(v).toEqual(e.embedOne(''));
    }
    // That vector is the first unit axis.
    expect(e.embedOne('')[0]).toBe(1);
  });

  it('ignores case, punctuation and stop words, and handles non-Latin scripts', () => {
    expect(e.embedOne('Refund POLICY!')).toEqual(e.embedOne('the refund policy'));
    // The same word typed composed and decomposed (e + combining accent) is the same word.
    expect(e.embedOne('caf\u00e9 menu')).toEqual(e.embedOne('cafe\u0301 menu'));
    const hindi = e.embedOne('वापसी नीति क्या है');
    expect(cosine(hindi, e.embedOne('वापसी नीति'))).toBeGreaterThan(0.5);
  });

  it('rewards shared phrases over the same words in another order', () => {
    const q = e.embedOne('gift card balance');
    expect(cosine(q, e.embedOne('check your gift card balance'))).toBeGreaterThan(
      cosine(q, e.embedOne('balance card gift')),
    );
  });
});
