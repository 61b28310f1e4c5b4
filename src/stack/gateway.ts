import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { decodeJwt } from 'jose';

/** What the gateway saw of one request: enough for tests to assert who called with which credentials. */
export interface GatewayRequest {
  method: string;
  /** Path under /rest/v1, with its query string. */
  path: string;
  /** Which of the project's API keys the `apikey` header was. */
  apikeyRole: 'anon' | 'service_role';
  /** The `role` and `client_id` claims of the bearer token PostgREST was given (unverified here). */
  bearerRole: string | undefined;
  bearerClientId: string | undefined;
  /** True when the bearer token was the service-role API key itself. */
  usedServiceKey: boolean;
  status: number;
  /** When it arrived (performance.now()), to place it on a turn's timeline. */
  at: number;
}

export interface GatewayOptions {
  port: number;
  /** PostgREST's port; a function when PostgREST starts on the first request (a lazy project). */
  upstreamPort: number | (() => Promise<number>);
  anonKey: string;
  serviceRoleKey: string;
  /** How many requests to remember (oldest dropped first). */
  historyLimit?: number;
}

/**
 * The part of Supabase's API gateway that clients notice: PostgREST under `/rest/v1`, an `apikey`
 * header that must be one of the project's keys, and the key used as bearer token when no
 * Authorization header is sent. It counts and remembers requests, and can be taken down and
 * brought back on the same port, so tests can see round trips and simulate an outage.
 */
export class Gateway {
  readonly requests: GatewayRequest[] = [];
  /** Requests served since start or the last reset(); not bounded by historyLimit. */
  count = 0;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly opts: GatewayOptions) {}

  get port(): number {
    return this.opts.port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.opts.port}`;
  }

  get isUp(): boolean {
    return this.server !== undefined;
  }

  reset(): void {
    this.requests.length = 0;
    this.count = 0;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const server = createServer((req, res) => this.handle(req, res));
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          err.code === 'EADDRINUSE'
            ? new Error(`port ${this.opts.port} is already in use: stop what holds it or choose other ports`)
            : err,
        ),
      );
      server.listen(this.opts.port, '127.0.0.1', () => resolve());
    });
    const addr = server.address();
    if (addr && typeof addr === 'object') this.opts.port = addr.port;
    this.server = server;
  }

  /** Takes the gateway down: open connections are cut and new ones refused, like a project that is down. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }

  private handle(req: IncomingMessage, res: import('node:http').ServerResponse): void {
    const url = req.url ?? '/';
    if (!url.startsWith('/rest/v1')) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: 'no route: this local gateway serves /rest/v1 only' }));
      return;
    }
    const apikey = header(req, 'apikey') ?? new URL(url, 'http://x').searchParams.get('apikey') ?? undefined;
    const apikeyRole =
      apikey === this.opts.serviceRoleKey
        ? 'service_role'
        : apikey === this.opts.anonKey
          ? 'anon'
          : undefined;
    if (!apikeyRole) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          message: apikey ? 'Invalid API key' : 'No API key found in request',
          hint: 'Send the project anon or service_role key in the apikey header.',
        }),
      );
      return;
    }
    const authorization = header(req, 'authorization') ?? `Bearer ${apikey}`;
    const bearer = authorization.replace(/^Bearer\s+/i, '');
    let claims: { role?: unknown; client_id?: unknown } = {};
    try {
      claims = decodeJwt(bearer);
    } catch {
      // PostgREST rejects it; we only record.
    }
    const entry: GatewayRequest = {
      method: req.method ?? 'GET',
      path: url.slice('/rest/v1'.length) || '/',
      apikeyRole,
      bearerRole: typeof claims.role === 'string' ? claims.role : undefined,
      bearerClientId: typeof claims.client_id === 'string' ? claims.client_id : undefined,
      usedServiceKey: bearer === this.opts.serviceRoleKey,
      status: 0,
      at: performance.now(),
    };
    this.count++;
    this.requests.push(entry);
    if (this.requests.length > (this.opts.historyLimit ?? 10_000)) this.requests.shift();

    const headers = { ...req.headers, authorization };
    delete headers.host;
    const { upstreamPort } = this.opts;
    if (typeof upstreamPort === 'number') {
      this.forward(req, res, entry, upstreamPort, headers);
      return;
    }
    // The request body waits in the paused stream while the project starts.
    upstreamPort().then(
      (port) => this.forward(req, res, entry, port, headers),
      (err: Error) => {
        entry.status = 503;
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ message: `the local project did not start: ${err.message}` }));
      },
    );
  }

  private forward(
    req: IncomingMessage,
    res: import('node:http').ServerResponse,
    entry: GatewayRequest,
    port: number,
    headers: IncomingMessage['headers'],
  ): void {
    const upstream = httpRequest(
      { host: '127.0.0.1', port, method: req.method, path: entry.path, headers },
      (up) => {
        entry.status = up.statusCode ?? 502;
        res.writeHead(entry.status, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', (err) => {
      entry.status = 502;
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: `upstream PostgREST unreachable: ${err.message}` }));
    });
    req.pipe(upstream);
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}
