/**
 * The one way the worker calls a URL that a client wrote (tools, MCP servers, later the
 * post-session webhook). Such a URL runs inside our network, so every call:
 *
 * - resolves the host once (every address it has) and refuses it when any address is not public
 *   (addresses.ts names the class), unless the operator's allowlist permits it;
 * - connects to exactly the address it checked: the check is the socket's own `lookup`, so there
 *   is no second resolution a rebinding DNS server could answer differently; a URL whose host is
 *   an address literal is checked before connecting;
 * - follows redirects by hand (at most `maxRedirects`), each hop checked the same way; a secret
 *   header goes to the first URL's origin only; https never redirects to http;
 * - sends no cookies and keeps none; has one deadline for the whole call (redirects and body
 *   included); reads at most `maxBytes` of the response (the rest is cut, and said);
 * - signs the body with the client's signing secret when asked (signing.ts).
 *
 * It logs nothing itself: callers log what they need, and never a secret header's value.
 */

import dns from 'node:dns';
import type { LookupFunction } from 'node:net';
import { Agent, request, fetch as undiciFetch } from 'undici';
import { Allowlist, literalAddress, neverAllowed } from './addresses.js';
import { SIGNATURE_HEADER, signatureHeader } from './signing.js';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** How a host's addresses are found: every address (node:dns `lookup`, all: true, by default). */
export type Resolver = (hostname: string) => Promise<ReadonlyArray<{ address: string; family: number }>>;

export const systemResolver: Resolver = (hostname) =>
  dns.promises.lookup(hostname, { all: true, verbatim: true });

export interface OutboundOptions {
  /** Hosts and CIDRs that may be reached although their addresses are not public (OUTBOUND_ALLOWLIST). */
  allowlist?: Allowlist;
  resolve?: Resolver;
  now?: () => number;
  /** Time to open a connection, within the call's own deadline (default 5000 ms). */
  connectTimeoutMs?: number;
}

export interface OutboundRequest {
  method?: HttpMethod;
  /** Plain headers (no secrets). `host`, `cookie`, `content-length`, ... are refused. */
  headers?: Readonly<Record<string, string>>;
  /**
   * Headers that carry a secret (e.g. `authorization`): sent to the first URL's origin only, never
   * after a redirect to another origin, and never part of an error or a result.
   */
  secretHeaders?: Readonly<Record<string, string>>;
  body?: string;
  /** The whole call: connecting, redirects, reading the body (default 10 000 ms). */
  timeoutMs?: number;
  /** Response bytes read at most; the rest is cut and `truncated` set (default 256 KiB). */
  maxBytes?: number;
  /** Redirects followed at most (default 3); more is an error. */
  maxRedirects?: number;
  /** The client's signing secret: adds `X-Sidekick-Signature` over the body. */
  signWith?: string;
  signal?: AbortSignal;
}

export interface OutboundResponse {
  status: number;
  /** Lower-case names; `set-cookie` is dropped (no cookies are kept). */
  headers: Record<string, string>;
  /** At most `maxBytes`. */
  body: Buffer;
  /** The response was longer than `maxBytes` and was cut there. */
  truncated: boolean;
  /** The URL that answered (after redirects). */
  url: string;
  redirects: number;
  timing: { headersMs: number; totalMs: number };
}

export type OutboundErrorKind =
  | 'invalid_request'
  | 'refused'
  | 'unresolvable'
  | 'timeout'
  | 'aborted'
  | 'too_many_redirects'
  | 'network';

/** Why a call did not get a response. The message names the host, never a header value. */
export class OutboundError extends Error {
  override readonly name = 'OutboundError';
  constructor(
    readonly kind: OutboundErrorKind,
    message: string,
    readonly detail: { host?: string; address?: string; range?: string } = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const DEFAULTS = Object.freeze({ timeoutMs: 10_000, maxBytes: 256 * 1024, maxRedirects: 3 });
const REDIRECTS: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);
/** Headers the module sets itself, or that would smuggle state (cookies) into the call. */
const FORBIDDEN_HEADERS: ReadonlySet<string> = new Set([
  'host',
  'cookie',
  'content-length',
  'transfer-encoding',
  'connection',
  'upgrade',
  'te',
  'trailer',
  'keep-alive',
  'proxy-authorization',
  SIGNATURE_HEADER,
]);
const USER_AGENT = 'sidekick-worker';

/** One per process (it pools connections); every call to a client's URL goes through it. */
export class OutboundClient {
  readonly allowlist: Allowlist;
  private readonly resolveHost: Resolver;
  private readonly now: () => number;
  private readonly agent: Agent;

