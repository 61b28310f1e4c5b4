import type { SupabaseClient } from '../tenancy/supabase.js';
import { TENANT_TABLES, type TenantQuery, type TenantTable } from '../tenancy/tenant-query.js';
import { dbError, UsageError } from './errors.js';
import { type ApiResult, DEFAULT_RETRY, type RetryPolicy, request } from './requests.js';

export type Row = Record<string, unknown>;

/** The tenant tables in dependency order: parents before the rows that reference them. */
export const COPY_ORDER: readonly TenantTable[] = TENANT_TABLES;

/** Children before parents, for deleting a client's rows. */
export const DELETE_ORDER: readonly TenantTable[] = Object.freeze([...COPY_ORDER].reverse());

/** Hosted PostgREST returns at most 1000 rows per request (max_rows); so does the local stack. */
export const MAX_PAGE_SIZE = 1000;

export function checkPageSize(pageSize: number): number {
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) {
    throw new UsageError(
      `page size must be a whole number from 1 to ${MAX_PAGE_SIZE} (the API's row cap), got ${pageSize}`,
    );
  }
  return pageSize;
}

/** What the pager needs of a select: supabase-js's filter builder, from a service-role client or a TenantQuery. */
export interface KeysetSelect extends PromiseLike<ApiResult<Row[]>> {
  order(column: 'id'): this;
  limit(count: number): this;
  gt(column: 'id', value: string): this;
  retry(enabled: boolean): this;
}

/** Rows to walk in id order. */
export interface Keyset {
  /** For errors, e.g. "reading documents of client …". */
  what: string;
  /** A new select of those rows (columns and filters set), made once per page. */
  select: () => KeysetSelect;
  /** At most MAX_PAGE_SIZE. */
  pageSize: number;
  retry?: RetryPolicy | undefined;
}

/** A table read with the service role (tier moves); in the shared pool, only one client's rows. */
export function tableKeyset(q: {
  db: SupabaseClient;
  table: TenantTable;
  /** Set in the shared pool: only this client's rows. */
  clientId?: string | undefined;
  columns?: string;
  pageSize: number;
  retry?: RetryPolicy | undefined;
}): Keyset {
  return {
    what: `reading ${q.table}${q.clientId ? ` of client ${q.clientId}` : ''}`,
    select: () => {
      const b = q.db.from(q.table).select<string, Row>(q.columns ?? '*');
      return q.clientId ? b.eq('client_id', q.clientId) : b;
    },
    pageSize: q.pageSize,
    retry: q.retry,
  };
}

/**
 * One page in id order after `after` (keyset pagination: `id > last ORDER BY id LIMIT n`). Unlike
 * OFFSET, it neither skips nor repeats rows when earlier pages change, and costs the same at any depth.
 */
export async function readPage(q: Keyset, after: string | null): Promise<Row[]> {
  const { data } = await request<Row[]>(
    q.what,
    () => {
      const b = q.select().order('id').limit(q.pageSize);
      return (after ? b.gt('id', after) : b).retry(false);
    },
    q.retry ?? DEFAULT_RETRY,
  );
  return data ?? [];
}

/** Pages in id order from `after` on; the next page is requested while the caller works on this one. */
export async function* pages(q: Keyset, after: string | null = null): AsyncGenerator<Row[]> {
  let next = readPage(q, after);
  for (;;) {
    const page = await next;
    if (page.length === 0) return;
    const last = String(page.at(-1)!.id);
    next = page.length < q.pageSize ? Promise.resolve([]) : readPage(q, last);
    // If the consumer stops early, the prefetch's rejection must not go unhandled.
    next.catch(() => {});
    yield page;
  }
}

/** Rows in id order (see pages). */
export async function* rows(q: Keyset): AsyncGenerator<Row> {
  for await (const page of pages(q)) yield* page;
}

/** Number of the client's rows (HEAD request with count=exact). */
export async function countRows(
  db: SupabaseClient,
  table: TenantTable,
  clientId: string | undefined,
  retry?: RetryPolicy,
): Promise<number> {
  const { count } = await request(
    `counting ${table}`,
    () => {
      let b = db.from(table).select('id', { head: true, count: 'exact' });
      if (clientId) b = b.eq('client_id', clientId);
      return b.retry(false);
    },
    retry ?? DEFAULT_RETRY,
  );
  return count ?? 0;
}

/** A select of a tenant table through the client's own connection, to add filters to. */
export type TenantSelect = ReturnType<ReturnType<TenantQuery['from']>['select']>;

/**
 * All of a tenant table's rows (that pass `filter`) in id order, a page (the API's row cap) at a
 * time, through the client's own connection. One attempt per page: the operator's command is what
 * is retried.
 */
export function tenantRows(
  db: TenantQuery,
  table: TenantTable,
  columns: string,
  filter: (b: TenantSelect) => TenantSelect = (b) => b,
): AsyncGenerator<Row> {
  return rows({
    what: `listing ${table}`,
    select: () => filter(db.from(table).select(columns)),
    pageSize: MAX_PAGE_SIZE,
    retry: { retries: 0, minMs: 0, maxMs: 0 },
  });
}

/** How many of a tenant table's rows pass `filter`, counted by the database (HEAD, count=exact). */
export async function countTenantRows(
  db: TenantQuery,
  table: TenantTable,
  filter: (b: TenantSelect) => TenantSelect = (b) => b,
): Promise<number> {
  const { count, error } = await filter(db.from(table).select('id', { head: true, count: 'exact' }));
  if (error) throw dbError(`counting ${table}`, error);
  return count ?? 0;
}

/**
 * Deletes one client's rows from a shared pool with its service role, children first, in bounded
 * batches (each a keyset range of at most one page, always filtered by client_id: no other client's
 * row is ever in a batch). Idempotent: a re-run after a crash deletes what is left. Returns the rows
 * deleted per table.
 */
export async function purgePoolRows(q: {
  pool: SupabaseClient;
  clientId: string;
  pageSize?: number;
  retry?: RetryPolicy | undefined;
}): Promise<Partial<Record<TenantTable, number>>> {
  const deleted: Partial<Record<TenantTable, number>> = {};
  for (const table of DELETE_ORDER) {
    const ids = tableKeyset({
      db: q.pool,
      table,
      clientId: q.clientId,
      columns: 'id',
      pageSize: q.pageSize ?? MAX_PAGE_SIZE,
      retry: q.retry,
    });
    let n = 0;
    for (;;) {
      const page = await readPage(ids, null);
      if (page.length === 0) break;
      const last = String(page.at(-1)!.id);
      await request(
        `deleting ${table} rows of client ${q.clientId}`,
        () => q.pool.from(table).delete().eq('client_id', q.clientId).lte('id', last).retry(false),
        q.retry ?? DEFAULT_RETRY,
      );
      n += page.length;
    }
    deleted[table] = n;
  }
  return deleted;
}
