import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A client's own HTTP endpoint (what a tool's URL points at), on loopback: it records every
 * request and answers through a programmable handler. `verify` is the check the README tells
 * clients to write, in plain node:crypto (not the worker's own code), so the test proves that
 * what the worker sends verifies the way the documentation says.
 */

export interface EndpointRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  /** The raw body, as the signature covers it. */
  body: string;
}

export interface EndpointAnswer {
  status?: number;
  json?: unknown;
  text?: string;
  headers?: Record<string, string>;
}

// biome-ignore lint/suspicious/noConfusingVoidType: a handler that writes to `res` itself returns nothing.
type EndpointReply = EndpointAnswer | void;

/** Answers with an EndpointAnswer, or writes to `res` itself and returns nothing. */
export type EndpointHandler = (
  req: EndpointRequest,
  res: ServerResponse,
) => EndpointReply | Promise<EndpointReply>;

export interface ClientEndpoint {
  url: string;
  port: number;
  requests: EndpointRequest[];
  handle(handler: EndpointHandler): void;
  close(): Promise<void>;
}

/** The README's verification snippet, verbatim in spirit: timestamp window, HMAC, replay memory. */
export function makeVerifier(secret: string, toleranceSeconds = 300) {
  const seen = new Map<string, number>(); // v1 → when it expires
  return function verify(header: string | undefined, rawBody: string): true | string {
    const parts = Object.fromEntries((header ?? '').split(',').map((p) => p.split('=', 2)));
    const t = Number(parts.t);
    if (!parts.v1 || !Number.isInteger(t)) return 'no signature';
    const now = Math.floor(Date.now() / 1000);
    if (Math.abs(now - t) > toleranceSeconds) return 'too old';
    const expected = createHmac('sha256', secret).update(`${t}.${rawBody}`).digest();
    const given = Buffer.from(parts.v1, 'hex');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'bad signature';
    if (seen.has(parts.v1)) return 'replayed';
    for (const [k, exp] of seen) if (exp < now) seen.delete(k);
    seen.set(parts.v1, t + toleranceSeconds);
    return true;
  };
}

export async function startClientEndpoint(host = '127.0.0.1', port = 0): Promise<ClientEndpoint> {
  const requests: EndpointRequest[] = [];
  let handler: EndpointHandler = () => ({ json: { ok: true } });
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers))
        if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
      const recorded = {
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        headers,
        body: Buffer.concat(parts).toString('utf8'),
      };
      requests.push(recorded);
      Promise.resolve(handler(recorded, res))
        .then((out) => {
          if (!out || res.headersSent || res.writableEnded) return;
          const text = out.text ?? (out.json === undefined ? '' : JSON.stringify(out.json));
          res.writeHead(out.status ?? 200, {
            'content-type': out.json === undefined ? 'text/plain' : 'application/json',
            ...out.headers,
          });
          res.end(text);
        })
        .catch((err: unknown) => {
          if (!res.headersSent) res.writeHead(500);
          res.end(String(err));
        });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}`,
    port: bound,
    requests,
    handle(next) {
      handler = next;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