  constructor(opts: OutboundOptions = {}) {
    this.allowlist = opts.allowlist ?? Allowlist.EMPTY;
    this.resolveHost = opts.resolve ?? systemResolver;
    this.now = opts.now ?? Date.now;
    const lookup: LookupFunction = (hostname, options, callback) => {
      this.checkedAddresses(hostname).then(
        (found) => {
          const wanted =
            options.family === 4 || options.family === 6
              ? found.filter((a) => a.family === options.family)
              : found;
          const usable = wanted.length ? wanted : found;
          if (options.all)
            callback(
              null,
              usable.map((a) => ({ address: a.address, family: a.family })),
            );
          else callback(null, usable[0]!.address, usable[0]!.family);
        },
        (err: Error) => callback(err as NodeJS.ErrnoException, ''),
      );
    };
    this.agent = new Agent({
      connect: { lookup, timeout: opts.connectTimeoutMs ?? 5000 },
      // HTTP/1.1 only: one protocol to reason about; client endpoints all speak it.
      allowH2: false,
      keepAliveTimeout: 4000,
    });
  }

  /**
   * The guard alone, without a request: the URL is http(s), and its host (resolved) is allowed.
   * Returns the addresses that a call would connect to. `sidekick agents tools add` uses it.
   */
  async check(url: string | URL): Promise<{ url: URL; addresses: string[] }> {
    const parsed = parseUrl(url);
    const literal = literalAddress(parsed.hostname);
    if (literal) {
      this.judge(parsed.hostname, literal);
      return { url: parsed, addresses: [literal] };
    }
    const found = await this.checkedAddresses(parsed.hostname);
    return { url: parsed, addresses: found.map((a) => a.address) };
  }

