import pMap from 'p-map';
import { createSupabase, type SupabaseClient } from '../tenancy/supabase.js';
import { projectOf } from './dedicated.js';
import type { ClientFilter, ClientRow, PlatformAdmin, PoolAdmins } from './platform.js';
import type { OpsBase } from './requests.js';
import { countRows } from './tables.js';

export interface ClientListing {
  id: string;
  name: string;
  tier: string;
  hostingType: string;
  /** provisioning_status. */
  status: string;
  /** migration_status ('none' unless a tier move is under way or awaits its cleanup). */
  migration: string;
  pool: { id: string; name: string } | null;
  project: { ref: string | null; url: string | null } | null;
  createdAt: string;
  /** Where the client's data lives now; null when not counted (or not reachable: countsError). */
  counts: { sidekicks: number; documents: number; conversations: number } | null;
  countsError?: string;
}

/**
 * `sidekick clients list`: the platform's clients (filtered), with where each one's data lives and,
 * unless `counts` is off, how many sidekicks, documents and conversations it has there (asked of
 * each pool or project with its service role, a few clients at a time; one that does not answer
 * is listed with the reason instead of failing the list).
 */
export async function listClients(
  deps: OpsBase & { platform: PlatformAdmin; pools: PoolAdmins },
  opts: ClientFilter & { counts?: boolean; concurrency?: number },
): Promise<ClientListing[]> {
  const rows: ClientRow[] = [];
  for await (const row of deps.platform.listClients(opts)) rows.push(row);
  const once = { retries: 0, minMs: 0, maxMs: 0 };
  const projects = new Map<string, SupabaseClient>();
  return pMap(
    rows,
    async (row): Promise<ClientListing> => {
      const listing: ClientListing = {
        id: row.id,
        name: row.name,
        tier: row.tier,
        hostingType: row.hosting_type,
        status: row.provisioning_status,
        migration: row.migration_status,
        pool: null,
        project:
          row.supabase_project_ref || row.supabase_url
            ? { ref: row.supabase_project_ref, url: row.supabase_url }
            : null,
        createdAt: row.created_at,
        counts: null,
      };
      try {
        let db: SupabaseClient | null = null;
        let scope: string | undefined;
        if (row.shared_pool_id) {
          const p = await deps.pools.forPool(row.shared_pool_id);
          listing.pool = { id: p.pool.id, name: p.pool.pool_name };
          if (row.hosting_type === 'shared') [db, scope] = [p.db, row.id];
        }
        const project = row.hosting_type === 'dedicated' ? projectOf(row) : null;
        if (project) {
          db = projects.get(project.url) ?? createSupabase(project.url, project.serviceRoleKey);
          projects.set(project.url, db);
        }
        if (db && opts.counts !== false) {
          const [sidekicks, documents, conversations] = await Promise.all(
            (['agents', 'documents', 'conversations'] as const).map((t) => countRows(db, t, scope, once)),
          );
          listing.counts = { sidekicks: sidekicks!, documents: documents!, conversations: conversations! };
        }
      } catch (err) {
        listing.countsError = (err as Error).message;
      }
      return listing;
    },
    { concurrency: opts.concurrency ?? 4 },
  );
}
