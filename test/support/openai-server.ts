import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { HashingEmbedder } from '../../src/context/hashing-embedder.js';

/**
 * A real HTTP server on 127.0.0.1 that speaks the part of the OpenAI REST API the worker uses:
 * embeddings, chat completions (plain and streamed as server-sent events) and the model list. It
 * stands in for OpenAI at its network boundary, so the real `openai` client, the worker's
 * OpenAIEmbedder and LiveKit's OpenAI plugin run unchanged against it (baseURL `…/v1`).
 *
 * Embeddings come from HashingEmbedder, the model the local stack's demo data is embedded with,
 * so vectors from here match the seeded rows. Chat replies come from a programmable responder.
 * Every request is recorded; delays and failures can be injected per route.
 */

export type OpenAIRoute = 'embeddings' | 'chat' | 'models';

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

export interface OpenAIServerOptions {
  /** Chat reply; default: `You said: <last user message>`. */
  responder?: Responder;
  /** Dimensions when a request names none (the worker's vector(1024) columns). */
  defaultDimensions?: number;
  /** Number of content deltas a streamed reply is cut into (at least 1; default 4). */
  streamChunks?: number;
  /** Initial per-route delays in ms (see setDelay). */
  delays?: Partial<Record<OpenAIRoute, number>>;
}

export interface OpenAIServer {
  /** `http://127.0.0.1:PORT/v1`: what OpenAI clients take as baseURL. */
  baseURL: string;
  port: number;
  /** Every request since start or the last reset(), in arrival order. */
  requests: RecordedRequest[];
  embeddingRequests(): Array<RecordedRequest & { body: EmbeddingRequestBody }>;
  chatRequests(): Array<RecordedRequest & { body: ChatRequestBody }>;
  /** Replaces the chat responder; no argument restores the one given at start (or the echo). */
  setResponder(responder?: Responder): void;
  /** Waits `ms` before answering each request of `route` (0 = no delay). A client that gives up is not answered. */
  setDelay(route: OpenAIRoute, ms: number): void;
  /**
   * The next `count` requests of `route` are answered with `status` and an OpenAI error body; with
   * `after`, only once that many more requests of the route were answered normally (a failure
   * half-way through a long job).
   */
  failNext(route: OpenAIRoute, status: number, count?: number, after?: number): void;
  /** Embeddings come back with this many dimensions whatever was asked (a misconfigured model); undefined = as asked. */
  forceDimensions(dimensions: number | undefined): void;
  /** Clears the request log, delays, injected failures, forced dimensions and the responder. */
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
  return undefined;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of req) parts.push(chunk as Buffer);
  return Buffer.concat(parts).toString('utf8');
}

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

  async function chat(body: unknown, res: ServerResponse): Promise<void> {
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
    for (const piece of pieces(content, streamChunks)) send(chunk({ content: piece }, null));
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
    const text = await readBody(req);
    let body: unknown;
    let badJson = false;
    if (text.length > 0) {
      try {
        body = JSON.parse(text);
      } catch {
        badJson = true;
      }
    }
    requests.push({ method, path, route, headers, body, at: performance.now() });

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
      else if (route === 'chat') await chat(body, res);
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
    setResponder(next) {
      responder = next ?? initialResponder;
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
      delays.clear();
      failures.clear();
      forcedDimensions = undefined;
      responder = initialResponder;
    },
    async close() {
      // Keep-alive sockets of the SDKs would otherwise hold close() open.
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