  async request(url: string | URL, opts: OutboundRequest = {}): Promise<OutboundResponse> {
    const started = performance.now();
    const timeoutMs = opts.timeoutMs ?? DEFAULTS.timeoutMs;
    // A timer cleared when the call ends (AbortSignal.timeout's would live on until it fires).
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), timeoutMs);
    const signal = opts.signal ? AbortSignal.any([deadline.signal, opts.signal]) : deadline.signal;
    try {
      return await this.call(url, opts, { signal, deadline: deadline.signal, timeoutMs, started });
    } finally {
      clearTimeout(timer);
    }
  }

  private async call(
    url: string | URL,
    opts: OutboundRequest,
    run: { signal: AbortSignal; deadline: AbortSignal; timeoutMs: number; started: number },
  ): Promise<OutboundResponse> {
    const { signal, deadline, timeoutMs, started } = run;
    const maxBytes = opts.maxBytes ?? DEFAULTS.maxBytes;
    const maxRedirects = opts.maxRedirects ?? DEFAULTS.maxRedirects;
    const plain = headerRecord(opts.headers);
    const secret = headerRecord(opts.secretHeaders);
    let current = parseUrl(url);
    const origin = current.origin;
    let method: HttpMethod = opts.method ?? (opts.body === undefined ? 'GET' : 'POST');
    let body = opts.body;

    for (let hop = 0; ; hop++) {
      const literal = literalAddress(current.hostname);
      if (literal) this.judge(current.hostname, literal);
      const headers: Record<string, string> = { 'user-agent': USER_AGENT, accept: '*/*', ...plain };
      if (current.origin === origin) Object.assign(headers, secret);
      if (body !== undefined) headers['content-type'] ??= 'application/json';
      if (opts.signWith) headers[SIGNATURE_HEADER] = signatureHeader(opts.signWith, body ?? '', this.now());
      let res: Awaited<ReturnType<typeof request>>;
      try {
        res = await request(current, { dispatcher: this.agent, method, headers, body: body ?? null, signal });
      } catch (err) {
        throw failure(err, current, deadline, timeoutMs);
      }
      const location = res.headers.location;
      if (REDIRECTS.has(res.statusCode) && typeof location === 'string') {
        await res.body.dump().catch(() => undefined);
        if (hop >= maxRedirects) {
          throw new OutboundError(
            'too_many_redirects',
            `${current.host}: more than ${maxRedirects} redirects`,
            {
              host: current.hostname,
            },
          );
        }
        const next = parseUrl(new URL(location, current));
        if (current.protocol === 'https:' && next.protocol === 'http:') {
          throw new OutboundError(
            'refused',
            `${current.host} redirected from https to http (${next.host}): refused`,
            {
              host: next.hostname,
            },
          );
        }
        // As browsers do: 303, and 301/302 after a POST, continue as a GET without the body.
        if (
          res.statusCode === 303 ||
          ((res.statusCode === 301 || res.statusCode === 302) && method === 'POST')
        ) {
          method = 'GET';
          body = undefined;
        }
        current = next;
        continue;
      }
      const headersMs = performance.now() - started;
      let read: { body: Buffer; truncated: boolean };
      try {
        read = await readCapped(res.body, maxBytes);
      } catch (err) {
        throw failure(err, current, deadline, timeoutMs);
      }
      return {
        status: res.statusCode,
        headers: responseHeaders(res.headers),
        body: read.body,
        truncated: read.truncated,
        url: current.href,
        redirects: hop,
        timing: { headersMs, totalMs: performance.now() - started },
      };
    }
  }

  /**
   * A `fetch` for SDKs that make their own requests (the MCP client): the same guard and
   * connection pool, the body signed, secret headers for `origin` only, the response body capped
   * at `maxBytes` (a longer stream errors there). Redirects are not followed here: they come back
   * to the caller, whose next request goes through this fetch again and is checked again.
   */
  fetcher(opts: {
    origin: string;
    secretHeaders?: Readonly<Record<string, string>>;
    signWith?: string;
    maxBytes?: number;
  }): typeof fetch {
    const secret = headerRecord(opts.secretHeaders);
    const maxBytes = opts.maxBytes ?? DEFAULTS.maxBytes;
    const guarded = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
      const url = parseUrl(input instanceof Request ? input.url : input);
      const literal = literalAddress(url.hostname);
      if (literal) this.judge(url.hostname, literal);
      const headers = new Headers(init?.headers);
      for (const name of ['cookie', 'host', SIGNATURE_HEADER]) headers.delete(name);
      if (url.origin === opts.origin) for (const [k, v] of Object.entries(secret)) headers.set(k, v);
      headers.set('user-agent', USER_AGENT);
      const body = typeof init?.body === 'string' ? init.body : init?.body == null ? '' : undefined;
      if (body === undefined) throw new OutboundError('invalid_request', 'only string bodies can be signed');
      if (opts.signWith) headers.set(SIGNATURE_HEADER, signatureHeader(opts.signWith, body, this.now()));
      let res: Awaited<ReturnType<typeof undiciFetch>>;
      try {
        res = await undiciFetch(url, {
          method: init?.method ?? 'GET',
          headers: [...headers],
          body: init?.body == null ? null : body,
          signal: init?.signal ?? null,
          redirect: 'manual',
          dispatcher: this.agent,
        });
      } catch (err) {
        throw ourError(err) ?? err;
      }
      const nullBody = res.status === 204 || res.status === 304 || !res.body;
      const capped = nullBody
        ? null
        : (res.body as ReadableStream<Uint8Array>).pipeThrough(byteCap(maxBytes, url.host));
      const outHeaders = [...res.headers].filter(([name]) => name !== 'set-cookie');
      return new Response(capped, { status: res.status, statusText: res.statusText, headers: outHeaders });
    };
    return guarded as typeof fetch;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /** Every address of `hostname`, each judged; the first refused one refuses the host. */
  private async checkedAddresses(hostname: string): Promise<Array<{ address: string; family: number }>> {
    let found: ReadonlyArray<{ address: string; family: number }>;
    try {
      found = await this.resolveHost(hostname);
    } catch (err) {
      throw new OutboundError(
        'unresolvable',
        `${hostname} does not resolve (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
        {
          host: hostname,
        },
      );
    }
    if (!found.length)
      throw new OutboundError('unresolvable', `${hostname} has no addresses`, { host: hostname });
    for (const a of found) this.judge(hostname, a.address);
    return found.map((a) => ({ address: a.address, family: a.family }));
  }

  private judge(host: string, address: string): void {
    const verdict = this.allowlist.judge(host, address);
    if (verdict.allowed) return;
    const via =
      host.replace(/^\[(.*)\]$/, '$1') === address ? address : `${host} resolves to ${address}, which`;
    const article = /^[aeiou]/i.test(verdict.range) ? 'an' : 'a';
    const why = neverAllowed(verdict)
      ? 'never allowed, not even by OUTBOUND_ALLOWLIST'
      : 'only public addresses, or hosts in OUTBOUND_ALLOWLIST';
    throw new OutboundError('refused', `${via} is ${article} ${verdict.range} address: refused (${why})`, {
      host,
      address,
      range: verdict.range,
    });
  }
}

function parseUrl(input: string | URL): URL {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new OutboundError('invalid_request', 'not a valid URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new OutboundError('invalid_request', `${url.protocol} URLs are not called (only http and https)`);
  }
  if (url.username || url.password) {
    throw new OutboundError(
      'invalid_request',
      'a URL with a user name or password is not called (use a secret header)',
    );
  }
  return url;
}

function headerRecord(input: Readonly<Record<string, string>> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(input ?? {})) {
    const lower = name.toLowerCase();
    if (FORBIDDEN_HEADERS.has(lower))
      throw new OutboundError('invalid_request', `the header ${name} is set by the worker, not by a caller`);
    out[lower] = value;
  }
  return out;
}

function responseHeaders(raw: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    if (value === undefined || name === 'set-cookie') continue;
    out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

async function readCapped(
  body: AsyncIterable<Buffer>,
  maxBytes: number,
): Promise<{ body: Buffer; truncated: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  // Leaving the loop early destroys the stream: the rest of a long response is never read.
  for await (const chunk of body) {
    if (size + chunk.length > maxBytes) {
      chunks.push(chunk.subarray(0, maxBytes - size));
      size = maxBytes;
      truncated = true;
      break;
    }
    chunks.push(chunk);
    size += chunk.length;
  }
  return { body: Buffer.concat(chunks, size), truncated };
}

function byteCap(maxBytes: number, host: string): TransformStream<Uint8Array, Uint8Array> {
  let size = 0;
  return new TransformStream({
    transform(chunk, controller) {
      size += chunk.byteLength;
      if (size > maxBytes)
        controller.error(
          new OutboundError('network', `${host}: response longer than ${maxBytes} bytes`, { host }),
        );
      else controller.enqueue(chunk);
    },
  });
}

/** Our own error (the lookup's refusal), wherever the HTTP client wrapped it. */
function ourError(err: unknown): OutboundError | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof OutboundError) return e;
    if (e instanceof AggregateError) {
      const inner = e.errors.find((x) => x instanceof OutboundError) as OutboundError | undefined;
      if (inner) return inner;
    }
  }
  return undefined;
}

function failure(err: unknown, url: URL, deadline: AbortSignal, timeoutMs: number): OutboundError {
  const ours = ourError(err);
  if (ours) return ours;
  if (deadline.aborted) {
    return new OutboundError(
      'timeout',
      `${url.host} did not answer within ${timeoutMs} ms`,
      { host: url.hostname },
      { cause: err },
    );
  }
  const e = err as { name?: string; code?: string; message?: string };
  if (e.name === 'AbortError')
    return new OutboundError('aborted', `the call to ${url.host} was cancelled`, { host: url.hostname });
  return new OutboundError(
    'network',
    `${url.host}: ${e.code ?? e.message ?? 'request failed'}`,
    { host: url.hostname },
    { cause: err },
  );
}
