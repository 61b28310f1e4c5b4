import { createSupabase } from '../tenancy/supabase.js';
import { TENANT_TABLES } from '../tenancy/tenant-query.js';
import { OpsError } from './errors.js';
import type { DedicatedProvisioner, ProjectHandle, ProjectKeys } from './provisioner.js';

export interface ExistingProject extends ProjectHandle, ProjectKeys {}

/**
 * A project that already exists (created by hand, or the local stack's dedicated project), given
 * by URL and keys. Nothing is created; there is no SQL access, so the dedicated schema must already
 * be in place: checkSchema() verifies that through the API.
 */
export class ExistingProjectProvisioner implements DedicatedProvisioner {
  readonly kind = 'existing-project';

  constructor(private readonly project: ExistingProject) {}

  async findProject(): Promise<ProjectHandle | null> {
    return { ref: this.project.ref, url: this.project.url };
  }

  async createProject(): Promise<ProjectHandle> {
    return { ref: this.project.ref, url: this.project.url };
  }

  async waitUntilReady(ref: string): Promise<void> {
    this.assertRef(ref);
    const res = await fetch(`${this.project.url.replace(/\/+$/, '')}/rest/v1/`, {
      headers: { apikey: this.project.anonKey },
    }).catch((err: Error) => {
      throw new OpsError(`project ${ref} at ${this.project.url} does not answer: ${err.message}`);
    });
    await res.body?.cancel();
    if (res.status >= 500) throw new OpsError(`project ${ref} answers ${res.status}: not ready`);
  }

  async getKeys(ref: string): Promise<ProjectKeys> {
    this.assertRef(ref);
    return { anonKey: this.project.anonKey, serviceRoleKey: this.project.serviceRoleKey };
  }

  async checkSchema(project: ProjectHandle & ProjectKeys): Promise<void> {
    const db = createSupabase(project.url, project.serviceRoleKey);
    for (const table of TENANT_TABLES) {
      const { error } = await db.from(table).select('id', { head: true, count: 'exact' }).retry(false);
      if (error) {
        throw new OpsError(
          `project ${project.ref} lacks the dedicated schema (${table}: ${error.message || error.code}); apply migrations/dedicated to it first`,
        );
      }
    }
  }

  private assertRef(ref: string): void {
    if (ref !== this.project.ref) {
      throw new OpsError(
        `the platform names project ${ref}, but this command was given project ${this.project.ref}`,
      );
    }
  }
}
