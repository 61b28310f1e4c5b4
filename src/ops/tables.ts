import { createHash } from 'node:crypto';
import type { SupabaseClient } from '../tenancy/supabase.js';
import { TENANT_TABLES, type TenantTable } from '../tenancy/tenant-query.js';
import { DEFAULT_RETRY, type RetryPolicy, request } from './context.js';
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

export interface PageQuery {
  db: SupabaseClient;
  table: TenantTable;
  /** Set in the shared pool: only this client's rows. */
  clientId?: string | undefined;
  columns?: string;
  pageSize: number;
  retry?: RetryPolicy | undefined;
}

/**
 * One page in id order after `after` (keyset pagination: `id > last ORDER BY id LIMIT n`). Unlike
 * OFFSET, it neither skips nor repeats rows when earlier pages change, and costs the same at any depth.
 */
export async function readPage(q: PageQuery, after: string | null): Promise<Row[]> {
  const { data } = await request<Row[]>(
    `reading ${q.table}${q.clientId ? ` of client ${q.clientId}` : ''}`,
    () => {
      let b = q.db
        .from(q.table)
        .select<string, Row>(q.columns ?? '*')
        .order('id')
        .limit(q.pageSize);
      if (q.clientId) b = b.eq('client_id', q.clientId);
      if (after) b = b.gt('id', after);
      return b.retry(false);
    },
    q.retry ?? DEFAULT_RETRY,
  );
  return data;
}

/** Pages in id order from `after` on; the next page is requested while the caller works on this one. */
export async function* pages(q: PageQuery, after: string | null = null): AsyncGenerator<Row[]> {
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
export async function* rows(q: PageQuery): AsyncGenerator<Row> {
  for await (const page of pages(q)) yield* page;
}

/** A row as the other kind of database stores it: without the pool's client_id column. */
export function withoutClientId(row: Row): Row {
  const { client_id: _, ...rest } = row;
  return rest;
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

const TIMESTAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d(?::?\d\d)?)$/;

/**
 * A timestamp as one instant in UTC with its full (microsecond) precision, so two servers that
 * print timestamptz in different time zones still hash the same value the same way.
 */
export function normalizeTimestamp(value: string): string {
  const m = TIMESTAMP.exec(value);
  if (!m) return value;
  const offset =
    m[3] === 'Z' ? 'Z' : m[3]!.length === 3 ? `${m[3]}:00` : m[3]!.replace(/^([+-]\d\d)(\d\d)$/, '$1:$2');
  const ms = Date.parse(`${m[1]}${offset}`);
  if (Number.isNaN(ms)) return value;
  const fraction = (m[2] ?? '').replace(/0+$/, '').replace(/^\.$/, '');
  return `${new Date(ms).toISOString().slice(0, 19)}${fraction}Z`;
}

/** JSON with object keys sorted at every depth: equal values, equal text. */
function canonical(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const obj = value as Record<string, unknown>;
  return `{${Object.keys(obj)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonical(obj[k])}`)
    .join(',')}}`;
}

/**
 * The content hash of a row as the dedicated schema holds it: every column but client_id, timestamps
 * normalized, embeddings as the exact text pgvector printed. Computed the same way on both sides.
 */
export function rowDigest(row: Row, ignore: readonly string[] = []): Buffer {
  const normalized: Row = {};
  for (const [k, v] of Object.entries(row)) {
    if (k === 'client_id' || ignore.includes(k)) continue;
    normalized[k] =
      typeof v === 'string' && (k.endsWith('_at') || k === 'created_at') ? normalizeTimestamp(v) : v;
  }
  return createHash('sha256').update(canonical(normalized)).digest();
}
