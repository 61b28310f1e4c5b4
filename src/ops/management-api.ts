import { randomBytes } from 'node:crypto';
import pRetry, { AbortError } from 'p-retry';
import type { Logger } from 'pino';
import { z } from 'zod';
import { type Clock, DEFAULT_RETRY, type RetryPolicy, systemClock } from './requests.js';
import { OpsError } from './errors.js';
import type { DedicatedProvisioner, ProjectHandle, ProjectKeys } from './provisioner.js';

export const MANAGEMENT_API_URL = 'https://api.supabase.com';

export interface ManagementApiOptions {
  /** The Management API (https://api.supabase.com); a loopback server in tests. */
  baseUrl?: string;
  /** A personal access token or OAuth token (SUPABASE_ACCESS_TOKEN), sent as `Authorization: Bearer`. */
  accessToken: string;
  /** The organization the projects are created in. */
  organizationSlug: string;
  /** A specific region code, e.g. 'eu-central-1'. */
  region?: string;
  /** Omit for the smallest size. */
  desiredInstanceSize?: string;
  /** The new project's database password; random by default. */
  dbPassword?: () => string;
  /** The project's API URL; hosted Supabase serves it at https://<ref>.supabase.co. */
  projectUrl?: (ref: string) => string;
  /** Between two status polls while the project comes up. */
  pollIntervalMs?: number;
  /** How long to wait for a new project to become healthy before giving up (a re-run waits again). */
  readyTimeoutMs?: number;
  /** Retries of safe requests (reads, SQL that is idempotent) on 429, 5xx and network errors. */
  retry?: RetryPolicy;
  clock?: Clock;
  fetch?: typeof fetch;
  log?: Logger;
}

export class ManagementApiError extends OpsError {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    detail: string,
  ) {
    super(`Supabase Management API ${method} ${path} answered ${status}: ${detail}`);
  }
}

// Response shapes of the endpoints used (Supabase's OpenAPI: V1ProjectResponse,
// V1ProjectWithDatabaseResponse, V1ServiceHealthResponse, ApiKeyResponse). Only the fields read here.
const projectResponse = z.object({
  id: z.string().optional(),
  ref: z.string().optional(),
  name: z.string(),
  status: z.string(),
});
const healthResponse = z.array(
  z.object({
    name: z.string(),
    status: z.string(),
    healthy: z.boolean().optional(),
    error: z.string().optional(),
  }),
);
const apiKeysResponse = z.array(
  z.object({
    name: z.string(),
    api_key: z.string().nullable().optional(),
    type: z.string().nullable().optional(),
  }),
);

/** Project statuses from which a project will not come up by waiting. */
const DEAD_STATUSES = new Set([
  'INIT_FAILED',
  'REMOVED',
  'GOING_DOWN',
  'INACTIVE',
  'PAUSING',
  'RESTORE_FAILED',
]);
/** Services a sidekick project needs: its database and the REST API (PostgREST). */
const SERVICES = ['db', 'rest'] as const;

/**
 * Dedicated projects through Supabase's Management API:
 * `POST /v1/projects` (create), `GET /v1/projects/{ref}` and `GET /v1/projects/{ref}/health`
 * (wait until ACTIVE_HEALTHY), `GET /v1/projects/{ref}/api-keys` (the anon and service_role keys),
 * `POST /v1/projects/{ref}/database/query` (migrations).
 */
export class ManagementApiProvisioner implements DedicatedProvisioner {
  readonly kind = 'management-api';
  private readonly baseUrl: string;
  private readonly clock: Clock;
  private readonly fetchFn: typeof fetch;

  constructor(private readonly opts: ManagementApiOptions) {
    this.baseUrl = (opts.baseUrl ?? MANAGEMENT_API_URL).replace(/\/+$/, '');
    this.clock = opts.clock ?? systemClock;
    this.fetchFn = opts.fetch ?? fetch;
  }

  projectUrl(ref: string): string {
    return this.opts.projectUrl ? this.opts.projectUrl(ref) : `https://${ref}.supabase.co`;
  }

  async findProject(name: string): Promise<ProjectHandle | null> {
    const list = z.array(projectResponse).parse(await this.call('GET', '/v1/projects', { retryable: true }));
    const found = list.find((p) => p.name === name && !DEAD_STATUSES.has(p.status));
    const ref = found?.ref ?? found?.id;
    return ref ? { ref, url: this.projectUrl(ref) } : null;
  }

  async createProject(req: { name: string; clientId: string }): Promise<ProjectHandle> {
    const body: Record<string, unknown> = {
      name: req.name,
      organization_slug: this.opts.organizationSlug,
      db_pass: (this.opts.dbPassword ?? randomPassword)(),
      region_selection: { type: 'specific', code: this.opts.region ?? 'us-east-1' },
    };
    if (this.opts.desiredInstanceSize) body.desired_instance_size = this.opts.desiredInstanceSize;
    // Never retried: a lost answer could mean a created project. A re-run finds it by name instead.
    const created = projectResponse.parse(
      await this.call('POST', '/v1/projects', { body, retryable: false }),
    );
    const ref = created.ref ?? created.id;
    if (!ref) throw new OpsError('the Management API created a project but returned no ref');
    this.opts.log?.info({ ref, name: req.name }, 'dedicated project created');
    return { ref, url: this.projectUrl(ref) };
  }

