import type { ClientConnection } from '../tenancy/connections.js';
import { describeRef, findSidekick, type SidekickRow, sidekickRef } from '../tenancy/sidekicks.js';
import type { TenantQuery } from '../tenancy/tenant-query.js';
import { asClientId, type ClientId } from '../tenancy/types.js';
import { OpsError, UsageError } from './errors.js';
import { ProjectOwnerConflictError } from './project-owner.js';

/**
 * How every operator command about one client's data reaches it: the client's own connection (the
 * worker's ClientConnectionManager: tenant token and TenantQuery in the pool, the project's key in a
 * dedicated database) and, by what the operator typed, one of its sidekicks.
 */
export interface TenantDeps {
  connections: { forClient(clientId: ClientId): Promise<ClientConnection> };
}

/** `--client`: a uuid, else a usage error naming the option. */
export function clientIdArg(value: string): ClientId {
  try {
    return asClientId(value, '--client');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/**
 * The client's connection, checked: a dedicated project that records another client as its owner
 * is refused (ProjectOwnerConflictError, exit 2) before any command reads or writes it, whatever
 * the platform row says. A project from before owner records (no row, or no table) is served.
 */
export async function connectClient(deps: TenantDeps, clientId: string): Promise<ClientConnection> {
  const conn = await deps.connections.forClient(clientIdArg(clientId));
  if (conn.hostingType === 'dedicated') {
    const { data, error } = await conn.db.readProjectOwner();
    // 42P01 / PGRST205: the project predates the owner record (`sidekick clients verify` adds it).
    if (error && error.code !== '42P01' && error.code !== 'PGRST205') {
      throw new OpsError(`reading the owner of client ${conn.clientId}'s project: ${error.message}`);
    }
    const owner = (data as { client_id?: string } | null)?.client_id;
    if (owner && owner !== conn.clientId) {
      throw new ProjectOwnerConflictError(conn.record.project?.url ?? '(its project)', conn.clientId, owner);
    }
  }
  return conn;
}

/** `--agent`: the client's sidekick by slug or id, else a usage error that says how to list them. */
export async function sidekickArg(db: TenantQuery, agent: string): Promise<SidekickRow> {
  const ref = sidekickRef(agent);
  const row = await findSidekick(db, ref);
  if (!row) {
    throw new UsageError(
      `--agent: client ${db.clientId} has no sidekick with ${describeRef(ref)} (\`sidekick agents list --client ${db.clientId}\` shows them)`,
    );
  }
  return row;
}
