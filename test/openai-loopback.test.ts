import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EmbeddingDimensionMismatchError, OpenAIEmbedder } from '../src/context/embeddings.js';
import { HashingEmbedder } from '../src/context/hashing-embedder.js';
import { type OpenAILoopback, startOpenAILoopback } from './support/openai-loopback.js';

let server: OpenAILoopback;
let client: OpenAI;

beforeAll(async () => {
  server = await startOpenAILoopback();
  client = new OpenAI({ apiKey: 'sk-test-loopback', baseURL: server.baseURL, maxRetries: 0 });
});
afterAll(async () => {
  await server?.close();
});
beforeEach(() => server.reset());

const hashing = new HashingEmbedder({ dimensions: 1024 });

function cosine(a: readonly number[], b: readonly number[]): number {
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

function decodeBase64Floats(b64: string): number[] {
  const buf = Buffer.from(b64, 'base64');
  const out: number[] = [];
  for (let i = 0; i < buf.length; i += 4) out.push(buf.readFloatLE(i));
  return out;
}

describe('the real openai SDK against the loopback server', () => {
  it('a non-streaming chat completion answers with the responder and usage', async () => {
    const res = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'ping' },
      ],
    });
    expect(res.object).toBe('chat.completion');
    expect(res.choices[0]!.message).toMatchObject({ role: 'assistant', content: 'You said: ping' });
    expect(res.choices[0]!.finish_reason).toBe('stop');
    expect(res.usage!.total_tokens).toBe(res.usage!.prompt_tokens + res.usage!.completion_tokens);

    const [seen] = server.chatRequests();
    expect(seen!.method).toBe('POST');
    expect(seen!.path).toBe('/v1/chat/completions');
    expect(seen!.headers.authorization).toBe('Bearer sk-test-loopback');
    expect(seen!.headers['content-type']).toContain('application/json');
    expect(seen!.body.messages.at(-1)).toEqual({ role: 'user', content: 'ping' });
  });

  it('streams a reply in several chunks, role first, finish_reason stop, then a usage chunk', async () => {
    server.setResponder((body) => `Reply to ${body.messages.length} messages: the chain needs oil now.`);
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'my chain squeaks' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);

    const withChoices = chunks.filter((c) => c.choices.length > 0);
    expect(withChoices[0]!.choices[0]!.delta.role).toBe('assistant');
    const contentDeltas = withChoices.filter((c) => c.choices[0]!.delta.content);
    expect(contentDeltas.length).toBeGreaterThan(1);
    expect(contentDeltas.map((c) => c.choices[0]!.delta.content).join('')).toBe(
      'Reply to 1 messages: the chain needs oil now.',
    );
    expect(withChoices.at(-1)!.choices[0]!.finish_reason).toBe('stop');
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({
      prompt_tokens: expect.any(Number),
      completion_tokens: expect.any(Number),
    });
    expect(server.chatRequests()[0]!.body).toMatchObject({
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it('without include_usage no usage chunk is sent', async () => {
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'parts work too' }] }],
      stream: true,
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.every((c) => c.choices.length === 1 && !c.usage)).toBe(true);
    expect(chunks.map((c) => c.choices[0]!.delta.content ?? '').join('')).toBe('You said: parts work too');
  });

  it('embeddings as floats are the HashingEmbedder vectors, in input order', async () => {
    const input = ['tyre pressure for a road bike', 'water the monstera weekly'];
    const res = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input,
      dimensions: 1024,
      encoding_format: 'float',
    });
    expect(res.object).toBe('list');
    expect(res.model).toBe('text-embedding-3-small');
    expect(res.usage.total_tokens).toBeGreaterThan(0);
    expect(res.data.map((d) => d.index)).toEqual([0, 1]);
    expect(res.data.map((d) => d.object)).toEqual(['embedding', 'embedding']);
    expect(res.data[0]!.embedding).toEqual(hashing.embedOne(input[0]!));
    expect(res.data[1]!.embedding).toEqual(hashing.embedOne(input[1]!));
  });

  it('embeddings as base64 are little-endian float32 of the same vectors; the SDK default decodes them', async () => {
    const text = 'chain care every 300 kilometres';
    const expected = hashing.embedOne(text);

    const raw = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input: text,
      dimensions: 1024,
      encoding_format: 'base64',
    });
    const encoded = raw.data[0]!.embedding as unknown;
    expect(typeof encoded).toBe('string');
    const decoded = decodeBase64Floats(encoded as string);
    expect(decoded).toHaveLength(1024);
    expect(decoded).toEqual(expected.map((x) => Math.fround(x)));

    // Given no encoding_format, the SDK asks for base64 and decodes it to numbers itself.
    const implicit = await client.embeddings.create({ model: 'text-embedding-3-small', input: text });
    expect(server.embeddingRequests()[1]!.body.encoding_format).toBe('base64');
    const v = Array.from(implicit.data[0]!.embedding);
    expect(v).toHaveLength(1024);
    expect(cosine(v, expected)).toBeCloseTo(1, 6);
  });

  it('honours dimensions, and rejects bad input the way OpenAI does', async () => {
    const small = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input: 'x y z',
      dimensions: 256,
      encoding_format: 'float',
    });
    expect(small.data[0]!.embedding).toHaveLength(256);

    const err = await client.embeddings
      .create({ model: 'text-embedding-3-small', input: [], encoding_format: 'float' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).message).toContain("'input'");
  });

  it('failNext answers with the injected status for exactly the next K requests', async () => {
    server.failNext('chat', 503, 2);
    const call = () =>
      client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    for (let i = 0; i < 2; i++) {
      const err = await call().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
    }
    expect((await call()).choices[0]!.message.content).toBe('You said: hi');
    expect(server.chatRequests()).toHaveLength(3);
  });
});

