import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { VADEventType } from '@livekit/agents';
import * as silero from '@livekit/agents-plugin-silero';
import { AudioFrame } from '@livekit/rtc-node';
import { type WebSocket, WebSocketServer } from 'ws';
import { HashingEmbedder } from '../../src/context/hashing-embedder.js';
import { type Pcm, parseWav, wavBytes } from './wav.js';

/**
 * A real HTTP server on 127.0.0.1 that speaks the part of the OpenAI API the worker uses:
 * embeddings, chat completions (plain and streamed as server-sent events), the model list, speech
 * (`/v1/audio/speech`), transcriptions (`/v1/audio/transcriptions`) and the realtime transcription
 * WebSocket (`/v1/realtime?intent=transcription`, what LiveKit's OpenAI STT uses by default). It
 * stands in for OpenAI at its network boundary, so the real `openai` client, the worker's
 * OpenAIEmbedder and LiveKit's OpenAI plugin run unchanged against it (baseURL `…/v1`).
 *
 * Embeddings come from HashingEmbedder, the model the local stack's demo data is embedded with,
 * so vectors from here match the seeded rows. Chat replies come from a programmable responder;
 * what was said in an audio segment from a programmable transcriber (this machine has no speech
 * recogniser: the test that plays the audio knows its words). Speech is a tone as long as the text
 * would take to say. Every request is recorded; delays and failures can be injected per route.
 */

export type OpenAIRoute = 'embeddings' | 'chat' | 'models' | 'speech' | 'transcriptions';

export interface RecordedRequest {
  method: string;
  /** Path with its query string, e.g. `/v1/embeddings`. */
  path: string;
  /** undefined for a path this server does not serve (answered 404). */
  route: OpenAIRoute | undefined;
  /** Header names in lower case; repeated headers joined with ', '. */
  headers: Record<string, string>;
  /** The parsed JSON body (undefined when there was none or it was not JSON). */
  body: unknown;
  /** When the request arrived (performance.now()). */
  at: number;
  /**
   * When the answer's first useful bytes went out (performance.now()): the first content delta
   * of a streamed chat reply (the LLM's first token), the audio of a speech request, a transcript.
   */
  firstOutputAt?: number;
}

export interface ChatMessageBody {
  role: string;
  content?: string | Array<{ type: string; text?: string }> | null;
  tool_calls?: Array<{ id: string; type: string; function: { name: string; arguments: string } }>;
  tool_call_id?: string;
  [key: string]: unknown;
}

export interface ChatToolBody {
  type: string;
  function: { name: string; description?: string; parameters?: unknown; strict?: boolean };
}

