import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createDatabase, type FreshDatabase } from '../../src/stack/databases.js';
import { createProjectKeys } from '../../src/stack/keys.js';
import { migrationFiles } from '../../src/stack/sql.js';

/** One request the loopback Management API received. */
export interface ManagementRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  query: URLSearchParams;
  authorization: string | undefined;
  body: unknown;
  status: number;
}

export interface MockProject {
  ref: string;
  name: string;
  organizationSlug: string;
  region: string;
  dbPass: string;
  createdAt: string;
  /** Status reads so far; the project is COMING_UP for the first `comingUpPolls`. */
  polls: number;
  anonKey: string;
  serviceRoleKey: string;
  /** The project's database: a fresh one with only what hosted Supabase provides (roles, auth.jwt()). */
  db: FreshDatabase;
  /** SQL received through POST /database/query, in order. */
  queries: string[];
}

export interface ManagementApiOptions {
  accessToken: string;
  /** Status polls during which a new project reports COMING_UP (then ACTIVE_HEALTHY). */
  comingUpPolls?: number;
  /** Superuser URL of a real PostgreSQL server for the projects' databases; absent = PGlite. */
  serverUrl?: string | undefined;
}

const REGIONS = new Set([
  'us-east-1',
  'us-east-2',
  'us-west-1',
  'us-west-2',
  'ap-east-1',
  'ap-southeast-1',
  'ap-northeast-1',
  'ap-northeast-2',
  'ap-southeast-2',
  'eu-west-1',
  'eu-west-2',
  'eu-west-3',
  'eu-north-1',
  'eu-central-1',
  'eu-central-2',
  'ca-central-1',
  'ap-south-1',
  'sa-east-1',
]);
const CREATE_FIELDS = new Set([
  'db_pass',
  'name',
  'organization_id',
  'organization_slug',
  'plan',
  'region',
  'region_selection',
  'kps_enabled',
  'desired_instance_size',
  'template_url',
]);
const SERVICES = new Set([
  'auth',
  'db',
  'db_postgres_user',
  'pooler',
  'realtime',
  'rest',
  'storage',
  'pg_bouncer',
]);

/**
 * A loopback stand-in for Supabase's Management API (https://api.supabase.com), answering in the
 * shapes of its OpenAPI description for the endpoints provisioning uses: POST/GET /v1/projects,
 * GET /v1/projects/{ref} and /health (COMING_UP, then ACTIVE_HEALTHY), GET /api-keys, and
 * POST /database/query, which runs the SQL against the project's real (PGlite or PostgreSQL)
 * database, so migrations really apply, and answers a single statement's rows as the API does. Every request is recorded for assertions.
 */
export class ManagementApiServer {
  readonly requests: ManagementRequest[] = [];
  readonly projects = new Map<string, MockProject>();
  private readonly failures: Array<{ method: string; path: RegExp; status: number; times: number }> = [];

  private constructor(
    private readonly server: Server,
    private readonly opts: ManagementApiOptions,
  ) {}