describe('OpenAIEmbedder', () => {
  const embedder = (opts: { maxBatch?: number } = {}) =>
    new OpenAIEmbedder({ apiKey: 'sk-test', baseURL: server.baseURL, ...opts });

  it('returns 1024-dimension vectors in input order with one request for a small call', async () => {
    const texts = ['rear brake squeaks', 'tomatoes after the last frost', 'ESTA before departure'];
    const vectors = await embedder().embed(texts);
    expect(vectors).toHaveLength(3);
    for (const [i, v] of vectors.entries()) {
      expect(v).toHaveLength(1024);
      expect(v).toEqual(hashing.embedOne(texts[i]!));
    }
    const reqs = server.embeddingRequests();
    expect(reqs).toHaveLength(1);
    expect(reqs[0]!.body).toMatchObject({
      model: 'text-embedding-3-small',
      input: texts,
      dimensions: 1024,
      encoding_format: 'float',
    });
    expect(await embedder().embed([])).toEqual([]);
    expect(server.embeddingRequests()).toHaveLength(1);
  });

  it('sends one request per call up to maxBatch inputs; 600 inputs with maxBatch 256 are 3 requests, order kept', async () => {
    const texts = Array.from({ length: 600 }, (_, i) => `turn number ${i} about item ${i * 7}`);
    const e = embedder({ maxBatch: 256 });

    await e.embed(texts.slice(0, 256));
    expect(server.embeddingRequests()).toHaveLength(1);

    server.reset();
    const vectors = await e.embed(texts);
    const reqs = server.embeddingRequests();
    expect(reqs).toHaveLength(3);
    expect(reqs.map((r) => (r.body.input as string[]).length).sort((a, b) => b - a)).toEqual([256, 256, 88]);
    expect(vectors).toHaveLength(600);
    for (const i of [0, 255, 256, 511, 512, 599]) expect(vectors[i]).toEqual(hashing.embedOne(texts[i]!));
  });

  it('a server returning the wrong dimension is EmbeddingDimensionMismatchError naming both numbers', async () => {
    server.forceDimensions(1536);
    const err = await embedder()
      .embed(['anything'])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EmbeddingDimensionMismatchError);
    const mismatch = err as EmbeddingDimensionMismatchError;
    expect(mismatch.expected).toBe(1024);
    expect(mismatch.actual).toBe(1536);
    expect(mismatch.message).toContain('1024');
    expect(mismatch.message).toContain('1536');
  });

  it('does not retry on its own: a failure is one request and an error', async () => {
    server.failNext('embeddings', 500, 1);
    await expect(embedder().embed(['x'])).rejects.toThrow(/500/);
    expect(server.embeddingRequests()).toHaveLength(1);
  });

  it('an abort signal cuts a slow request short', async () => {
    server.setDelay('embeddings', 2000);
    const t0 = performance.now();
    await expect(embedder().embed(['slow'], { signal: AbortSignal.timeout(100) })).rejects.toThrow();
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});

describe('HashingEmbedder', () => {
  it('puts similar texts closer than unrelated ones', () => {
    const q = hashing.embedOne('what tyre pressure for my road bike?');
    const near = hashing.embedOne('Road bike tyres run at 80 to 100 psi; check tyre pressure weekly.');
    const far = hashing.embedOne('Water a monstera when the top of the soil is dry.');
    expect(cosine(q, near)).toBeGreaterThan(cosine(q, far) + 0.2);
    expect(Math.abs(cosine(q, far))).toBeLessThan(0.2);
  });

  it('is deterministic across instances and returns unit vectors of the configured size', async () => {
    const texts = ['My bike is a 2019 Trek Domane', 'the rear brake squeaks', 'the and of'];
    const a = await new HashingEmbedder().embed(texts);
    const b = await new HashingEmbedder({ dimensions: 1024 }).embed(texts);
    expect(a).toEqual(b);
    for (const v of a) {
      expect(v).toHaveLength(1024);
      expect(Math.hypot(...v)).toBeCloseTo(1, 10);
    }
    // Stop words only: a fixed unit vector, so distances stay defined.
    expect(a[2]![0]).toBe(1);
    expect(new HashingEmbedder({ dimensions: 64 }).embedOne('x')).toHaveLength(64);
  });
});
