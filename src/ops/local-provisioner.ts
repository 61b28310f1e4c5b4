import { z } from 'zod';
import type { LocalProject } from '../stack/project.js';
import { OpsError, UsageError } from './errors.js';
import type { DedicatedProvisioner, ProjectHandle, ProjectKeys } from './provisioner.js';

/** What the local stack offers for dedicated projects (LocalStack.addDedicated). */
export interface DedicatedProjectHost {
  addDedicated(name?: string): Promise<LocalProject>;
}

/**
 * Dedicated projects on the local stack, in this process (LocalStackProvisioner: tests, the
 * embedded worker) or in the `npm run stack` of another terminal (StackControlProvisioner).
 *
 * In this process: each is a new embedded database (PGlite, or a database on
 * the real server) with PostgREST and the gateway in front, migrations applied. Projects live as
 * long as the stack's process, so a re-run can reuse one only within that process (tests).
 */
export class LocalStackProvisioner implements DedicatedProvisioner {
  readonly kind = 'local-stack';
  private readonly projects = new Map<string, LocalProject>();

  constructor(private readonly host: DedicatedProjectHost) {}

  /** The local project behind a ref (tests use it to look at the database or take the API down). */
  project(ref: string): LocalProject {
    const p = this.projects.get(ref);
    if (!p) {
      throw new OpsError(
        `local project ${ref} does not exist in this process (local projects end with their stack)`,
      );
    }
    return p;
  }

  async findProject(name: string): Promise<ProjectHandle | null> {
    const p = this.projects.get(name);
    return p ? { ref: p.name, url: p.url } : null;
  }

  async createProject(req: { name: string }): Promise<ProjectHandle> {
    const p = await this.host.addDedicated(req.name);
    this.projects.set(p.name, p);
    return { ref: p.name, url: p.url };
  }

  async waitUntilReady(ref: string): Promise<void> {
    const p = this.project(ref);
    if (!p.gateway.isUp) throw new OpsError(`local project ${ref} is down (its gateway is stopped)`);
  }

  async getKeys(ref: string): Promise<ProjectKeys> {
    const p = this.project(ref);
    return { anonKey: p.anonKey, serviceRoleKey: p.serviceRoleKey };
  }

  async runSql(ref: string, sql: string): Promise<void> {
    await this.project(ref).sql.exec(sql);
  }

  async querySql(ref: string, sql: string): Promise<Array<Record<string, unknown>>> {
    return this.project(ref).sql.query(sql);
  }
}

/** Where the running local stack's control endpoint is (what `npm run stack` prints). */
export interface StackControlAddress {
  /** LOCAL_STACK_CONTROL_URL: http on a loopback address. */
  url: string;
  /** LOCAL_STACK_CONTROL_TOKEN. */
  token: string;
  /** The platform the CLI works on: the stack must be the one it belongs to. */
  platformUrl: string | undefined;
  fetch?: typeof fetch;
}

const controlProject = z.object({
  name: z.string(),
  url: z.string(),
  anon_key: z.string(),
  service_role_key: z.string(),
  up: z.boolean(),
});

/**
 * Dedicated projects from a local stack running in another process (`npm run stack` in another
 * terminal), through its control endpoint (src/stack/control.ts). The projects live in that
 * process, as long as it runs; this side only asks. Refuses an endpoint that is not on loopback
 * (the token would travel), and a stack whose platform is not the one this command works on (its
 * projects would be registered in a platform that cannot reach them).
 */
export class StackControlProvisioner implements DedicatedProvisioner {
  readonly kind = 'local-stack';
  private readonly base: URL;
  private checked: Promise<void> | undefined;

