import { LRUCache } from 'lru-cache';
import {
  ClientNotFoundError,
  ClientNotReadyError,
  MissingCredentialsError,
  PoolUnavailableError,
  TenancyError,
} from './errors.js';
import { clientRowSchema, columnsOf, poolRowSchema } from './platform-rows.js';
import type { SupabaseClient } from './supabase.js';
import type { TenantSigningKey } from './tokens.js';
import { type HostingType, isUuid } from './types.js';

/** A shared pool as the platform records it, with how to sign its tenant tokens. */
export interface PoolRecord {
  id: string;
  name: string;
  url: string;
  anonKey: string;
  signing: TenantSigningKey;
}

/** A client as the platform database records it: the truth about where its data lives. */
export interface ClientRecord {
  id: string;
  name: string;
  /** As stored; an unknown tier is resolved to least privilege by tiers.ts, not rejected here. */
  tier: string;
  hostingType: HostingType;
  maxSidekicks: number | null;
  tierFeatures: unknown;
  /** As stored (`clients.settings`); tenancy/client-settings.ts reads it, never failing a session. */
  settings: unknown;
  provisioningStatus: string;
  migrationStatus: string;
  /** Set for shared clients. */
  pool: PoolRecord | null;
  /** Set for dedicated clients: their own project. */
  project: { url: string; serviceRoleKey: string } | null;
}

export class DirectoryUnavailableError extends TenancyError {
  readonly code = 'directory_unavailable';
  constructor(clientId: string, detail: string) {
    super(`platform database unreachable while looking up client ${clientId}: ${detail}`, clientId);
  }
}

/** What the worker reads of a pool: never its service-role key (sessions do not use it). */
const poolColumns = poolRowSchema.pick({
  id: true,
  pool_name: true,
  supabase_url: true,
  supabase_anon_key: true,
  jwt_algorithm: true,
  jwt_secret: true,
  jwt_private_key: true,
  jwt_key_id: true,
  is_active: true,
});

const clientRow = clientRowSchema
  .pick({
    id: true,
    name: true,
    tier: true,
    hosting_type: true,
    max_sidekicks: true,
    tier_features: true,
    settings: true,
    supabase_url: true,
    supabase_service_role_key: true,
    provisioning_status: true,
    migration_status: true,
  })
  .extend({ pool: poolColumns.nullable() });

/** One request per lookup: the pool comes embedded through clients.shared_pool_id. */
const CLIENT_SELECT = `${columnsOf(clientRow.omit({ pool: true }))}, pool:shared_pool_config(${columnsOf(poolColumns)})`;

export interface DirectoryOptions {
  /** The platform project, with its service-role key (only the service role can read platform tables). */
  platform: SupabaseClient;
  /** How long a record is trusted. After a tier move, workers switch within this time at the latest. */
  ttlMs: number;
  maxEntries?: number;
  /** How long a miss or a not-ready client is remembered (default 2 s). */
  notReadyTtlMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

/**
 * Reads clients (with their pool) from the platform database. Records are cached for `ttlMs`;
 * concurrent lookups of one client share one request; when the platform is unreachable a stale
 * record is served rather than failing a session that was fine a minute ago.
 */
export class ClientDirectory {
  /** A usable record, or why the client cannot be served (remembered briefly, see notReadyTtlMs). */
  private readonly cache: LRUCache<string, Entry>;
  /** Requests made to the platform, for round-trip accounting. */
  lookups = 0;

  constructor(private readonly opts: DirectoryOptions) {
    this.cache = new LRUCache<string, Entry>({
      max: opts.maxEntries ?? 10_000,
      ttl: opts.ttlMs,
      allowStaleOnFetchRejection: true,
      // invalidate() while a lookup is in flight must not abort it: the callers waiting on it would
      // get nothing (a false "not found") or the expired record.
      ignoreFetchAbort: true,
      // Read the clock on every lookup (the default caches it for 1 ms), so an injected clock is exact.
      ttlResolution: 0,
      ...(opts.now ? { perf: { now: opts.now } } : {}),
      fetchMethod: async (clientId, _stale, { options }) => {
        const entry = await this.load(clientId);
        // A miss or a client not ready yet is remembered only briefly: a client provisioned a moment
        // ago must not be turned away for a whole TTL.
        if ('error' in entry) options.ttl = Math.min(opts.ttlMs, opts.notReadyTtlMs ?? 2000);
        return entry;
      },
    });
  }

