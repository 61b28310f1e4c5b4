import { CrossTenantAccessError } from './errors.js';
import type { SupabaseClient } from './supabase.js';
import type { HostingType } from './types.js';

/**
 * The tables that hold a client's data, the same names in the shared pool and in a dedicated
 * project. The order matters: parents before the rows that reference them (a tier move copies in
 * this order and deletes in the reverse; a test checks it against the foreign keys).
 */
export const TENANT_TABLES = Object.freeze([
  'agents',
  'documents',
  'document_chunks',
  'agent_documents',
  'conversations',
  'conversation_transcripts',
  'user_overviews',
] as const);
export type TenantTable = (typeof TENANT_TABLES)[number];

/**
 * Header that tells the shared pool's fetch (connections.ts) which client's token to attach. The
 * request leaves this process with `Authorization: Bearer <tenant JWT>` instead; without the header
 * it would carry only the anon key, which can read nothing.
 */
export const TENANT_HEADER = 'x-sidekick-client-id';

type Row = Record<string, unknown>;
/** What scoping needs of a supabase-js builder (all of its filter builders have it). */
interface Scopable {
  eq(column: string, value: unknown): this;
  setHeader(name: string, value: string): this;
  retry(enabled: boolean): this;
}
type SelectOptions = Parameters<ReturnType<SupabaseClient['from']>['select']>[1];
type InsertOptions = Parameters<ReturnType<SupabaseClient['from']>['insert']>[1];
type UpsertOptions = Parameters<ReturnType<SupabaseClient['from']>['upsert']>[1];
type UpdateOptions = Parameters<ReturnType<SupabaseClient['from']>['update']>[1];
type DeleteOptions = Parameters<ReturnType<SupabaseClient['from']>['delete']>[0];

/**
 * The seed's TenantQuery, the code-side wall of tenant isolation (RLS is the database-side one).
 * In the shared pool every select, update and delete is filtered to the client, every written row
 * is tagged with it, every RPC gets `p_client_id`, and anything naming another client is refused
 * before it is sent. In a dedicated project the whole database is the client's: it passes through
 * and keeps `client_id` out of writes. Returned builders are supabase-js's own, to chain as usual.
 * Automatic retries are off: callers own their retry policy (time budgets, the transcript queue).
 */
export class TenantQuery {
  constructor(
    private readonly supabase: SupabaseClient,
    readonly clientId: string,
    readonly hostingType: HostingType,
  ) {}

  get isShared(): boolean {
    return this.hostingType === 'shared';
  }

  from(table: TenantTable): TenantTableQuery {
    return new TenantTableQuery(this, this.supabase, table);
  }

  rpc(fn: string, params: Row = {}, opts?: { count?: 'exact' | 'planned' | 'estimated'; get?: boolean }) {
    const { p_client_id: named, ...rest } = params;
    if (this.isShared && named !== undefined && named !== this.clientId) {
      throw new CrossTenantAccessError(this.clientId, `rpc ${fn}`, named);
    }
    const args = this.isShared ? { ...rest, p_client_id: this.clientId } : rest;
    return this.scope(this.supabase.rpc(fn, args, opts), false);
  }

  /**
   * A dedicated project's record of the one client it belongs to (migrations/dedicated/003); the
   * pool has none (its rows carry client_id instead).
   */
  readProjectOwner() {
    if (this.isShared) throw new Error('the shared pool has no project owner record');
    return this.supabase.from('project_owner').select('client_id').retry(false).maybeSingle();
  }

  /** Adds the client filter (shared pool) and the tenant header to a builder. */
  scope<B extends Scopable>(builder: B, filter = true): B {
    if (!this.isShared) return builder.retry(false);
    const scoped = filter ? builder.eq('client_id', this.clientId) : builder;
    return scoped.setHeader(TENANT_HEADER, this.clientId).retry(false);
  }

  /** Rows as this database wants them: tagged with the client (shared) or without client_id (dedicated). */
  prepareRows(target: string, rows: Row | Row[]): Row[] {
    const list = Array.isArray(rows) ? rows : [rows];
    return list.map((row) => {
      const { client_id: named, ...rest } = row;
      if (!this.isShared) return rest;
      if (named !== undefined && named !== this.clientId)
        throw new CrossTenantAccessError(this.clientId, target, named);
      return { ...rest, client_id: this.clientId };
    });
  }
}

export class TenantTableQuery {
  constructor(
    private readonly tq: TenantQuery,
    private readonly supabase: SupabaseClient,
    readonly table: TenantTable,
  ) {}

  select(columns = '*', opts?: SelectOptions) {
    return this.tq.scope(this.supabase.from(this.table).select<string, Row>(columns, opts));
  }

  insert(rows: Row | Row[], opts?: InsertOptions) {
    const prepared = this.tq.prepareRows(`insert into ${this.table}`, rows);
    return this.tq.scope(this.supabase.from(this.table).insert(prepared, opts), false);
  }

  upsert(rows: Row | Row[], opts?: UpsertOptions) {
    const prepared = this.tq.prepareRows(`upsert into ${this.table}`, rows);
    return this.tq.scope(this.supabase.from(this.table).upsert(prepared, opts), false);
  }

  update(values: Row, opts?: UpdateOptions) {
    const [prepared] = this.tq.prepareRows(`update of ${this.table}`, values);
    return this.tq.scope(this.supabase.from(this.table).update(prepared!, opts));
  }

  delete(opts?: DeleteOptions) {
    return this.tq.scope(this.supabase.from(this.table).delete(opts));
  }
}
