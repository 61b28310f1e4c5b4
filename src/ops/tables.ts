import type { SupabaseClient } from '../tenancy/supabase.js';
import { TENANT_TABLES, type TenantTable } from '../tenancy/tenant-query.js';
import { type ApiResult, DEFAULT_RETRY, type RetryPolicy, request } from './requests.js';
import { UsageError } from './errors.js';

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