  /** The client's platform record, checked to be usable for sessions. */
  async getClient(clientId: string): Promise<ClientRecord> {
    const entry = await this.cache.fetch(clientId);
    if (!entry) throw new ClientNotFoundError(clientId);
    if ('error' in entry) throw entry.error;
    return entry.record;
  }

  /**
   * The active shared pools, in one request: what a job process can set up in prewarm, before it
   * knows its client (clients and signing keys of every pool). Pools that cannot be used are left out.
   */
  async activePools(): Promise<PoolRecord[]> {
    const { data, error } = await this.opts.platform
      .from('shared_pool_config')
      .select(columnsOf(poolColumns))
      .eq('is_active', true)
      .retry(false);
    if (error)
      throw new Error(
        `reading shared_pool_config: ${error.message || String(error.code ?? 'network error')}`,
      );
    return (data ?? []).flatMap((row) => {
      const parsed = poolColumns.safeParse(row);
      const pool = parsed.success ? toPool(parsed.data) : undefined;
      return pool && typeof pool !== 'string' ? [pool] : [];
    });
  }

  /** Forget a client, e.g. right after its tier move switched the platform record. */
  invalidate(clientId: string): void {
    this.cache.delete(clientId);
  }

  /** Only an unreachable platform rejects here: that is the case where a stale row may be served. */
  private async load(clientId: string): Promise<Entry> {
    if (!isUuid(clientId)) {
      return { error: new ClientNotFoundError(clientId) };
    }
    this.lookups++;
    const { data, error } = await this.opts.platform
      .from('clients')
      .select(CLIENT_SELECT)
      .eq('id', clientId)
      .retry(false)
      .maybeSingle();
    if (error)
      throw new DirectoryUnavailableError(clientId, error.message || String(error.code ?? 'network error'));
    if (!data) return { error: new ClientNotFoundError(clientId) };
    const parsed = clientRow.safeParse(data);
    if (!parsed.success) {
      throw new DirectoryUnavailableError(clientId, `unexpected clients row: ${parsed.error.message}`);
    }
    try {
      return { record: toRecord(parsed.data) };
    } catch (err) {
      if (err instanceof TenancyError) return { error: err };
      throw err;
    }
  }
}

type DirectoryRow = ReturnType<typeof clientRow.parse>;
type Entry = { record: ClientRecord } | { error: TenancyError };

function toRecord(row: DirectoryRow): ClientRecord {
  const hostingType: HostingType = row.hosting_type;
  if (row.migration_status === 'migrating') throw new ClientNotReadyError(row.id, 'migrating');
  if (row.provisioning_status !== 'ready') throw new ClientNotReadyError(row.id, row.provisioning_status);
  const base = {
    id: row.id,
    name: row.name,
    tier: row.tier,
    hostingType,
    maxSidekicks: row.max_sidekicks,
    tierFeatures: row.tier_features ?? {},
    settings: row.settings ?? {},
    provisioningStatus: row.provisioning_status,
    migrationStatus: row.migration_status,
  };
  if (hostingType === 'dedicated') {
    const missing = [
      ...(row.supabase_url ? [] : ['supabase_url']),
      ...(row.supabase_service_role_key ? [] : ['supabase_service_role_key']),
    ];
    if (missing.length) throw new MissingCredentialsError(row.id, missing);
    return {
      ...base,
      pool: null,
      project: { url: row.supabase_url!, serviceRoleKey: row.supabase_service_role_key! },
    };
  }
  const p = row.pool;
  if (!p) throw new PoolUnavailableError(row.id, null, 'the client has no shared_pool_id');
  const pool = toPool(p);
  if (typeof pool === 'string') throw new PoolUnavailableError(row.id, p.id, pool);
  return { ...base, project: null, pool };
}

type PoolRow = ReturnType<typeof poolColumns.parse>;

/** A pool row → what sessions use of it, or why it cannot be used. */
function toPool(p: PoolRow): PoolRecord | string {
  if (p.is_active === false) return 'the pool is marked inactive';
  if (!p.supabase_anon_key) return 'the pool has no supabase_anon_key';
  let signing: TenantSigningKey;
  if (p.jwt_algorithm === 'ES256') {
    if (!p.jwt_private_key || !p.jwt_key_id) return 'ES256 pool without jwt_private_key / jwt_key_id';
    signing = { alg: 'ES256', privateJwk: p.jwt_private_key, kid: p.jwt_key_id };
  } else {
    if (!p.jwt_secret) return 'HS256 pool without jwt_secret';
    signing = { alg: 'HS256', secret: p.jwt_secret };
  }
  return { id: p.id, name: p.pool_name, url: p.supabase_url, anonKey: p.supabase_anon_key, signing };
}
