import { createSupabase } from '../tenancy/supabase.js';
import { TENANT_TABLES, type TenantTable } from '../tenancy/tenant-query.js';
import { projectOf } from './dedicated.js';
import { UsageError } from './errors.js';
import type { ClientRow, PlatformAdmin, PoolAdmins } from './platform.js';
import { DEFAULT_RETRY, type OpsBase, request } from './requests.js';
import { countRows, purgePoolRows } from './tables.js';
import { type CleanupResult, cleanupClient } from './upgrade.js';

export interface ClientDeletionDeps extends OpsBase {
  platform: PlatformAdmin;
  pools: PoolAdmins;
}

type RowCounts = Partial<Record<TenantTable, number>>;

export interface PoolPart {
  id: string;
  name: string;
  /** The client's rows there (null: the pool did not answer). */
  rows: RowCounts | null;
  /** The pool's own record of the client (pool_clients: its sidekick limit and write fence). */
  registered: boolean;
  /** Why: the pool the client lives in, or the one a tier move left behind. */
  role: 'current' | 'left by a tier move';
}

export interface ClientDeletion {
  clientId: string;
  name: string;
  tier: string;
  hostingType: string;
  status: string;
  pools: PoolPart[];
  /** A dedicated project: never deleted here; `note` says what to do with it. */
  project: { ref: string | null; url: string | null; rows: RowCounts | null; note: string } | null;
  /** Deleting loses data (a ready client, rows somewhere, or rows that could not be counted): needs `yes`. */
  needsConfirmation: boolean;
  deleted: boolean;
  deletedRows: RowCounts;
}

/**
 * `sidekick clients delete`: removes a client from the platform. What goes: its rows in its shared
 * pool (and in the pool a tier move left them in), deleted with the pool's service role and always
 * filtered by client_id (purgePoolRows), its registration in that pool, then its platform row. A
 * dedicated project is never deleted: it is the client's own, and the note says how to remove it.
 * A failed or abandoned provisioning that left no rows goes without confirmation; anything that
 * would lose data needs `yes`. Order, for a re-run after a crash: the platform row is suspended
 * first (workers refuse new sessions), the pool registration goes (the pool refuses the client's
 * writes), then its rows, and the platform row last.
 */
export async function deleteClient(
  deps: ClientDeletionDeps,
  opts: { clientId: string; yes: boolean },
): Promise<ClientDeletion> {
  const row = await deps.platform.getClient(opts.clientId);
  if (row.migration_status === 'migrating') {
    throw new UsageError(
      `client ${row.id} is in the middle of a tier move: finish it (\`sidekick clients upgrade --client ${row.id}\`) or back out of it (\`... --abort\`) first`,
    );
  }
  const plan = await planDeletion(deps, row);
  if (!opts.yes && plan.needsConfirmation) return plan;

  const retry = deps.retry ?? DEFAULT_RETRY;
  if (row.provisioning_status !== 'suspended') {
    await deps.platform.updateClient(row.id, { provisioning_status: 'suspended' });
  }
  for (const part of plan.pools) {
    const { db } = await deps.pools.forPool(part.id);
    await request(
      `removing client ${row.id} from pool ${part.name}`,
      () => db.from('pool_clients').delete().eq('client_id', row.id).retry(false),
      retry,
    );
    const deleted = await purgePoolRows({ pool: db, clientId: row.id, retry });
    for (const [t, n] of Object.entries(deleted) as Array<[TenantTable, number]>) {
      plan.deletedRows[t] = (plan.deletedRows[t] ?? 0) + n;
    }
  }
  await deps.platform.deleteClient(row.id);
  plan.deleted = true;
  deps.log.warn(
    { client_id: row.id, deleted: plan.deletedRows, project: plan.project?.ref },
    'client deleted from the platform',
  );
  return plan;
}

