import type { ClientConnection } from '../tenancy/connections.js';
import { describeRef, findSidekick, type SidekickRow, sidekickRef } from '../tenancy/sidekicks.js';
import type { TenantQuery } from '../tenancy/tenant-query.js';
import { asClientId, type ClientId } from '../tenancy/types.js';
import { UsageError } from './errors.js';

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

export function connectClient(deps: TenantDeps, clientId: string): Promise<ClientConnection> {
  return deps.connections.forClient(clientIdArg(clientId));
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