export interface ChatRequestBody {
  model: string;
  messages: ChatMessageBody[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  tools?: ChatToolBody[];
  tool_choice?: unknown;
  [key: string]: unknown;
}

export interface EmbeddingRequestBody {
  model: string;
  input: string | string[] | number[] | number[][];
  dimensions?: number;
  encoding_format?: 'float' | 'base64';
  [key: string]: unknown;
}

export interface ToolCallReply {
  /** Default: `call_<n>`. */
  id?: string;
  name: string;
  /** An object is sent JSON-encoded, as the API does. */
  arguments: string | Record<string, unknown>;
}

export interface ChatReply {
  content?: string;
  toolCalls?: ToolCallReply[];
}

/** Decides the assistant's reply to one chat request (the parsed request body). */
export type Responder = (request: ChatRequestBody) => string | ChatReply | Promise<string | ChatReply>;

export interface SpeechRequestBody {
  model: string;
  input: string;
  voice: string;
  response_format?: 'mp3' | 'opus' | 'aac' | 'flac' | 'wav' | 'pcm';
  speed?: number;
  instructions?: string;
  [key: string]: unknown;
}

/** One segment of audio to transcribe: its PCM, and whether it came over HTTP or the realtime socket. */
export interface TranscriptionInput {
  audio: Pcm;
  via: 'http' | 'realtime';
  model: string;
}

/** What was said in one audio segment (the stand-in cannot hear: the test says). */
export type Transcriber = (input: TranscriptionInput) => string | Promise<string>;

/** What happened on a realtime transcription socket, in order, with when (performance.now()). */
export interface TranscriptionEvent {
  type: 'speech_started' | 'speech_stopped' | 'committed' | 'delta' | 'completed';
  itemId: string;
  at: number;
  /** delta: the new words; completed: the transcript. */
  text?: string;
  /** speech_started / speech_stopped: the position in the session's audio, as the API reports it. */
  audioMs?: number;
}

export interface OpenAIServerOptions {
  /** Chat reply; default: `You said: <last user message>`. */
  responder?: Responder;
  /** Dimensions when a request names none (the worker's vector(1024) columns). */
  defaultDimensions?: number;
  /** Number of content deltas a streamed reply is cut into (at least 1; default 4). */
  streamChunks?: number;
  /** Initial per-route delays in ms (see setDelay). */
  delays?: Partial<Record<OpenAIRoute, number>>;
  /** What each audio segment says; default: a 500 error naming the missing transcriber. */
  transcriber?: Transcriber;
  /** How long the spoken reply of `text` lasts; default 55 ms per character, 250 ms to 6 s. */
  speechDurationMs?: (text: string) => number;
}

export interface OpenAIServer {
  /** `http://127.0.0.1:PORT/v1`: what OpenAI clients take as baseURL. */
  baseURL: string;
  port: number;
  /** Every request since start or the last reset(), in arrival order. */
  requests: RecordedRequest[];
  embeddingRequests(): Array<RecordedRequest & { body: EmbeddingRequestBody }>;
  chatRequests(): Array<RecordedRequest & { body: ChatRequestBody }>;
  speechRequests(): Array<RecordedRequest & { body: SpeechRequestBody }>;
  /** Every realtime transcription event sent since start or the last reset(). */
  transcriptionEvents: TranscriptionEvent[];
  /** Replaces the chat responder; no argument restores the one given at start (or the echo). */
  setResponder(responder?: Responder): void;
  /** Replaces the transcriber; no argument restores the one given at start. */
  setTranscriber(transcriber?: Transcriber): void;
  /**
   * Waits `ms` before answering each request of `route` (0 = no delay). A client that gives up is
   * not answered. For `chat` it is the LLM's time to first token; for `speech`, the TTS's time to
   * first byte; for `transcriptions`, the time from the end of a segment's audio (the request, or
   * the realtime buffer's commit) to its final transcript. On the realtime socket the words come
   * as deltas before that: the first at half the delay, the rest evenly until the final.
   */
  setDelay(route: OpenAIRoute, ms: number): void;
  /**
   * The next `count` requests of `route` are answered with `status` and an OpenAI error body; with
   * `after`, only once that many more requests of the route were answered normally (a failure
   * half-way through a long job).
   */
  failNext(route: OpenAIRoute, status: number, count?: number, after?: number): void;
  /** Embeddings come back with this many dimensions whatever was asked (a misconfigured model); undefined = as asked. */
  forceDimensions(dimensions: number | undefined): void;
  /** Clears the request and event logs, delays, injected failures, forced dimensions, responder and transcriber. */
  reset(): void;
  close(): Promise<void>;
}

/** The default reply: deterministic, and it names what the user said, so tests can check the round trip. */
export const echoResponder: Responder = (request) => {
  const lastUser = [...request.messages].reverse().find((m) => m.role === 'user');
  return `You said: ${lastUser ? messageText(lastUser) : ''}`;
};

/** A message's text, whether its content is a string or an array of parts. */
export function messageText(message: ChatMessageBody): string {
  const { content } = message;
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((part) => part.text ?? '').join('');
  return '';
}

/** Rough token count, stable across runs: what this server reports in its usage fields. */
export function tokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

/** A request the real API would refuse with 4xx: the SDKs then throw their typed errors. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

function errorBody(status: number, message: string, param: string | null = null) {
  const type =
    status === 401
      ? 'authentication_error'
      : status === 429
        ? 'rate_limit_exceeded'
        : status >= 500
          ? 'server_error'
          : 'invalid_request_error';
  return { error: { message, type, param, code: null } };
}

function requestId(): string {
  return `req_${randomBytes(8).toString('hex')}`;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-request-id': requestId(),
  });
  res.end(text);
}

function routeOf(method: string, path: string): OpenAIRoute | undefined {
  const p = path.split('?')[0];
  if (method === 'POST' && p === '/v1/embeddings') return 'embeddings';
  if (method === 'POST' && p === '/v1/chat/completions') return 'chat';
  if (method === 'GET' && p === '/v1/models') return 'models';
  if (method === 'POST' && p === '/v1/audio/speech') return 'speech';
  if (method === 'POST' && p === '/v1/audio/transcriptions') return 'transcriptions';
  return undefined;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of req) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

/** The speech API's raw PCM: 24 kHz, 16-bit, mono. */
const SPEECH_RATE = 24_000;
/** The realtime API's audio/pcm input: 24 kHz, 16-bit, mono. */
const REALTIME_RATE = 24_000;

const defaultSpeechDuration = (text: string) => Math.min(6000, Math.max(250, text.length * 55));

/** A quiet 220 Hz tone with soft edges: audio that is plainly not silence, for `ms` milliseconds. */
function tone(ms: number, sampleRate: number): Int16Array {
  const n = Math.round((ms / 1000) * sampleRate);
  const out = new Int16Array(n);
  const edge = Math.min(n / 2, sampleRate / 100);
  for (let i = 0; i < n; i++) {
    const envelope = Math.min(1, i / edge, (n - 1 - i) / edge);
    out[i] = Math.round(6000 * envelope * Math.sin((2 * Math.PI * 220 * i) / sampleRate));
  }
  return out;
}

const noTranscriber: Transcriber = () => {
  throw new HttpError(500, 'the loopback server cannot recognise speech: the test must call setTranscriber');
};

/** What the API sends for `encoding_format: 'base64'`: the vector as little-endian float32. */
function floatsToBase64(v: readonly number[]): string {
  const buf = Buffer.alloc(v.length * 4);
  for (let i = 0; i < v.length; i++) buf.writeFloatLE(v[i]!, i * 4);
  return buf.toString('base64');
}

/** Splits `text` into at most `n` non-empty pieces at word boundaries (whitespace kept), so they concatenate back to it. */
function pieces(text: string, n: number): string[] {
  const words = text.match(/\S+\s*|\s+/g) ?? [];
  if (words.length === 0) return [];
  const per = Math.ceil(words.length / Math.max(1, n));
  const out: string[] = [];
  for (let i = 0; i < words.length; i += per) out.push(words.slice(i, i + per).join(''));
  return out;
}

function embeddingInputs(raw: unknown): string[] {
  const nonEmptyArray = Array.isArray(raw) && raw.length > 0;
  // Token arrays are accepted as the API does; their "text" is the token ids.
  if (typeof raw === 'string') return [raw];
  if (nonEmptyArray && raw.every((x) => typeof x === 'string')) return raw as string[];
  if (nonEmptyArray && raw.every((x) => typeof x === 'number')) return [(raw as number[]).join(' ')];
  if (nonEmptyArray && raw.every((x) => Array.isArray(x))) return (raw as number[][]).map((t) => t.join(' '));
  throw new HttpError(400, "'input' must be a non-empty string or array", 'input');
}

interface NormalisedReply {
  content: string;
  toolCalls: Array<{ id: string; name: string; arguments: string }>;
}

export async function startOpenAIServer(opts: OpenAIServerOptions = {}): Promise<OpenAIServer> {
  const requests: RecordedRequest[] = [];
  const delays = new Map<OpenAIRoute, number>();
  const failures = new Map<OpenAIRoute, { status: number; remaining: number; after: number }>();
  const defaultDimensions = opts.defaultDimensions ?? 1024;
  const streamChunks = Math.max(1, opts.streamChunks ?? 4);
  const embedders = new Map<number, HashingEmbedder>();
  const initialResponder = opts.responder ?? echoResponder;
  let responder = initialResponder;
  const initialTranscriber = opts.transcriber ?? noTranscriber;
  let transcriber = initialTranscriber;
  const speechDuration = opts.speechDurationMs ?? defaultSpeechDuration;
  const transcriptionEvents: TranscriptionEvent[] = [];
  let forcedDimensions: number | undefined;
  let sequence = 0;

  const setDelay = (route: OpenAIRoute, ms: number) => {
    if (ms > 0) delays.set(route, ms);
    else delays.delete(route);
  };
  for (const [route, ms] of Object.entries(opts.delays ?? {})) setDelay(route as OpenAIRoute, ms);

  const embedder = (dimensions: number) => {
    let e = embedders.get(dimensions);
    if (!e) {
      e = new HashingEmbedder({ dimensions });
      embedders.set(dimensions, e);
    }
    return e;
  };

  function embeddings(body: unknown, res: ServerResponse): void {
    const b = (body ?? {}) as Partial<EmbeddingRequestBody>;
    if (typeof b.model !== 'string') throw new HttpError(400, 'you must provide a model parameter', 'model');
    const inputs = embeddingInputs(b.input);
    if (inputs.length > 2048) throw new HttpError(400, "'input' may hold at most 2048 items", 'input');
    if (inputs.some((t) => t.length === 0)) {
      throw new HttpError(400, "'input' cannot contain empty strings", 'input');
    }
    const asked = b.dimensions ?? defaultDimensions;
    if (!Number.isInteger(asked) || asked < 1) {
      throw new HttpError(400, "'dimensions' must be a positive integer", 'dimensions');
    }
    // The API's own default is float; the openai v6 SDK asks for base64 unless told otherwise.
    const format = b.encoding_format ?? 'float';
    if (format !== 'float' && format !== 'base64') {
      throw new HttpError(400, "'encoding_format' must be 'float' or 'base64'", 'encoding_format');
    }
    const e = embedder(forcedDimensions ?? asked);
    const used = inputs.reduce((n, t) => n + tokens(t), 0);
    sendJson(res, 200, {
      object: 'list',
      data: inputs.map((text, index) => {
        const v = e.embedOne(text);
        return { object: 'embedding', index, embedding: format === 'base64' ? floatsToBase64(v) : v };
      }),
      model: b.model,
      usage: { prompt_tokens: used, total_tokens: used },
    });
  }

  async function reply(request: ChatRequestBody): Promise<NormalisedReply> {
    const r = await responder(request);
    if (typeof r === 'string') return { content: r, toolCalls: [] };
    return {
      content: r.content ?? '',
      toolCalls: (r.toolCalls ?? []).map((call, i) => ({
        id: call.id ?? `call_${sequence}_${i}`,
        name: call.name,
        arguments: typeof call.arguments === 'string' ? call.arguments : JSON.stringify(call.arguments),
      })),
    };
  }

  async function chat(body: unknown, res: ServerResponse, record: RecordedRequest): Promise<void> {
    const b = (body ?? {}) as Partial<ChatRequestBody>;
    if (typeof b.model !== 'string') throw new HttpError(400, 'you must provide a model parameter', 'model');
    if (!Array.isArray(b.messages) || b.messages.length === 0) {
      throw new HttpError(400, "'messages' must be a non-empty array", 'messages');
    }
    const request = b as ChatRequestBody;
    const id = `chatcmpl-${++sequence}`;
    const { content, toolCalls } = await reply(request);
    const created = Math.floor(Date.now() / 1000);
    const finishReason = toolCalls.length > 0 ? 'tool_calls' : 'stop';
    const promptTokens = request.messages.reduce((n, m) => n + tokens(messageText(m)), 0);
    const completionTokens = tokens(content + toolCalls.map((c) => c.name + c.arguments).join(''));
    const usage = {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    };
    const common = { id, created, model: request.model, system_fingerprint: 'fp_loopback' };

    if (!request.stream) {
      sendJson(res, 200, {
        ...common,
        object: 'chat.completion',
        choices: [
          {
            index: 0,
            message: {
              role: 'assistant',
              // The API sends null content alongside tool calls when the model said nothing.
              content: content === '' && toolCalls.length > 0 ? null : content,
              refusal: null,
              ...(toolCalls.length > 0
                ? {
                    tool_calls: toolCalls.map((c) => ({
                      id: c.id,
                      type: 'function',
                      function: { name: c.name, arguments: c.arguments },
                    })),
                  }
                : {}),
            },
            logprobs: null,
            finish_reason: finishReason,
          },
        ],
        usage,
      });
      return;
    }

    // As the API streams: role first, then content deltas, then each tool call (id and name,
    // then its arguments in pieces), then finish_reason; with include_usage, every chunk has
    // `usage: null` and one last chunk carries the usage with no choices.
    const includeUsage = request.stream_options?.include_usage === true;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-request-id': requestId(),
    });
    const chunk = (delta: Record<string, unknown>, finish: string | null) => ({
      ...common,
      object: 'chat.completion.chunk',
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      ...(includeUsage ? { usage: null } : {}),
    });
    const send = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);
    send(chunk({ role: 'assistant', content: '', refusal: null }, null));
    for (const piece of pieces(content, streamChunks)) {
      record.firstOutputAt ??= performance.now();
      send(chunk({ content: piece }, null));
    }
    toolCalls.forEach((call, index) => {
      send(
        chunk(
          {
            tool_calls: [
              { index, id: call.id, type: 'function', function: { name: call.name, arguments: '' } },
            ],
          },
          null,
        ),
      );
      const half = Math.ceil(call.arguments.length / 2);
      for (const part of [call.arguments.slice(0, half), call.arguments.slice(half)]) {
        if (part) send(chunk({ tool_calls: [{ index, function: { arguments: part } }] }, null));
      }
    });
    send(chunk({}, finishReason));
    if (includeUsage) send({ ...common, object: 'chat.completion.chunk', choices: [], usage });
    res.end('data: [DONE]\n\n');
  }

  function speech(body: unknown, res: ServerResponse, record: RecordedRequest): void {
    const b = (body ?? {}) as Partial<SpeechRequestBody>;
    if (typeof b.model !== 'string') throw new HttpError(400, 'you must provide a model parameter', 'model');
    if (typeof b.input !== 'string' || b.input.length === 0) {
      throw new HttpError(400, "'input' must be a non-empty string", 'input');
    }
    if (b.input.length > 4096) throw new HttpError(400, "'input' may be at most 4096 characters", 'input');
    if (typeof b.voice !== 'string' || !b.voice) throw new HttpError(400, "'voice' is required", 'voice');
    const format = b.response_format ?? 'mp3';
    if (format !== 'pcm' && format !== 'wav') {
      // The real API also serves mp3, opus, aac and flac; nothing here asks for them.
      throw new HttpError(400, `the loopback server serves response_format pcm and wav, not ${format}`);
    }
    const speed = b.speed ?? 1;
    if (!(speed >= 0.25 && speed <= 4))
      throw new HttpError(400, "'speed' must be between 0.25 and 4", 'speed');
    const samples = tone(speechDuration(b.input) / speed, SPEECH_RATE);
    const audio =
      format === 'wav'
        ? wavBytes({ sampleRate: SPEECH_RATE, samples })
        : Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength);
    res.writeHead(200, {
      'content-type': format === 'wav' ? 'audio/wav' : 'audio/pcm',
      'content-length': audio.length,
      'x-request-id': requestId(),
    });
    record.firstOutputAt = performance.now();
    res.end(audio);
  }

  async function transcriptions(
    raw: Buffer,
    contentType: string,
    res: ServerResponse,
    record: RecordedRequest,
  ) {
    if (!contentType.startsWith('multipart/form-data')) {
      throw new HttpError(400, 'transcriptions take multipart/form-data');
    }
    // The platform's own multipart parser (undici), as a server framework would use.
    const form = await new Response(new Uint8Array(raw), {
      headers: { 'content-type': contentType },
    }).formData();
    const model = form.get('model');
    if (typeof model !== 'string') throw new HttpError(400, 'you must provide a model parameter', 'model');
    const file = form.get('file');
    if (!(file instanceof Blob)) throw new HttpError(400, "'file' is required", 'file');
    let audio: Pcm;
    try {
      audio = parseWav(Buffer.from(await file.arrayBuffer()));
    } catch (err) {
      throw new HttpError(
        400,
        `the loopback server reads 16-bit PCM WAV only: ${(err as Error).message}`,
        'file',
      );
    }
    const format = form.get('response_format') ?? 'json';
    const text = await transcriber({ audio, via: 'http', model });
    record.firstOutputAt = performance.now();
    if (format === 'text') {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-request-id': requestId() });
      res.end(text);
      return;
    }
    const seconds = audio.samples.length / audio.sampleRate;
    sendJson(res, 200, { text, usage: { type: 'duration', seconds: Math.ceil(seconds) } });
  }

  function models(res: ServerResponse): void {
    const ids = ['gpt-4o-mini', 'gpt-4.1-mini', 'text-embedding-3-small', 'text-embedding-3-large'];
    sendJson(res, 200, {
      object: 'list',
      data: ids.map((id) => ({ id, object: 'model', created: 1_700_000_000, owned_by: 'loopback' })),
    });
  }

  /** Resolves false when the client went away first (its abort or timeout closed the connection). */
  async function wait(ms: number, res: ServerResponse): Promise<boolean> {
    const gone = new AbortController();
    const onClose = () => gone.abort();
    res.once('close', onClose);
    try {
      await sleep(ms, undefined, { signal: gone.signal });
      return true;
    } catch {
      return false;
    } finally {
      res.off('close', onClose);
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const route = routeOf(method, path);
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
    }
    const raw = await readBody(req);
    const contentType = headers['content-type'] ?? '';
    let body: unknown;
    let badJson = false;
    if (raw.length > 0 && !contentType.startsWith('multipart/')) {
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        badJson = true;
      }
    }
    const record: RecordedRequest = { method, path, route, headers, body, at: performance.now() };
    requests.push(record);

    if (!route) {
      sendJson(res, 404, errorBody(404, `Unknown request URL: ${method} ${path}`));
      return;
    }
    // As OpenAI does: a client that forgot its key fails here, not against the real service.
    if (!headers.authorization?.startsWith('Bearer ')) {
      sendJson(res, 401, errorBody(401, "You didn't provide an API key."));
      return;
    }
    const delay = delays.get(route) ?? 0;
    if (delay > 0 && !(await wait(delay, res))) return;
    const failure = failures.get(route);
    if (failure && failure.after > 0) failure.after--;
    else if (failure && failure.remaining > 0) {
      failure.remaining--;
      if (failure.remaining === 0) failures.delete(route);
      sendJson(res, failure.status, errorBody(failure.status, `injected failure (${failure.status})`));
      return;
    }
    if (badJson) {
      sendJson(res, 400, errorBody(400, 'We could not parse the JSON body of your request.'));
      return;
    }
    try {
      if (route === 'embeddings') embeddings(body, res);
      else if (route === 'chat') await chat(body, res, record);
      else if (route === 'speech') speech(body, res, record);
      else if (route === 'transcriptions') await transcriptions(raw, contentType, res, record);
      else models(res);
    } catch (err) {
      if (err instanceof HttpError) sendJson(res, err.status, errorBody(err.status, err.message, err.param));
      else throw err;
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      // A responder that throws is a test bug: answer 500 with its message so the test shows it.
      if (!res.headersSent) sendJson(res, 500, errorBody(500, `loopback server error: ${String(err)}`));
      else res.destroy();
    });
  });
  const sockets = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    const path = req.url ?? '/';
    const url = new URL(path, 'http://127.0.0.1');
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
    }
    requests.push({
      method: 'GET',
      path,
      route: 'transcriptions',
      headers,
      body: undefined,
      at: performance.now(),
    });
    const refuse = (status: number, message: string) => {
      socket.end(`HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : 'Not Found'}\r\n\r\n${message}`);
    };
    if (url.pathname !== '/v1/realtime' || url.searchParams.get('intent') !== 'transcription') {
      refuse(404, 'the loopback server serves realtime transcription sessions only');
      return;
    }
    if (!headers.authorization?.startsWith('Bearer ')) {
      refuse(401, "You didn't provide an API key.");
      return;
    }
    sockets.handleUpgrade(req, socket, head, (ws) => {
      realtimeTranscription(ws, {
        transcribe: (audio) =>
          transcriber({ audio, via: 'realtime', model: url.searchParams.get('model') ?? '' }),
        latencyMs: () => delays.get('transcriptions') ?? 0,
        log: (ev) => transcriptionEvents.push(ev),
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    port,
    requests,
    embeddingRequests: () =>
      requests.filter((r) => r.route === 'embeddings') as Array<
        RecordedRequest & { body: EmbeddingRequestBody }
      >,
    chatRequests: () =>
      requests.filter((r) => r.route === 'chat') as Array<RecordedRequest & { body: ChatRequestBody }>,
    speechRequests: () =>
      requests.filter((r) => r.route === 'speech') as Array<RecordedRequest & { body: SpeechRequestBody }>,
    transcriptionEvents,
    setResponder(next) {
      responder = next ?? initialResponder;
    },
    setTranscriber(next) {
      transcriber = next ?? initialTranscriber;
    },
    setDelay,
    failNext(route, status, count = 1, after = 0) {
      if (count > 0) failures.set(route, { status, remaining: count, after });
      else failures.delete(route);
    },
    forceDimensions(dimensions) {
      forcedDimensions = dimensions;
    },
    reset() {
      requests.length = 0;
      transcriptionEvents.length = 0;
      delays.clear();
      failures.clear();
      forcedDimensions = undefined;
      responder = initialResponder;
      transcriber = initialTranscriber;
    },
    async close() {
      for (const ws of sockets.clients) ws.terminate();
      sockets.close();
      // Keep-alive sockets of the SDKs would otherwise hold close() open.
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface RealtimeDeps {
  transcribe(audio: Pcm): string | Promise<string>;
  /** Commit → final transcript, read at each commit (setDelay('transcriptions', ms)). */
  latencyMs(): number;
  log(ev: TranscriptionEvent): void;
}

type TurnDetection = {
  type: 'server_vad';
  threshold: number;
  prefix_padding_ms: number;
  silence_duration_ms: number;
};

/** The API's defaults for a transcription session's server VAD. */
const DEFAULT_TURN_DETECTION: TurnDetection = {
  type: 'server_vad',
  threshold: 0.5,
  prefix_padding_ms: 300,
  silence_duration_ms: 500,
};

const newId = (prefix: string) => `${prefix}_${randomBytes(8).toString('hex')}`;

/**
 * One realtime transcription session, as the API runs it: `session.update` configures it;
 * `input_audio_buffer.append` brings 24 kHz 16-bit mono audio; with server VAD (the default) a
 * neural voice activity detector (Silero, as the worker's own) finds speech (`speech_started`),
 * ends it after `silence_duration_ms` without it (`speech_stopped`) and commits the segment; without
 * server VAD (`turn_detection: null`) the client sends `input_audio_buffer.commit`. Each committed segment is transcribed: word deltas, then
 * `completed` at the configured latency after the commit.
 */
function realtimeTranscription(ws: WebSocket, deps: RealtimeDeps): void {
  const send = (ev: Record<string, unknown>) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ event_id: newId('event'), ...ev }));
  };
  const error = (message: string, code: string | null = null) =>
    send({ type: 'error', error: { type: 'invalid_request_error', code, message, param: null } });
  const timers = new Set<NodeJS.Timeout>();
  const at = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };
  ws.on('close', () => {
    for (const t of timers) clearTimeout(t);
    timers.clear();
  });

  let turnDetection: TurnDetection | null = DEFAULT_TURN_DETECTION;
  let model = 'gpt-4o-mini-transcribe';
  /** Audio not yet committed, and where in the session's audio it starts. */
  let pending: Int16Array[] = [];
  let pendingSamples = 0;
  let pendingStart = 0;
  let position = 0;
  let previousItem: string | null = null;
  const ms = (samples: number) => Math.round((samples / REALTIME_RATE) * 1000);

  const sessionBody = () => ({
    type: 'transcription',
    id: newId('sess'),
    object: 'realtime.transcription_session',
    audio: {
      input: {
        format: { type: 'audio/pcm', rate: REALTIME_RATE },
        transcription: { model },
        turn_detection: turnDetection,
      },
    },
  });

  /** The audio since the last commit, from `fromSample` (a session position) on. */
  const take = (fromSample: number): Int16Array => {
    const all = new Int16Array(pendingSamples);
    let o = 0;
    for (const c of pending) {
      all.set(c, o);
      o += c.length;
    }
    const out = all.subarray(Math.max(0, fromSample - pendingStart));
    pending = [];
    pendingSamples = 0;
    pendingStart = position;
    return out;
  };

  const commit = (itemId: string, audio: Pcm) => {
    send({ type: 'input_audio_buffer.committed', previous_item_id: previousItem, item_id: itemId });
    previousItem = itemId;
    const committedAt = performance.now();
    deps.log({ type: 'committed', itemId, at: committedAt });
    const latency = deps.latencyMs();
    Promise.resolve(deps.transcribe(audio))
      .then((text) => {
        const words = text.match(/\S+\s*/g) ?? [];
        const wait = (t: number) => Math.max(0, committedAt + t - performance.now());
        words.forEach((word, i) => {
          at(wait(latency / 2 + (latency / 2) * (i / words.length)), () => {
            send({
              type: 'conversation.item.input_audio_transcription.delta',
              item_id: itemId,
              content_index: 0,
              delta: word,
            });
            deps.log({ type: 'delta', itemId, at: performance.now(), text: word });
          });
        });
        at(wait(latency), () => {
          const tokens = Math.max(1, Math.ceil(text.length / 4));
          const audioTokens = Math.ceil((audio.samples.length / audio.sampleRate) * 10);
          send({
            type: 'conversation.item.input_audio_transcription.completed',
            item_id: itemId,
            content_index: 0,
            transcript: text,
            usage: {
              type: 'tokens',
              input_tokens: audioTokens,
              output_tokens: tokens,
              total_tokens: audioTokens + tokens,
              input_token_details: { audio_tokens: audioTokens, text_tokens: 0 },
            },
          });
          deps.log({ type: 'completed', itemId, at: performance.now(), text });
        });
      })
      .catch((err: unknown) => {
        send({
          type: 'conversation.item.input_audio_transcription.failed',
          item_id: itemId,
          content_index: 0,
          error: { type: 'server_error', code: null, message: String((err as Error)?.message ?? err) },
        });
      });
  };

  /** Server VAD: Silero with the session's settings, fed the appended audio in order. */
  let vad: { push(chunk: Int16Array): void; close(): void } | undefined;
  const startVad = (td: TurnDetection) => {
    vad?.close();
    const loading = silero.VAD.load({
      activationThreshold: td.threshold,
      prefixPaddingDuration: td.prefix_padding_ms,
      minSilenceDuration: td.silence_duration_ms,
    });
    let stream: ReturnType<Awaited<typeof loading>['stream']> | undefined;
    let closed = false;
    let queue = loading.then((v) => {
      const events = v.stream();
      stream = events;
      void (async () => {
        let itemId = '';
        for await (const ev of events) {
          if (ev.type === VADEventType.START_OF_SPEECH) {
            itemId = newId('item');
            const startMs = Math.max(0, ms(position) - ev.speechDuration - td.prefix_padding_ms);
            send({ type: 'input_audio_buffer.speech_started', audio_start_ms: startMs, item_id: itemId });
            deps.log({ type: 'speech_started', itemId, at: performance.now(), audioMs: startMs });
          } else if (ev.type === VADEventType.END_OF_SPEECH && itemId) {
            send({ type: 'input_audio_buffer.speech_stopped', audio_end_ms: ms(position), item_id: itemId });
            deps.log({ type: 'speech_stopped', itemId, at: performance.now(), audioMs: ms(position) });
            const rate = ev.frames[0]?.sampleRate ?? REALTIME_RATE;
            const samples = new Int16Array(ev.frames.reduce((n, f) => n + f.samplesPerChannel, 0));
            let o = 0;
            for (const f of ev.frames) {
              samples.set(f.data.subarray(0, f.samplesPerChannel), o);
              o += f.samplesPerChannel;
            }
            take(position); // the segment is committed: the buffer starts anew
            commit(itemId, { sampleRate: rate, samples });
            itemId = '';
          }
        }
      })();
    });
    vad = {
      push(chunk) {
        queue = queue.then(() => {
          if (!closed) stream?.pushFrame(new AudioFrame(chunk, REALTIME_RATE, 1, chunk.length));
        });
      },
      close() {
        closed = true;
        void queue.then(() => stream?.close());
      },
    };
  };
  ws.on('close', () => vad?.close());

  send({ type: 'session.created', session: sessionBody() });
  ws.on('message', (data, isBinary) => {
    let msg: { type?: unknown; audio?: unknown; session?: { audio?: { input?: Record<string, unknown> } } };
    try {
      if (isBinary) throw new Error('binary');
      msg = JSON.parse(data.toString());
    } catch {
      error('The server could not parse the event: send JSON text frames.', 'invalid_json');
      return;
    }
    switch (msg.type) {
      case 'session.update': {
        const input = msg.session?.audio?.input ?? {};
        if ('turn_detection' in input) {
          const td = input.turn_detection as Partial<TurnDetection> | null;
          turnDetection = td === null ? null : { ...DEFAULT_TURN_DETECTION, ...td, type: 'server_vad' };
          if (turnDetection) startVad(turnDetection);
          else vad?.close();
        }
        const t = input.transcription as { model?: unknown } | undefined;
        if (typeof t?.model === 'string') model = t.model;
        send({ type: 'session.updated', session: sessionBody() });
        return;
      }
      case 'input_audio_buffer.append': {
        if (typeof msg.audio !== 'string') {
          error("'audio' must be base64-encoded 16-bit PCM", 'invalid_value');
          return;
        }
        const bytes = Buffer.from(msg.audio, 'base64');
        const chunk = new Int16Array(Math.floor(bytes.length / 2));
        for (let i = 0; i < chunk.length; i++) chunk[i] = bytes.readInt16LE(i * 2);
        pending.push(chunk);
        pendingSamples += chunk.length;
        position += chunk.length;
        if (turnDetection) {
          if (!vad) startVad(turnDetection);
          vad!.push(chunk);
          // The VAD keeps the segment's audio; the buffer only holds what a manual commit would take.
          const keep = Math.ceil((turnDetection.prefix_padding_ms / 1000) * REALTIME_RATE);
          if (pendingSamples > keep * 4) {
            const tail = take(position - keep).slice();
            pending = [tail];
            pendingSamples = tail.length;
            pendingStart = position - tail.length;
          }
        }
        return;
      }
      case 'input_audio_buffer.commit': {
        if (pendingSamples < REALTIME_RATE / 10) {
          error(
            'Error committing input audio buffer: buffer too small (at least 100ms of audio is needed).',
            'input_audio_buffer_commit_empty',
          );
          return;
        }
        commit(newId('item'), { sampleRate: REALTIME_RATE, samples: take(pendingStart).slice() });
        return;
      }
      case 'input_audio_buffer.clear':
        take(position);
        send({ type: 'input_audio_buffer.cleared' });
        return;
      default:
        error(
          `Invalid value: '${String(msg.type)}'. Supported values are: 'session.update', 'input_audio_buffer.append', 'input_audio_buffer.commit' and 'input_audio_buffer.clear'.`,
          'invalid_value',
        );
    }
  });
}
