import type { Logger } from 'pino';
import { createSupabase } from '../tenancy/supabase.js';
import { UsageError } from './errors.js';
import type { ClientRow, PlatformAdmin } from './platform.js';
import {
  claimProjectOwner,
  type ProjectChannel,
  ProjectOwnerConflictError,
  UnownedProjectHoldsDataError,
} from './project-owner.js';
import {
  applyDedicatedMigrations,
  type DedicatedProvisioner,
  type ProjectHandle,
  type ProjectKeys,
  projectNameFor,
} from './provisioner.js';

export type DedicatedProject = ProjectHandle & ProjectKeys;

export interface EnsureProjectDeps {
  platform: PlatformAdmin;
  provisioner: DedicatedProvisioner;
  log: Logger;
}

export interface EnsureProjectOptions {
  migrate: boolean;
  /**
   * Claim a project that records no owner even though it already holds sidekicks (the client's own
   * existing project); otherwise such a project is refused, as it may be another client's.
   */
  adoptData?: boolean;
}

/**
 * Brings the client's dedicated project to "ready for data": created (or found again), healthy, keys
 * known, migrations applied, and the client recorded in the project as its one owner. Progress goes
 * into the platform row as soon as each fact is known (the ref and URL right after creation), so
 * after a failure a re-run continues with the same project. A project that belongs to another
 * client (whatever URL or ref names it) is refused, and the row no longer names it.
 */
export async function ensureDedicatedProject(
  deps: EnsureProjectDeps,
  client: ClientRow,
  opts: EnsureProjectOptions,
): Promise<{ client: ClientRow; project: DedicatedProject }> {
  const { platform, provisioner, log } = deps;
  let row = client;
  if (!row.supabase_project_ref || !row.supabase_url) {
    const name = projectNameFor(row.id);
    const found = await provisioner.findProject(name);
    const handle = found ?? (await provisioner.createProject({ name, clientId: row.id }));
    const owner = await platform.findClientOfProject(handle.ref);
    if (owner && owner.id !== row.id) {
      throw new UsageError(
        `project ${handle.ref} already holds client ${owner.id}: a dedicated project holds one client; give this one its own project`,
      );
    }
    log.info({ ref: handle.ref, reused: Boolean(found), provisioner: provisioner.kind }, 'dedicated project');
    row = await platform.updateClient(row.id, { supabase_project_ref: handle.ref, supabase_url: handle.url });
  }
  const ref = row.supabase_project_ref!;
  await provisioner.waitUntilReady(ref);
  if (!row.supabase_anon_key || !row.supabase_service_role_key) {
    const keys = await provisioner.getKeys(ref);
    row = await platform.updateClient(row.id, {
      supabase_anon_key: keys.anonKey,
      supabase_service_role_key: keys.serviceRoleKey,
    });
  }
  const project: DedicatedProject = {
    ref,
    url: row.supabase_url!,
    anonKey: row.supabase_anon_key!,
    serviceRoleKey: row.supabase_service_role_key!,
  };
  if (opts.migrate) {
    if (provisioner.runSql) await applyDedicatedMigrations(provisioner, ref);
    else await provisioner.checkSchema?.(project);
  }
  // With SQL access the claim goes the way the migrations went; without, through the project's API.
  const channel: ProjectChannel = provisioner.querySql
    ? { kind: 'sql', query: (sql) => provisioner.querySql!(ref, sql) }
    : { kind: 'api', db: createSupabase(project.url, project.serviceRoleKey) };
  try {
    const owner = await claimProjectOwner(channel, {
      ref,
      clientId: row.id,
      adoptData: opts.adoptData ?? false,
    });
    if (owner.claimed) log.info({ ref, sidekicks: owner.sidekicks }, 'recorded as the owner of its project');
  } catch (err) {
    if (err instanceof ProjectOwnerConflictError || err instanceof UnownedProjectHoldsDataError) {
      // Not this client's project: the row must not keep pointing at it (nor keep its keys), and a
      // re-run with another project starts clean.
      await platform.updateClient(row.id, {
        supabase_project_ref: null,
        supabase_url: null,
        supabase_anon_key: null,
        supabase_service_role_key: null,
      });
    }
    throw err;
  }
  return { client: row, project };
}

/** The dedicated project the platform row names (after ensureDedicatedProject stored it). */
export function projectOf(row: ClientRow): DedicatedProject | null {
  if (
    !row.supabase_project_ref ||
    !row.supabase_url ||
    !row.supabase_anon_key ||
    !row.supabase_service_role_key
  ) {
    return null;
  }
  return {
    ref: row.supabase_project_ref,
    url: row.supabase_url,
    anonKey: row.supabase_anon_key,
    serviceRoleKey: row.supabase_service_role_key,
  };
}
