import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { type ClientSettings, readClientSettings } from './client-settings.js';
import { ClientDirectory, type ClientRecord, type PoolRecord } from './directory.js';
import { createSupabase, type SupabaseClient } from './supabase.js';
import { TENANT_HEADER, TenantQuery } from './tenant-query.js';
import { type FeatureName, resolveFeatures, type TierFeatures } from './tiers.js';
import { TenantTokenMinter } from './tokens.js';
import type { ClientId, HostingType, Tier } from './types.js';

/** Everything a session needs to reach one client's data, decided by the platform's record. */
export interface ClientConnection {
  clientId: ClientId;
  record: ClientRecord;
  hostingType: HostingType;
  tier: Tier;
  features: TierFeatures;
  /** Features this client's own overrides set (for the reasons the session plan gives). */
  overridden: ReadonlySet<FeatureName>;
  /** The client's own switches (webhook, memory, redaction); unreadable ones at their safe value. */
  settings: ClientSettings;
  pool: PoolRecord | null;
  db: TenantQuery;
}

export interface ConnectionManagerOptions {
  directory: ClientDirectory;
  /** Lifetime of the shared pool's tenant tokens. */
  tokenTtlSeconds: number;
  /** supabase-js clients kept (one per pool, one per dedicated project); least recently used go first. */
  maxProjects: number;
  /** Per-request timeout towards client databases. */
  requestTimeoutMs?: number;
  /** Where unknown tiers and bad feature overrides are reported. */
  warn?: (msg: string, fields: Record<string, unknown>) => void;
  fetch?: typeof fetch;
}

export interface PlatformConnectionOptions
  extends Partial<
    Pick<ConnectionManagerOptions, 'tokenTtlSeconds' | 'maxProjects' | 'requestTimeoutMs' | 'warn' | 'fetch'>
  > {
  /** The platform project and its service-role key (only the service role reads `clients`). */
  url: string;
  serviceRoleKey: string;
  /** CLIENT_CACHE_TTL_MS. */
  ttlMs?: number;
  /** Replaces fetch towards the platform only (tests take the platform down with it). */
  platformFetch?: typeof fetch;
  now?: () => number;
}

/**
 * ClientConnectionManager: client id → its database, credentials, tier and features, in one call.
 * The platform record decides (never job metadata). Shared clients get a supabase-js client per
 * pool, holding only the anon key; each request is signed with a short-lived JWT for that client
 * (role `authenticated`, claim `client_id`). Dedicated clients get one client per project. So the
 * number of live supabase-js clients is bounded by pools + projects, not by clients served.
 */
export class ClientConnectionManager {
  private readonly projects: LRUCache<string, SupabaseClient>;
  private readonly minters = new Map<string, TenantTokenMinter>();
  /** Same record object (directory cache hit) → same connection: a warm lookup does no work. */
  private readonly byRecord = new WeakMap<ClientRecord, ClientConnection>();

  constructor(private readonly opts: ConnectionManagerOptions) {
    this.projects = new LRUCache({ max: opts.maxProjects });
  }

  /**
   * The directory of one platform project and the connections it leads to: what the worker, the
   * CLI, the bench and the tests all assemble the same way.
   */
  static forPlatform(opts: PlatformConnectionOptions): ClientConnectionManager {
    const directory = new ClientDirectory({
      platform: createSupabase(opts.url, opts.serviceRoleKey, { timeoutMs: 5000, fetch: opts.platformFetch }),
      ttlMs: opts.ttlMs ?? 30_000,
      ...(opts.now ? { now: opts.now } : {}),
    });
    return new ClientConnectionManager({
      directory,
      tokenTtlSeconds: opts.tokenTtlSeconds ?? 300,
      maxProjects: opts.maxProjects ?? 500,
      requestTimeoutMs: opts.requestTimeoutMs ?? 10_000,
      warn: opts.warn,
      fetch: opts.fetch,
    });
  }