  static async start(opts: ManagementApiOptions): Promise<ManagementApiServer> {
    const server = createServer();
    const api = new ManagementApiServer(server, opts);
    server.on('request', (req, res) => {
      api.handle(req, res).catch((err: Error) => send(res, 500, { message: err.message }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return api;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The next `times` requests matching method and path get `status` (e.g. 503) instead of an answer. */
  failNext(method: string, path: RegExp, status: number, times = 1): void {
    this.failures.push({ method, path, status, times });
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await Promise.all([...this.projects.values()].map((p) => p.db.drop().catch(() => {})));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const raw = await readBody(req);
    let body: unknown;
    try {
      body = raw ? JSON.parse(raw) : undefined;
    } catch {
      return this.reply(req, url, res, 400, { message: 'body is not JSON' }, raw);
    }
    const reply = (status: number, payload: unknown) => this.reply(req, url, res, status, payload, body);
    if (req.headers.authorization !== `Bearer ${this.opts.accessToken}`) {
      return reply(401, { message: 'Unauthorized' });
    }
    const method = req.method ?? 'GET';
    const failure = this.failures.find(
      (f) => f.times > 0 && f.method === method && f.path.test(url.pathname),
    );
    if (failure) {
      failure.times--;
      return reply(failure.status, { message: `injected failure ${failure.status}` });
    }

    if (url.pathname === '/v1/projects') {
      if (method === 'GET')
        return reply(
          200,
          [...this.projects.values()].map((p) => this.withDatabase(p)),
        );
      if (method === 'POST') return this.createProject(body, reply);
    }
    const m = /^\/v1\/projects\/([a-z]{20})(\/.*)?$/.exec(url.pathname);
    const project = m ? this.projects.get(m[1]!) : undefined;
    if (m && !project) return reply(404, { message: 'Project not found' });
    if (project) {
      const sub = m![2] ?? '';
      if (method === 'GET' && sub === '') {
        project.polls++;
        return reply(200, this.withDatabase(project));
      }
      if (method === 'GET' && sub === '/health') {
        const services = url.searchParams.getAll('services').flatMap((s) => s.split(','));
        if (!services.length || services.some((s) => !SERVICES.has(s))) {
          return reply(400, { message: `services must list one or more of ${[...SERVICES].join(', ')}` });
        }
        const status = this.status(project) === 'ACTIVE_HEALTHY' ? 'ACTIVE_HEALTHY' : 'COMING_UP';
        return reply(
          200,
          services.map((name) => ({ name, healthy: status === 'ACTIVE_HEALTHY', status })),
        );
      }
      if (method === 'GET' && sub === '/api-keys') {
        const reveal = url.searchParams.get('reveal') === 'true';
        return reply(200, [
          {
            name: 'anon',
            api_key: project.anonKey,
            id: 'anon',
            type: 'legacy',
            prefix: null,
            description: 'Legacy anon API key',
            hash: null,
          },
          {
            name: 'service_role',
            api_key: project.serviceRoleKey,
            id: 'service_role',
            type: 'legacy',
            prefix: null,
            description: 'Legacy service_role API key',
            hash: null,
          },
          {
            name: 'default',
            api_key: `sb_publishable_${project.ref}`,
            id: randomUuid(),
            type: 'publishable',
            prefix: null,
            hash: null,
          },
          {
            name: 'default',
            api_key: reveal ? `sb_secret_${project.ref}` : 'sb_secret_····',
            id: randomUuid(),
            type: 'secret',
            prefix: 'sb_secret_',
            hash: 'x',
          },
        ]);
      }
      if (method === 'POST' && sub === '/database/query') {
        const query = (body as { query?: unknown } | undefined)?.query;
        if (typeof query !== 'string' || query.length === 0)
          return reply(400, { message: 'query must be a non-empty string' });
        if (this.status(project) !== 'ACTIVE_HEALTHY') return reply(400, { message: 'project is not ready' });
        project.queries.push(query);
        try {
          // The API answers the result rows of the query; a single statement's are kept here
          // (a script of several, e.g. a migration, answers an empty list).
          if (/^[^;]*;?\s*$/.test(query)) return reply(201, await project.db.sql.query(query));
          await project.db.sql.exec(query);
        } catch (err) {
          return reply(400, { message: (err as Error).message });
        }
        return reply(201, []);
      }
    }
    return reply(404, { message: `no route for ${method} ${url.pathname}` });
  }

  private async createProject(
    body: unknown,
    reply: (status: number, payload: unknown) => void,
  ): Promise<void> {
    const b = (body ?? {}) as Record<string, unknown>;
    const unknown = Object.keys(b).filter((k) => !CREATE_FIELDS.has(k));
    if (unknown.length) return reply(400, { message: `property ${unknown[0]} should not exist` });
    for (const k of ['db_pass', 'name', 'organization_slug']) {
      if (typeof b[k] !== 'string' || !(b[k] as string).length)
        return reply(400, { message: `${k} must be a string` });
    }
    if (b.region !== undefined && b.region_selection !== undefined) {
      return reply(400, { message: 'Only one of region or region_selection can be specified' });
    }
    const sel = b.region_selection as { type?: unknown; code?: unknown } | undefined;
    const region = sel ? sel.code : (b.region ?? 'us-east-1');
    if (sel && sel.type !== 'specific')
      return reply(400, { message: 'region_selection.type must be specific here' });
    if (typeof region !== 'string' || !REGIONS.has(region))
      return reply(400, { message: `unknown region ${String(region)}` });

    const ref = Array.from(randomBytes(20), (x) => String.fromCharCode(97 + (x % 26))).join('');
    const db = await createDatabase({ serverUrl: this.opts.serverUrl, label: `mgmt_${ref.slice(0, 6)}` });
    // What hosted Supabase has before any migration: its roles and auth schema.
    for (const file of await migrationFiles('local')) await db.sql.exec(await readFile(file, 'utf8'));
    const keys = await createProjectKeys(ref);
    const project: MockProject = {
      ref,
      name: b.name as string,
      organizationSlug: b.organization_slug as string,
      region,
      dbPass: b.db_pass as string,
      createdAt: new Date().toISOString(),
      polls: 0,
      anonKey: keys.anonKey,
      serviceRoleKey: keys.serviceRoleKey,
      db,
      queries: [],
    };
    this.projects.set(ref, project);
    reply(201, this.summary(project));
  }

  private status(p: MockProject): string {
    return p.polls > (this.opts.comingUpPolls ?? 2) ? 'ACTIVE_HEALTHY' : 'COMING_UP';
  }

  /** V1ProjectResponse. */
  private summary(p: MockProject) {
    return {
      id: p.ref,
      ref: p.ref,
      organization_id: p.organizationSlug,
      organization_slug: p.organizationSlug,
      name: p.name,
      region: p.region,
      created_at: p.createdAt,
      status: this.status(p),
    };
  }

  /** V1ProjectWithDatabaseResponse. */
  private withDatabase(p: MockProject) {
    return {
      ...this.summary(p),
      database: {
        host: `db.${p.ref}.supabase.co`,
        version: '17.4.1',
        postgres_engine: '17',
        release_channel: 'ga',
      },
    };
  }

  private reply(
    req: IncomingMessage,
    url: URL,
    res: ServerResponse,
    status: number,
    payload: unknown,
    body: unknown,
  ): void {
    this.requests.push({
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      authorization: req.headers.authorization,
      body,
      status,
    });
    send(res, status, payload);
  }
}

function send(res: ServerResponse, status: number, payload: unknown): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(payload));
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function randomUuid(): string {
  return crypto.randomUUID();
}
