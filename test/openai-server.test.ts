import { initializeLogger } from '@livekit/agents';
import * as openaiPlugin from '@livekit/agents-plugin-openai';
import { AudioFrame } from '@livekit/rtc-node';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { HashingEmbedder } from '../src/context/hashing-embedder.js';
import { type OpenAIServer, startOpenAIServer } from './support/openai-server.js';
import { loadSpeech } from './support/voice-harness.js';
import { parseWav, wavBytes } from './support/wav.js';

// The loopback server is only useful if the real SDK cannot tell it from OpenAI: every test here
// goes through the official `openai` client, as the worker and LiveKit's plugin do.

let server: OpenAIServer;
let client: OpenAI;

beforeAll(async () => {
  server = await startOpenAIServer();
  client = new OpenAI({ apiKey: 'sk-test', baseURL: server.baseURL, maxRetries: 0 });
});
afterAll(async () => {
  await server.close();
});
beforeEach(() => {
  server.reset();
});

/** What the API sends for `encoding_format: 'base64'`: little-endian float32. */
function decodeBase64Floats(b64: string): number[] {
  const buf = Buffer.from(b64, 'base64');
  const out: number[] = [];
  for (let i = 0; i < buf.length; i += 4) out.push(buf.readFloatLE(i));
  return out;
}

describe('chat completions', () => {
  it('streams the reply in several chunks, then a usage chunk, to the real SDK', async () => {
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [
        { role: 'system', content: 'You are a sidekick.' },
        { role: 'user', content: 'what is on the menu today?' },
      ],
      stream: true,
      stream_options: { include_usage: true },
    });
    const deltas: string[] = [];
    const finishReasons: string[] = [];
    let usage: OpenAI.CompletionUsage | null | undefined;
    let usageChunkChoices: number | undefined;
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
      for (const choice of chunk.choices) {
        if (choice.delta.content) deltas.push(choice.delta.content);
        if (choice.finish_reason) finishReasons.push(choice.finish_reason);
      }
      if (chunk.usage) {
        usage = chunk.usage;
        usageChunkChoices = chunk.choices.length;
      }
    }
    expect(deltas.join('')).toBe('You said: what is on the menu today?');
    expect(deltas.length).toBeGreaterThan(1);
    expect(finishReasons).toEqual(['stop']);
    expect(usageChunkChoices).toBe(0);
    expect(usage?.total_tokens).toBe((usage?.prompt_tokens ?? 0) + (usage?.completion_tokens ?? 0));
    expect(usage?.completion_tokens).toBeGreaterThan(0);
    // The role comes first, and the usage chunk is the last one.
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant');
    expect(chunks.at(-1)?.usage).toBe(usage);
  });

  it('sends no usage chunk when the client did not ask for one, and reads content given as parts', async () => {
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'parts work too' }] }],
      stream: true,
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.length).toBeGreaterThan(0);
    expect(chunks.filter((c) => c.usage)).toEqual([]);
    expect(chunks.every((c) => c.choices.length === 1)).toBe(true);
    expect(chunks.map((c) => c.choices[0]!.delta.content ?? '').join('')).toBe('You said: parts work too');
  });

  it('records each request with its path, lower-cased headers and parsed body', async () => {
    await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hello' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const [request, ...rest] = server.chatRequests();
    expect(rest).toEqual([]);
    expect(request?.method).toBe('POST');
    expect(request?.path).toBe('/v1/chat/completions');
    expect(request?.headers.authorization).toBe('Bearer sk-test');
    expect(request?.headers['content-type']).toBe('application/json');
    expect(request?.body).toMatchObject({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hello' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(server.embeddingRequests()).toEqual([]);
  });

  it('answers a non-streaming request with the default echo, finish_reason stop and consistent usage', async () => {
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
  });

  it('answers with what the programmable responder returns, given the request', async () => {
    server.setResponder((request) => `model=${request.model} turns=${request.messages.length}`);
    const res = await client.chat.completions.create({
      model: 'gpt-4.1-mini',
      messages: [
        { role: 'user', content: 'one' },
        { role: 'assistant', content: 'two' },
        { role: 'user', content: 'three' },
      ],
    });
    expect(res.choices[0]?.message.content).toBe('model=gpt-4.1-mini turns=3');
    expect(res.choices[0]?.finish_reason).toBe('stop');

    // A streamed reply is the same responder's text, cut into several deltas.
    server.setResponder(
      (request) => `Reply to ${request.messages.length} messages: the chain needs oil now.`,
    );
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'my chain squeaks' }],
      stream: true,
    });
    const deltas: string[] = [];
    for await (const chunk of stream)
      if (chunk.choices[0]?.delta.content) deltas.push(chunk.choices[0].delta.content);
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toBe('Reply to 1 messages: the chain needs oil now.');
  });

  it('streams tool calls as the API does: id and name first, then the arguments in pieces', async () => {
    server.setResponder(() => ({ toolCalls: [{ name: 'lookup_order', arguments: { orderId: 'A-17' } }] }));
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'where is my order A-17?' }],
      tools: [
        {
          type: 'function',
          function: { name: 'lookup_order', parameters: { type: 'object', properties: {} } },
        },
      ],
      stream: true,
    });
    const calls: Array<{ id?: string; name?: string; args: string }> = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      for (const part of choice?.delta.tool_calls ?? []) {
        calls[part.index] ??= { args: '' };
        const call = calls[part.index]!;
        if (part.id) call.id = part.id;
        if (part.function?.name) call.name = part.function.name;
        call.args += part.function?.arguments ?? '';
      }
      finish = choice?.finish_reason ?? finish;
    }
    expect(calls).toHaveLength(1);
    expect(calls[0]?.name).toBe('lookup_order');
    expect(calls[0]?.id).toMatch(/^call_/);
    expect(JSON.parse(calls[0]?.args ?? '')).toEqual({ orderId: 'A-17' });
    expect(finish).toBe('tool_calls');
  });
});

