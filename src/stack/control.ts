import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { LocalProject } from './project.js';

/**
 * The running local stack's control endpoint: lets a `sidekick` command in another process (another
 * terminal) ask this stack for a new dedicated project, as `clients create --tier champion` and
 * `clients upgrade` need, the way the Supabase Management API serves hosted Supabase.
 *
 * It listens on 127.0.0.1 only and answers only requests that carry its random token (a bearer
 * token, compared in constant time) and name the loopback host they were sent to (a web page that
 * rebinds a DNS name to 127.0.0.1 sends its own host name, and cannot read or set the token).
 * Project keys and SQL access go through it, so the token is a secret: `npm run stack` prints it,
 * once, for the operator's environment.
 *
 *   GET  /v1/stack                  { platform_url }
 *   GET  /v1/projects/:name         the project (404 when this stack has none of that name)
 *   POST /v1/projects  {name}       creates it (or returns the one of that name): 201 / 200
 *   POST /v1/projects/:name/sql     {sql}: runs it as the project database's owner: 204
 */

export interface ControlHost {
  platformUrl: string;
  addDedicated(name: string): Promise<LocalProject>;
}

export interface StackControl {
  url: string;
  token: string;
  close(): Promise<void>;
}

/** What the endpoint says about a project (keys included: it is how the CLI gets them). */
export interface ControlProject {
  name: string;
  url: string;
  anon_key: string;
  service_role_key: string;
  up: boolean;
}

const PROJECT_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const MAX_BODY = 4 * 1024 * 1024;

export async function startStackControl(
  host: ControlHost,
  opts: { port?: number } = {},
): Promise<StackControl> {
  const token = randomBytes(32).toString('base64url');
  const expected = Buffer.from(`Bearer ${token}`);
  const projects = new Map<string, LocalProject>();
  const creating = new Map<string, Promise<LocalProject>>();
  let port = 0;

  const describe = (p: LocalProject): ControlProject => ({
    name: p.name,
    url: p.url,
    anon_key: p.anonKey,
    service_role_key: p.serviceRoleKey,
    up: p.gateway.isUp,
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const hostHeader = req.headers.host ?? '';
    if (hostHeader !== `127.0.0.1:${port}` && hostHeader !== `localhost:${port}`) {
      return send(res, 403, { message: 'this endpoint answers requests to 127.0.0.1 only' });
    }
    const auth = Buffer.from(req.headers.authorization ?? '');
    if (auth.length !== expected.length || !timingSafeEqual(auth, expected)) {
      return send(res, 401, { message: 'missing or wrong token (LOCAL_STACK_CONTROL_TOKEN)' });
    }
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    const parts = path.split('/').filter(Boolean);
    if (req.method === 'GET' && path === '/v1/stack')
      return send(res, 200, { platform_url: host.platformUrl });
    if (parts[0] !== 'v1' || parts[1] !== 'projects') return send(res, 404, { message: `no route ${path}` });
    const name = parts[2];
    if (req.method === 'POST' && !name) {
      const body = await readJson(req);
      const wanted = typeof body?.name === 'string' ? body.name : '';
      if (!PROJECT_NAME.test(wanted)) {
        return send(res, 400, { message: 'name: lower-case letters, digits and "-", at most 63' });
      }
      const existing = projects.get(wanted);
      if (existing) return send(res, 200, describe(existing));
      let pending = creating.get(wanted);
      if (!pending) {
        pending = host.addDedicated(wanted).then((p) => {
          projects.set(wanted, p);
          return p;
        });
        creating.set(wanted, pending);
        pending.finally(() => creating.delete(wanted)).catch(() => {});
      }
      return send(res, 201, describe(await pending));
    }
    const project = name ? projects.get(name) : undefined;
    if (!project) return send(res, 404, { message: `no project ${name ?? ''} in this stack` });
    if (req.method === 'GET' && parts.length === 3) return send(res, 200, describe(project));
    if (req.method === 'POST' && parts[3] === 'sql' && parts.length === 4) {
      const body = await readJson(req);
      if (typeof body?.sql !== 'string') return send(res, 400, { message: 'sql: expected a string' });
      try {
        await project.sql.exec(body.sql);
      } catch (err) {
        return send(res, 422, { message: (err as Error).message });
      }
      res.writeHead(204).end();
      return;
    }
    return send(res, 404, { message: `no route ${req.method} ${path}` });
  }

  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) send(res, err instanceof BodyError ? 400 : 500, { message: err.message });
      else res.destroy();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  port = addr && typeof addr === 'object' ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    token,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

class BodyError extends Error {}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown> | undefined> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new BodyError('request body too large');
    parts.push(chunk as Buffer);
  }
  try {
    const doc = JSON.parse(Buffer.concat(parts).toString('utf8'));
    return doc && typeof doc === 'object' && !Array.isArray(doc)
      ? (doc as Record<string, unknown>)
      : undefined;
  } catch {
    throw new BodyError('expected a JSON body');
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
