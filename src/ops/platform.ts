import { ClientNotFoundError } from '../tenancy/errors.js';
import {
  type ClientRow,
  clientRowSchema,
  columnsOf,
  type PoolRow,
  poolRowSchema,
} from '../tenancy/platform-rows.js';
import { createSupabase, type SupabaseClient } from '../tenancy/supabase.js';
import { DEFAULT_RETRY, type RetryPolicy, request } from './requests.js';
import { dbError, NoPoolCapacityError, OpsError } from './errors.js';

export type { ClientRow, PoolRow };

const CLIENT_COLUMNS = columnsOf(clientRowSchema);
const POOL_COLUMNS = columnsOf(poolRowSchema);

/** What may be written to a clients row. */
export type ClientPatch = Partial<Omit<ClientRow, 'id' | 'created_at' | 'updated_at'>>;

/**
 * The platform database as the operator sees it: the clients table and the shared pools, through
 * PostgREST with the platform's service-role key (only the service role may read these tables).
 */
export class PlatformAdmin {
  constructor(
    readonly db: SupabaseClient,
    private readonly retry: RetryPolicy = DEFAULT_RETRY,
  ) {}

  static connect(url: string, serviceRoleKey: string, retry?: RetryPolicy): PlatformAdmin {
    return new PlatformAdmin(createSupabase(url, serviceRoleKey), retry);
  }

  async findClient(id: string): Promise<ClientRow | null> {
    const { data } = await request(
      `reading client ${id}`,
      () => this.db.from('clients').select(CLIENT_COLUMNS).eq('id', id).retry(false).maybeSingle(),
      this.retry,
    );
    return data ? clientRowSchema.parse(data) : null;
  }

  async getClient(id: string): Promise<ClientRow> {
    const row = await this.findClient(id);
    if (!row) throw new ClientNotFoundError(id);
    return row;
  }

  /** Inserts the row, or returns the existing one when a row with this id is already there. */
  async insertClient(
    values: ClientPatch & { id: string; name: string },
  ): Promise<{ row: ClientRow; created: boolean }> {
    const res = await this.db.from('clients').insert(values).select(CLIENT_COLUMNS).retry(false).single();
    if (!res.error) return { row: clientRowSchema.parse(res.data), created: true };
    if (res.error.code === '23505') return { row: await this.getClient(values.id), created: false };
    throw dbError(`registering client ${values.id}`, res.error);
  }

  /**
   * Updates a client's row. With `expect`, only while those columns still hold those values (a
   * compare-and-set): e.g. an upgrade switches only if nobody aborted it meanwhile.
   */
  async updateClient(id: string, patch: ClientPatch, expect: ClientPatch = {}): Promise<ClientRow> {
    const { data } = await request(
      `updating client ${id}`,
      () => {
        let q = this.db.from('clients').update(patch).eq('id', id);
        for (const [column, value] of Object.entries(expect)) q = q.eq(column, value as string);
        return q.select(CLIENT_COLUMNS).retry(false).maybeSingle();
      },
      this.retry,
    );
    if (!data && Object.keys(expect).length && (await this.findClient(id))) {
      throw new OpsError(
        `client ${id} changed meanwhile (expected ${JSON.stringify(expect)}): was the operation aborted or run elsewhere?`,
      );
    }
    if (!data) throw new ClientNotFoundError(id);
    return clientRowSchema.parse(data);
  }

  /** The client whose dedicated project this is, if any: a project holds one client. */
  async findClientOfProject(ref: string): Promise<ClientRow | null> {
    const { data } = await request(
      `looking up the client of project ${ref}`,
      () =>
        this.db
          .from('clients')
          .select(CLIENT_COLUMNS)
          .eq('supabase_project_ref', ref)
          .retry(false)
          .maybeSingle(),
      this.retry,
    );
    return data ? clientRowSchema.parse(data) : null;
  }

  /**
   * assign_shared_pool() in the platform database: the least loaded active pool with room, chosen and
   * counted under the pool row's lock, so concurrent provisionings never overfill a pool.
   */
  async assignSharedPool(clientId: string): Promise<string> {
    // Not retried on a transport error: the function is idempotent, but the caller re-runs anyway.
    const res = await this.db.rpc('assign_shared_pool', { p_client_id: clientId }).retry(false);
    if (res.error) {
      const full = res.error.code === 'P0001' && /no shared pool has room/.test(res.error.message);
      const overfill = res.error.code === '23514' && /shared_pool_capacity/.test(res.error.message);
      if (full || overfill) {
        throw new NoPoolCapacityError(clientId, res.error.message);
      }
      throw dbError(`assigning a shared pool to client ${clientId}`, res.error);
    }
    if (typeof res.data !== 'string') {
      throw new OpsError(`assign_shared_pool returned ${JSON.stringify(res.data)} instead of a pool id`);
    }
    return res.data;
  }

  async getPool(id: string): Promise<PoolRow> {
    const { data } = await request(
      `reading shared pool ${id}`,
      () => this.db.from('shared_pool_config').select(POOL_COLUMNS).eq('id', id).retry(false).maybeSingle(),
      this.retry,
    );
    if (!data) throw new OpsError(`shared pool ${id} is not in shared_pool_config`);
    return poolRowSchema.parse(data);
  }
}

/**
 * Service-role clients of the shared pools, one per pool (the mover and provisioning write with the
 * service role; sessions never do).
 */
export class PoolAdmins {
  private readonly clients = new Map<string, Promise<{ pool: PoolRow; db: SupabaseClient }>>();

  constructor(private readonly platform: PlatformAdmin) {}

  forPool(poolId: string): Promise<{ pool: PoolRow; db: SupabaseClient }> {
    let entry = this.clients.get(poolId);
    if (!entry) {
      entry = this.platform.getPool(poolId).then((pool) => ({
        pool,
        db: createSupabase(pool.supabase_url, pool.supabase_service_role_key),
      }));
      entry.catch(() => this.clients.delete(poolId));
      this.clients.set(poolId, entry);
    }
    return entry;
  }
}