describe('embeddings', () => {
  const embedder = new HashingEmbedder({ dimensions: 1024 });

  it("serves the SDK's default base64 encoding as little-endian float32 of the hashing model", async () => {
    const res = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input: ['refund policy', 'opening hours'],
    });
    // What the openai v6 SDK asks for when the caller names no encoding.
    expect(server.embeddingRequests()[0]?.body.encoding_format).toBe('base64');
    expect(res.data.map((d) => d.index)).toEqual([0, 1]);
    const expected = await embedder.embed(['refund policy', 'opening hours']);
    for (const [i, d] of res.data.entries()) {
      expect(d.embedding).toHaveLength(1024);
      expect(Array.from(d.embedding)).toEqual(expected[i]!.map((x) => Math.fround(x)));
    }

    // Asked for base64 explicitly, the SDK hands over the encoded string as the API sent it.
    const raw = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input: 'refund policy',
      encoding_format: 'base64',
    });
    const encoded = raw.data[0]?.embedding as unknown;
    expect(typeof encoded).toBe('string');
    expect(decodeBase64Floats(encoded as string)).toEqual(expected[0]!.map((x) => Math.fround(x)));
  });

  it('serves floats, in input order, with the dimensions asked for and OpenAI-shaped usage', async () => {
    const input = ['refund policy', 'opening hours'];
    const res = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input,
      dimensions: 256,
      encoding_format: 'float',
    });
    expect(res.object).toBe('list');
    expect(res.model).toBe('text-embedding-3-small');
    expect(res.data.map((d) => d.index)).toEqual([0, 1]);
    expect(res.data.map((d) => d.object)).toEqual(['embedding', 'embedding']);
    const small = new HashingEmbedder({ dimensions: 256 });
    expect(res.data.map((d) => d.embedding)).toEqual(input.map((t) => small.embedOne(t)));
    expect(res.usage.total_tokens).toBeGreaterThan(0);
  });

  it('refuses empty strings and empty input as OpenAI does, with a 400 the SDK turns into BadRequestError', async () => {
    await expect(
      client.embeddings.create({
        model: 'text-embedding-3-small',
        input: ['ok', ''],
        encoding_format: 'float',
      }),
    ).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    const empty = client.embeddings.create({
      model: 'text-embedding-3-small',
      input: [],
      encoding_format: 'float',
    });
    await expect(empty).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await expect(empty).rejects.toThrow("'input'");
  });
});