  /** How many supabase-js clients are alive (cached) now. */
  get liveClients(): number {
    return this.projects.size;
  }

  get directory(): ClientDirectory {
    return this.opts.directory;
  }

  async forClient(clientId: ClientId): Promise<ClientConnection> {
    const record = await this.opts.directory.getClient(clientId);
    const cached = this.byRecord.get(record);
    if (cached) return cached;
    const warn = this.opts.warn ?? (() => {});
    const resolved = resolveFeatures(record, (msg, fields) => warn(msg, { ...fields, client_id: clientId }));
    const connection: ClientConnection = {
      clientId,
      record,
      hostingType: record.hostingType,
      tier: resolved.tier,
      features: resolved.features,
      overridden: resolved.overridden,
      settings: readClientSettings(record.settings, (msg, fields) =>
        warn(msg, { ...fields, client_id: clientId }),
      ),
      pool: record.pool,
      db: new TenantQuery(
        record.pool ? this.poolClient(record.pool) : this.projectClient(record),
        clientId,
        record.hostingType,
      ),
    };
    this.byRecord.set(record, connection);
    return connection;
  }

  /**
   * What a job process can do before it knows its client (LiveKit's prewarm): the supabase-js
   * client and token minter of every active pool, with its signing key imported. One platform
   * request. Returns, per pool, a TenantQuery for a client id that no client has (the nil uuid), to
   * run the hot path once against the pool with nothing to find.
   */
  async prewarm(): Promise<TenantQuery[]> {
    const pools = await this.opts.directory.activePools();
    return Promise.all(
      pools.map(async (pool) => {
        const client = this.poolClient(pool);
        await this.minters.get(this.poolKey(pool))?.prepare();
        return new TenantQuery(client, NIL_CLIENT, 'shared');
      }),
    );
  }

  private poolKey(pool: PoolRecord): string {
    const signing = pool.signing;
    const keyId = signing.alg === 'HS256' ? fingerprint(signing.secret) : signing.kid;
    return `pool:${pool.id}:${pool.url}:${signing.alg}:${keyId}`;
  }

  private poolClient(pool: PoolRecord): SupabaseClient {
    const key = this.poolKey(pool);
    let client = this.projects.get(key);
    if (!client) {
      let minter = this.minters.get(key);
      if (!minter) {
        minter = new TenantTokenMinter(pool.signing, { ttlSeconds: this.opts.tokenTtlSeconds });
        this.minters.set(key, minter);
      }
      client = createSupabase(pool.url, pool.anonKey, {
        timeoutMs: this.opts.requestTimeoutMs,
        fetch: tenantFetch(minter, this.opts.fetch ?? fetch),
      });
      this.projects.set(key, client);
    }
    return client;
  }

  private projectClient(record: ClientRecord): SupabaseClient {
    const project = record.project!;
    const key = `project:${project.url}:${fingerprint(project.serviceRoleKey)}`;
    let client = this.projects.get(key);
    if (!client) {
      client = createSupabase(project.url, project.serviceRoleKey, {
        timeoutMs: this.opts.requestTimeoutMs,
        fetch: this.opts.fetch,
      });
      this.projects.set(key, client);
    }
    return client;
  }
}

/** Replaces the tenant header that TenantQuery sets with that client's bearer token. */
function tenantFetch(minter: TenantTokenMinter, base: typeof fetch): typeof fetch {
  return async (input, init) => {
    const headers = new Headers(init?.headers);
    const clientId = headers.get(TENANT_HEADER);
    if (clientId) {
      headers.delete(TENANT_HEADER);
      headers.set('Authorization', `Bearer ${await minter.tokenFor(clientId)}`);
    }
    return base(input, { ...init, headers });
  };
}

/** The nil uuid: no client has it (prewarm's probes find nothing). */
const NIL_CLIENT = '00000000-0000-0000-0000-000000000000' as ClientId;

function fingerprint(secret: string): string {
  return createHash('sha256').update(secret).digest('hex').slice(0, 12);
}