  constructor(private readonly control: StackControlAddress) {
    let url: URL;
    try {
      url = new URL(control.url);
    } catch {
      throw new UsageError(`LOCAL_STACK_CONTROL_URL: not a URL: ${control.url}`);
    }
    if (url.protocol !== 'http:' || !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) {
      throw new UsageError(
        `LOCAL_STACK_CONTROL_URL: ${control.url} is not on this machine's loopback (http://127.0.0.1:PORT): the local stack's control endpoint never is`,
      );
    }
    if (!control.token)
      throw new UsageError('LOCAL_STACK_CONTROL_URL needs LOCAL_STACK_CONTROL_TOKEN (printed with it)');
    this.base = url;
  }

  async findProject(name: string): Promise<ProjectHandle | null> {
    const p = await this.call('GET', `/v1/projects/${encodeURIComponent(name)}`, undefined, [404]);
    return p ? { ref: p.name, url: p.url } : null;
  }

  async createProject(req: { name: string }): Promise<ProjectHandle> {
    const p = await this.call('POST', '/v1/projects', { name: req.name });
    return { ref: p!.name, url: p!.url };
  }

  async waitUntilReady(ref: string): Promise<void> {
    const p = await this.call('GET', `/v1/projects/${encodeURIComponent(ref)}`, undefined, [404]);
    if (!p) throw notInStack(ref);
    if (!p.up) throw new OpsError(`local project ${ref} is down (its gateway is stopped)`);
  }

  async getKeys(ref: string): Promise<ProjectKeys> {
    const p = await this.call('GET', `/v1/projects/${encodeURIComponent(ref)}`, undefined, [404]);
    if (!p) throw notInStack(ref);
    return { anonKey: p.anon_key, serviceRoleKey: p.service_role_key };
  }

  async runSql(ref: string, sql: string): Promise<void> {
    await this.call('POST', `/v1/projects/${encodeURIComponent(ref)}/sql`, { sql });
  }

  private async call(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    absentOn: number[] = [],
  ): Promise<z.infer<typeof controlProject> | null> {
    this.checked ??= this.checkPlatform();
    await this.checked;
    const res = await this.send(method, path, body);
    if (absentOn.includes(res.status)) return null;
    if (res.status === 204) return null;
    const text = await res.text();
    if (!res.ok) throw this.failure(method, path, res.status, text);
    return controlProject.parse(JSON.parse(text));
  }

  private async checkPlatform(): Promise<void> {
    const res = await this.send('GET', '/v1/stack', undefined);
    const text = await res.text();
    if (!res.ok) throw this.failure('GET', '/v1/stack', res.status, text);
    const { platform_url: theirs } = z.object({ platform_url: z.string() }).parse(JSON.parse(text));
    const ours = this.control.platformUrl;
    if (ours && theirs.replace(/\/+$/, '') !== ours.replace(/\/+$/, '')) {
      throw new UsageError(
        `LOCAL_STACK_CONTROL_URL belongs to the stack whose platform is ${theirs}, but PLATFORM_SUPABASE_URL is ${ours}: use the lines that stack printed together`,
      );
    }
  }

  private async send(method: string, path: string, body: unknown): Promise<Response> {
    const doFetch = this.control.fetch ?? fetch;
    try {
      return await doFetch(new URL(path, this.base), {
        method,
        headers: {
          authorization: `Bearer ${this.control.token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new OpsError(
        `the local stack's control endpoint ${this.base.origin} does not answer (${(err as Error).message}): is \`npm run stack\` still running?`,
      );
    }
  }

  private failure(method: string, path: string, status: number, text: string): Error {
    let message = text;
    try {
      message = String((JSON.parse(text) as { message?: unknown }).message ?? text);
    } catch {}
    if (status === 401) {
      return new UsageError(
        `LOCAL_STACK_CONTROL_TOKEN: the local stack refused it (${message}); use the token that stack printed`,
      );
    }
    return new OpsError(`local stack control ${method} ${path} answered ${status}: ${message}`);
  }
}

function notInStack(ref: string): OpsError {
  return new OpsError(
    `local project ${ref} is not in the running stack (local projects end with their stack): run \`sidekick clients delete\` for the client and create it again`,
  );
}