  async waitUntilReady(ref: string): Promise<void> {
    const deadline = this.clock.now().getTime() + (this.opts.readyTimeoutMs ?? 15 * 60_000);
    const interval = this.opts.pollIntervalMs ?? 5000;
    let last = 'unknown';
    for (;;) {
      const project = projectResponse.parse(
        await this.call('GET', `/v1/projects/${encodeURIComponent(ref)}`, { retryable: true }),
      );
      last = `project ${project.status}`;
      if (DEAD_STATUSES.has(project.status)) {
        throw new OpsError(`project ${ref} cannot come up: its status is ${project.status}`);
      }
      if (project.status === 'ACTIVE_HEALTHY') {
        const query = SERVICES.map((s) => `services=${s}`).join('&');
        const health = healthResponse.parse(
          await this.call('GET', `/v1/projects/${encodeURIComponent(ref)}/health?${query}`, {
            retryable: true,
          }),
        );
        const waiting = SERVICES.filter((s) => health.find((h) => h.name === s)?.status !== 'ACTIVE_HEALTHY');
        if (waiting.length === 0) return;
        last = `services not healthy yet: ${waiting.join(', ')}`;
      }
      if (this.clock.now().getTime() >= deadline) {
        throw new OpsError(
          `project ${ref} did not become healthy in time (${last}); run the command again to keep waiting`,
        );
      }
      this.opts.log?.debug({ ref, status: last }, 'waiting for the project to come up');
      await this.clock.sleep(interval);
    }
  }

  async getKeys(ref: string): Promise<ProjectKeys> {
    const keys = apiKeysResponse.parse(
      await this.call('GET', `/v1/projects/${encodeURIComponent(ref)}/api-keys?reveal=true`, {
        retryable: true,
      }),
    );
    const pick = (legacyName: string, type: string) =>
      keys.find((k) => k.name === legacyName && (k.type ?? 'legacy') === 'legacy' && k.api_key)?.api_key ??
      keys.find((k) => k.type === type && k.api_key)?.api_key;
    const anonKey = pick('anon', 'publishable');
    const serviceRoleKey = pick('service_role', 'secret');
    if (!anonKey || !serviceRoleKey) {
      throw new OpsError(
        `project ${ref} has no ${anonKey ? '' : 'anon/publishable '}${serviceRoleKey ? '' : 'service_role/secret '}API key in GET /api-keys`,
      );
    }
    return { anonKey, serviceRoleKey };
  }

  async runSql(ref: string, sql: string): Promise<void> {
    // Migrations are idempotent: safe to retry. A CONCURRENTLY index build is not: a retry after a
    // lost reply would find the half-built INVALID index, skip it (IF NOT EXISTS) and report success;
    // its error goes up instead, and the upgrade's next run drops and rebuilds the index.
    await this.call('POST', `/v1/projects/${encodeURIComponent(ref)}/database/query`, {
      body: { query: sql },
      retryable: !/\bCONCURRENTLY\b/i.test(sql),
    });
  }

  private async call(
    method: 'GET' | 'POST',
    path: string,
    opts: { body?: unknown; retryable: boolean },
  ): Promise<unknown> {
    const retry = this.opts.retry ?? DEFAULT_RETRY;
    const once = async (): Promise<unknown> => {
      let res: Response;
      try {
        res = await this.fetchFn(`${this.baseUrl}${path}`, {
          method,
          headers: {
            authorization: `Bearer ${this.opts.accessToken}`,
            accept: 'application/json',
            ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        });
      } catch (err) {
        const e = new ManagementApiError(method, path.split('?')[0]!, 0, (err as Error).message);
        if (opts.retryable) throw e;
        throw new AbortError(e);
      }
      const text = await res.text();
      if (res.ok) return text ? JSON.parse(text) : null;
      const e = new ManagementApiError(
        method,
        path.split('?')[0]!,
        res.status,
        errorDetail(text, res.statusText),
      );
      if (opts.retryable && (res.status >= 500 || res.status === 429)) throw e;
      throw new AbortError(e);
    };
    return pRetry(once, {
      retries: opts.retryable ? retry.retries : 0,
      minTimeout: retry.minMs,
      maxTimeout: retry.maxMs,
    });
  }
}

function errorDetail(text: string, fallback: string): string {
  try {
    const body = JSON.parse(text) as { message?: unknown; error?: unknown };
    const msg = body.message ?? body.error;
    if (typeof msg === 'string') return msg;
  } catch {
    // not JSON
  }
  return text.slice(0, 300) || fallback;
}

function randomPassword(): string {
  return randomBytes(24).toString('base64url');
}