describe('fault injection', () => {
  it('fails the next N requests of a route with the given status, then recovers', async () => {
    server.failNext('chat', 503, 2);
    const ask = () =>
      client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    await expect(ask()).rejects.toMatchObject({ status: 503 });
    await expect(ask()).rejects.toBeInstanceOf(OpenAI.InternalServerError);
    // Other routes are untouched by a chat failure.
    await expect(
      client.embeddings.create({ model: 'text-embedding-3-small', input: 'x', encoding_format: 'float' }),
    ).resolves.toBeDefined();
    expect((await ask()).choices[0]?.message.content).toBe('You said: hi');
    // Each failure was one request: exactly the next two chat requests failed.
    expect(server.chatRequests()).toHaveLength(3);
  });

  it('delays a route so that a client time budget runs out, and drops the abandoned request', async () => {
    server.setDelay('embeddings', 2_000);
    const started = performance.now();
    await expect(
      client.embeddings.create(
        { model: 'text-embedding-3-small', input: 'slow', encoding_format: 'float' },
        { timeout: 100 },
      ),
    ).rejects.toBeInstanceOf(OpenAI.APIConnectionTimeoutError);
    expect(performance.now() - started).toBeLessThan(1_500);
    // Chat has no delay.
    const chatStarted = performance.now();
    await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(performance.now() - chatStarted).toBeLessThan(1_000);
  });

  it('answers unknown paths 404 and keyless requests 401, as OpenAI does', async () => {
    const keyless = await fetch(`${server.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }] }),
    });
    expect(keyless.status).toBe(401);
    const unknown = await fetch(`${server.baseURL}/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-test' },
    });
    expect(unknown.status).toBe(404);
    expect(server.requests.map((r) => r.route)).toEqual(['chat', undefined]);
  });

  it('reset() clears the log and every injected behaviour', async () => {
    server.failNext('chat', 500, 5);
    server.setDelay('chat', 5_000);
    server.forceDimensions(3);
    server.setResponder(() => 'scripted');
    await client.models.list();
    server.reset();
    expect(server.requests).toEqual([]);
    const res = await client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
      { timeout: 1_000 },
    );
    expect(res.choices[0]?.message.content).toBe('You said: hi');
    const emb = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input: 'x',
      encoding_format: 'float',
    });
    expect(emb.data[0]?.embedding).toHaveLength(1024);
  });
});

