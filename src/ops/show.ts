import { createSupabase, type SupabaseClient } from '../tenancy/supabase.js';
import { TENANT_TABLES, type TenantTable } from '../tenancy/tenant-query.js';
import { type FeatureName, resolveFeatures, type TierFeatures } from '../tenancy/tiers.js';
import type { Tier } from '../tenancy/types.js';
import { projectOf } from './dedicated.js';
import type { PlatformAdmin, PoolAdmins } from './platform.js';
import type { OpsBase } from './requests.js';
import { countRows } from './tables.js';

export interface ClientDescription {
  id: string;
  name: string;
  tier: string;
  hostingType: string;
  maxSidekicks: number | null;
  tierFeatures: unknown;
  /**
   * What the tier gate gives this client (tiers.ts resolveFeatures): the tier's features with the
   * client's overrides merged over them; `overridden` names those that differ from the tier's, and
   * `warnings` the overrides the gate drops (unknown keys, wrong types, facts fixed for the tier).
   */
  effective: { tier: Tier; features: TierFeatures; overridden: FeatureName[]; warnings: string[] };
  provisioning: { status: string; error: string | null; completedAt: string | null };
  migration: { status: string; startedAt: string | null; state: Record<string, unknown> | null };
  pool: { id: string; name: string; writeFence: string | null } | null;
  /** Credentials are never printed; only whether they are there. */
  project: { ref: string | null; url: string | null; hasAnonKey: boolean; hasServiceRoleKey: boolean } | null;
  /** The client's rows where its data lives now (null when that database could not be reached). */
  rows: Partial<Record<TenantTable, number>> | null;
  rowsError?: string;
}

/** `sidekick clients show`: the platform record, where the data lives, and how much of it there is. */
export async function describeClient(
  deps: OpsBase & { platform: PlatformAdmin; pools: PoolAdmins },
  clientId: string,
): Promise<ClientDescription> {
  const row = await deps.platform.getClient(clientId);
  const state = row.migration_state ?? null;
  const poolId =
    row.shared_pool_id ?? (typeof state?.source_pool_id === 'string' ? state.source_pool_id : null);
  let pool: ClientDescription['pool'] = null;
  let poolDb: SupabaseClient | null = null;
  if (poolId) {
    const p = await deps.pools.forPool(poolId);
    poolDb = p.db;
    const { data, error } = await p.db
      .from('pool_clients')
      .select('write_fence')
      .eq('client_id', row.id)
      .maybeSingle();
    pool = {
      id: poolId,
      name: p.pool.pool_name,
      writeFence: error ? `unknown: ${error.message}` : ((data?.write_fence as string | undefined) ?? null),
    };
  }
  const description: ClientDescription = {
    id: row.id,
    name: row.name,
    tier: row.tier,
    hostingType: row.hosting_type,
    maxSidekicks: row.max_sidekicks,
    tierFeatures: row.tier_features,
    effective: effectiveFeatures(row),
    provisioning: {
      status: row.provisioning_status,
      error: row.provisioning_error,
      completedAt: row.provisioning_completed_at,
    },
    migration: { status: row.migration_status, startedAt: row.migration_started_at, state },
    pool,
    project:
      row.supabase_project_ref || row.supabase_url
        ? {
            ref: row.supabase_project_ref,
            url: row.supabase_url,
            hasAnonKey: Boolean(row.supabase_anon_key),
            hasServiceRoleKey: Boolean(row.supabase_service_role_key),
          }
        : null,
    rows: null,
  };
  const project = projectOf(row);
  const [db, scope] =
    row.hosting_type === 'shared'
      ? [poolDb, row.id]
      : [project ? createSupabase(project.url, project.serviceRoleKey) : null, undefined];
  if (db) {
    try {
      const once = { retries: 0, minMs: 0, maxMs: 0 };
      const counts = await Promise.all(TENANT_TABLES.map((t) => countRows(db, t, scope, once)));
      description.rows = Object.fromEntries(TENANT_TABLES.map((t, i) => [t, counts[i]]));
    } catch (err) {
      description.rowsError = (err as Error).message;
    }
  }
  return description;
}

/** The features in force for a client's platform row: its tier's, with its overrides merged over them. */
export function effectiveFeatures(row: {
  tier: string;
  tier_features: unknown;
  max_sidekicks: number | null;
}): ClientDescription['effective'] {
  const warnings: string[] = [];
  const resolved = resolveFeatures(
    { tier: row.tier, tierFeatures: row.tier_features, maxSidekicks: row.max_sidekicks },
    (msg, fields) => warnings.push(`${msg}${'key' in fields ? ` (${String(fields.key)})` : ''}`),
  );
  return {
    tier: resolved.tier,
    features: resolved.features,
    overridden: [...resolved.overridden],
    warnings,
  };
}