async function planDeletion(deps: ClientDeletionDeps, row: ClientRow): Promise<ClientDeletion> {
  const once = { retries: 0, minMs: 0, maxMs: 0 };
  const state = row.migration_state ?? {};
  const poolIds: Array<[string, PoolPart['role']]> = [];
  if (row.shared_pool_id) poolIds.push([row.shared_pool_id, 'current']);
  const left = typeof state.source_pool_id === 'string' ? state.source_pool_id : null;
  if (left && left !== row.shared_pool_id && row.migration_status !== 'none') {
    poolIds.push([left, 'left by a tier move']);
  }
  const pools: PoolPart[] = [];
  for (const [id, role] of poolIds) {
    const { pool, db } = await deps.pools.forPool(id);
    let rows: RowCounts | null = null;
    let registered = true;
    try {
      const counts = await Promise.all(TENANT_TABLES.map((t) => countRows(db, t, row.id, once)));
      rows = Object.fromEntries(TENANT_TABLES.map((t, i) => [t, counts[i]]));
      const reg = await db.from('pool_clients').select('client_id').eq('client_id', row.id).maybeSingle();
      registered = Boolean(reg.data) || Boolean(reg.error);
    } catch {
      rows = null;
    }
    pools.push({ id, name: pool.pool_name, rows, registered, role });
  }
  let project: ClientDeletion['project'] = null;
  if (row.hosting_type === 'dedicated' && (row.supabase_project_ref || row.supabase_url)) {
    const p = projectOf(row);
    let rows: RowCounts | null = null;
    if (p) {
      try {
        const db = createSupabase(p.url, p.serviceRoleKey);
        const counts = await Promise.all(TENANT_TABLES.map((t) => countRows(db, t, undefined, once)));
        rows = Object.fromEntries(TENANT_TABLES.map((t, i) => [t, counts[i]]));
      } catch {
        rows = null;
      }
    }
    const ref = row.supabase_project_ref ?? '(no ref)';
    project = {
      ref: row.supabase_project_ref,
      url: row.supabase_url,
      rows,
      note:
        `project ${ref}${row.supabase_url ? ` (${row.supabase_url})` : ''} is the client's own and is not deleted here: ` +
        `export what the client wants to keep, then delete it in the Supabase dashboard (Project Settings, General, Delete project) ` +
        `or with the Management API (DELETE https://api.supabase.com/v1/projects/${ref}); a local stack's project ends with its stack`,
    };
  }
  const any = (r: RowCounts | null) => r === null || Object.values(r).some((n) => (n ?? 0) > 0);
  return {
    clientId: row.id,
    name: row.name,
    tier: row.tier,
    hostingType: row.hosting_type,
    status: row.provisioning_status,
    pools,
    project,
    needsConfirmation:
      row.provisioning_status === 'ready' ||
      pools.some((p) => any(p.rows)) ||
      (project !== null && any(project.rows)),
    deleted: false,
    deletedRows: {},
  };
}

export interface CleanupOutcome extends CleanupResult {
  /** Nothing was left in the old pool: an earlier run (or the upgrade itself) had deleted it all. */
  nothingLeft: boolean;
  completedAt?: string | undefined;
}

/**
 * `sidekick clients cleanup`, idempotent: after a completed cleanup (or an upgrade that deleted the
 * pool's rows itself) running it again says there is nothing left, and deletes any row a stale
 * writer left since. Everything else is upgrade.ts's cleanupClient.
 */
export async function cleanupMovedClient(
  deps: ClientDeletionDeps,
  opts: { clientId: string },
): Promise<CleanupOutcome> {
  const row = await deps.platform.getClient(opts.clientId);
  const state = row.migration_state ?? {};
  if (row.hosting_type === 'dedicated' && row.migration_status === 'none') {
    const poolId = typeof state.source_pool_id === 'string' ? state.source_pool_id : null;
    let deleted: RowCounts = {};
    if (poolId) {
      const { db } = await deps.pools.forPool(poolId);
      deleted = await purgePoolRows({ pool: db, clientId: row.id, retry: deps.retry });
    }
    const total = Object.values(deleted).reduce((a, b) => a + (b ?? 0), 0);
    return {
      clientId: row.id,
      deleted,
      nothingLeft: total === 0,
      completedAt: typeof state.cleanup_completed_at === 'string' ? state.cleanup_completed_at : undefined,
    };
  }
  const result = await cleanupClient(deps, opts);
  return { ...result, nothingLeft: false };
}
