import type { LocalProject } from '../stack/project.js';
import { OpsError } from './errors.js';
import type { DedicatedProvisioner, ProjectHandle, ProjectKeys } from './provisioner.js';

/** What the local stack offers for dedicated projects (LocalStack.addDedicated). */
export interface DedicatedProjectHost {
  addDedicated(name?: string): Promise<LocalProject>;
}

/**
 * Dedicated projects on the local stack: each is a new embedded database (PGlite, or a database on
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