describe('speech and transcription', () => {
  const clip = loadSpeech()['clean-chain']!;

  it('speech: raw 24 kHz PCM (what the OpenAI plugin asks for) or WAV, as long as the text takes to say, after the TTFB delay', async () => {
    server.setDelay('speech', 120);
    const started = performance.now();
    const pcm = Buffer.from(
      await (
        await client.audio.speech.create({
          model: 'gpt-4o-mini-tts',
          voice: 'alloy',
          input: 'Hello there.',
          response_format: 'pcm',
        })
      ).arrayBuffer(),
    );
    expect(performance.now() - started).toBeGreaterThanOrEqual(115);
    // 55 ms a character, 16-bit mono at 24 kHz: 12 characters ≈ 660 ms.
    expect(pcm.length / 2 / 24_000).toBeCloseTo(0.66, 2);
    const samples = new Int16Array(pcm.buffer, pcm.byteOffset, pcm.length / 2);
    expect(Math.max(...samples.subarray(2400, 4800).map(Math.abs))).toBeGreaterThan(1000); // a tone, not silence
    const wav = Buffer.from(
      await (
        await client.audio.speech.create({
          model: 'gpt-4o-mini-tts',
          voice: 'alloy',
          input: 'Hello there.',
          response_format: 'wav',
        })
      ).arrayBuffer(),
    );
    expect(parseWav(wav).sampleRate).toBe(24_000);
    expect(parseWav(wav).samples.length).toBe(pcm.length / 2);
    const [first] = server.speechRequests();
    expect(first!.body).toMatchObject({ input: 'Hello there.', voice: 'alloy', response_format: 'pcm' });
    await expect(
      client.audio.speech.create({
        model: 'gpt-4o-mini-tts',
        voice: 'alloy',
        input: 'x',
        response_format: 'mp3',
      }),
    ).rejects.toBeInstanceOf(OpenAI.BadRequestError);
  });

  it('transcriptions over HTTP: the WAV the SDK uploads reaches the transcriber, its answer comes back as the text', async () => {
    const heard: number[] = [];
    server.setTranscriber(({ audio, via }) => {
      expect(via).toBe('http');
      heard.push(audio.samples.length / audio.sampleRate);
      return clip.text;
    });
    const file = new File([new Uint8Array(wavBytes(clip.pcm))], 'audio.wav', { type: 'audio/wav' });
    const res = await client.audio.transcriptions.create({
      file,
      model: 'whisper-1',
      response_format: 'json',
    });
    expect(res.text).toBe(clip.text);
    expect(heard[0]).toBeCloseTo(clip.pcm.samples.length / 16_000, 3);
    server.setTranscriber();
    await expect(client.audio.transcriptions.create({ file, model: 'whisper-1' })).rejects.toBeInstanceOf(
      OpenAI.InternalServerError,
    );
  });

  it("the realtime socket, through LiveKit's OpenAI STT: server VAD finds the utterance, word deltas, then the final at the configured latency", async () => {
    initializeLogger({ pretty: false, level: 'silent' });
    server.setDelay('transcriptions', 200);
    server.setTranscriber(({ via }) => {
      expect(via).toBe('realtime');
      return clip.text;
    });
    const stt = new openaiPlugin.STT({
      apiKey: 'sk-test',
      baseURL: server.baseURL,
      model: 'gpt-4o-mini-transcribe',
    });
    const stream = stt.stream();
    const events: Array<{ type: number; text?: string }> = [];
    const reading = (async () => {
      for await (const ev of stream) {
        events.push({ type: ev.type, text: ev.alternatives?.[0]?.text });
        if (ev.type === 2) return; // FINAL_TRANSCRIPT
      }
    })();
    const audio = new Int16Array(clip.pcm.samples.length + 16_000); // a second of silence after it
    audio.set(clip.pcm.samples);
    for (let i = 0; i + 160 <= audio.length; i += 160) {
      stream.pushFrame(new AudioFrame(audio.slice(i, i + 160), 16_000, 1, 160));
      await new Promise((r) => setTimeout(r, 2));
    }
    await reading;
    stream.close();
    const interims = events.filter((e) => e.type === 1).map((e) => e.text);
    expect(interims.at(-1)).toBe(clip.text);
    expect(interims.length).toBe(clip.text.split(' ').length);
    expect(events.find((e) => e.type === 2)?.text).toBe(clip.text);
    const log = server.transcriptionEvents.map((e) => e.type);
    expect(log.slice(0, 3)).toEqual(['speech_started', 'speech_stopped', 'committed']);
    expect(log.at(-1)).toBe('completed');
    const committed = server.transcriptionEvents.find((e) => e.type === 'committed')!.at;
    const completed = server.transcriptionEvents.find((e) => e.type === 'completed')!.at;
    expect(completed - committed).toBeGreaterThanOrEqual(195);
    expect(completed - committed).toBeLessThan(400);
    // The utterance is the voice and its padding: about as long as the clip.
    const stopped = server.transcriptionEvents.find((e) => e.type === 'speech_stopped')!.audioMs!;
    expect(stopped).toBeGreaterThan(clip.voicedEndMs);
  });
});
