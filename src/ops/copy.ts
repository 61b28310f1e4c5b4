import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { SupabaseClient } from '../tenancy/supabase.js';
import type { TenantTable } from '../tenancy/tenant-query.js';
import { type RetryPolicy, request } from './requests.js';
import { UsageError, VerificationError } from './errors.js';
import { COPY_ORDER, countRows, MAX_PAGE_SIZE, pages, type Row, rows, tableKeyset } from './tables.js';

/**
 * Copying a client's rows from its shared pool into its dedicated project, and verifying the copy.
 * Both sides are read with the service role; the pool's rows are the client's alone (client_id),
 * the project's are all of its rows.
 */
export interface CopyEnds {
  pool: SupabaseClient;
  target: SupabaseClient;
  targetRef: string;
  clientId: string;
  retry: RetryPolicy;
}

export interface CopyProgress {
  table: TenantTable;
  copied: number;
  total: number;
}

/** The copy's own progress, kept in clients.migration_state: per table, the last id copied. */
export interface CopyCursors {
  cursors: Record<string, string>;
  copied: Record<string, number>;
  done_tables: string[];
}

export interface CopyOptions {
  pageSize: number;
  /** Page writes in flight at once. */
  writeConcurrency: number;
  /** Persists the cursors; called after every written page, before anything else hears of it. */
  save: () => Promise<void>;
  onProgress?: ((p: CopyProgress) => void) | undefined;
  /** After each written (and saved) page, with its number in this run; may throw to stop the copy. */
  afterPage?: ((p: CopyProgress & { page: number }) => void | Promise<void>) | undefined;
}

export interface CopyReport {
  /** Rows written by this run, per table (re-runs skip what earlier runs copied). */
  perTable: Map<TenantTable, number>;
  rows: number;
  seconds: number;
}

/**
 * Copies every table in dependency order, keyset-paginated, ids, timestamps and embeddings as
 * they are, ON CONFLICT (id) DO NOTHING, from the cursors on. Up to `writeConcurrency` page writes
 * are in flight (and the next read); the cursor only ever moves past pages that are written, in
 * order, so a failure leaves it at a page boundary that is safe.
 */
export async function copyTables(
  ends: CopyEnds,
  cursors: CopyCursors,
  opts: CopyOptions,
): Promise<CopyReport> {
  const started = performance.now();
  const perTable = new Map<TenantTable, number>();
  let pagesThisRun = 0;
  const concurrency = Math.max(1, opts.writeConcurrency);
  for (const table of COPY_ORDER) {
    if (cursors.done_tables.includes(table)) continue;
    const source = tableKeyset({
      db: ends.pool,
      table,
      clientId: ends.clientId,
      pageSize: opts.pageSize,
      retry: ends.retry,
    });
    const total = await countRows(ends.pool, table, ends.clientId, ends.retry);
    let copied = cursors.copied[table] ?? 0;
    opts.onProgress?.({ table, copied, total });
    const inflight: Array<{ page: Row[]; written: Promise<unknown> }> = [];
    const settleFirst = async () => {
      const { page, written } = inflight.shift()!;
      await written;
      copied += page.length;
      perTable.set(table, (perTable.get(table) ?? 0) + page.length);
      cursors.cursors[table] = String(page.at(-1)!.id);
      cursors.copied[table] = copied;
      await opts.save();
      pagesThisRun++;
      const progress = { table, copied, total: Math.max(total, copied) };
      opts.onProgress?.(progress);
      await opts.afterPage?.({ ...progress, page: pagesThisRun });
    };
    try {
      for await (const page of pages(source, cursors.cursors[table] ?? null)) {
        const written = request(
          `copying ${page.length} ${table} rows into project ${ends.targetRef}`,
          () =>
            ends.target
              .from(table)
              .upsert(page.map(withoutClientId), { onConflict: 'id', ignoreDuplicates: true })
              .retry(false),
          ends.retry,
        );
        written.catch(() => {}); // awaited in order by settleFirst
        inflight.push({ page, written });
        while (inflight.length >= concurrency) await settleFirst();
      }
      while (inflight.length) await settleFirst();
    } finally {
      // Whatever is still in flight after a failure must not surface as an unhandled rejection.
      await Promise.allSettled(inflight.map((i) => i.written));
    }
    cursors.done_tables.push(table);
    await opts.save();
  }
  const rowsCopied = [...perTable.values()].reduce((n, v) => n + v, 0);
  return { perTable, rows: rowsCopied, seconds: (performance.now() - started) / 1000 };
}

/** An upgrade only copies into an empty project: checked before anything is fenced. */
export async function assertEmpty(target: SupabaseClient, ref: string, retry: RetryPolicy): Promise<void> {
  for (const table of COPY_ORDER) {
    const n = await countRows(target, table, undefined, retry);
    if (n > 0) {
      throw new UsageError(
        `target project ${ref} already holds data (${n} rows in ${table}); an upgrade only copies into an empty project`,
      );
    }
  }
}

export interface Verification {
  /** Rows the source holds for the client. */
  rows: number;
  /** sha256 over the rows' content hashes in id order; equal on both sides. */
  checksum: string;
  /** Rows that verification found missing or different and copied again. */
  reconciled: number;
}

/** Verifies every table in copy order (see verifyTable). */
export async function verifyTables(ends: CopyEnds, log: Logger): Promise<Map<TenantTable, Verification>> {
  const out = new Map<TenantTable, Verification>();
  for (const table of COPY_ORDER) out.set(table, await verifyTable(ends, table, log));
  return out;
}

/**
 * Compares the client's rows in the pool with the project's, walking both in id order (a merge
 * join over keyset pages): counts, and per row a hash of every column. Rows missing in the target or
 * different there (a write that committed just after the fence went up) are copied again from the
 * source (at most twice); rows only in the target, or differences that persist, fail the upgrade.
 */
async function verifyTable(ends: CopyEnds, table: TenantTable, log: Logger): Promise<Verification> {
  let reconciled = 0;
  // Rows repaired by overwriting: the project's updated_at trigger stamps the repair time on them,
  // so for those rows alone updated_at may differ from the pool's; every other column must match.
  const overwritten = new Set<string>();
  for (let round = 1; ; round++) {
    const diff = await compare(ends, table, overwritten);
    if (diff.extra.length) {
      throw new VerificationError(
        `${table}: the target holds ${diff.extra.length} row(s) that are not the client's in the pool (e.g. ${diff.extra.slice(0, 3).join(', ')})`,
      );
    }
    if (diff.missing.length === 0 && diff.differing.length === 0) {
      return { rows: diff.rows, checksum: diff.checksum, reconciled };
    }
    if (round > 2) {
      throw new VerificationError(
        `${table}: ${diff.missing.length} row(s) missing and ${diff.differing.length} different after repair (e.g. ${[...diff.missing, ...diff.differing].slice(0, 3).join(', ')}); is something writing past the fence?`,
      );
    }
    log.warn(
      { table, missing: diff.missing.length, differing: diff.differing.length },
      'verification found rows to copy again (writes that raced the fence)',
    );
    reconciled += await recopy(ends, table, diff.missing, true);
    reconciled += await recopy(ends, table, diff.differing, false);
    for (const id of diff.differing) overwritten.add(id);
  }
}

async function compare(
  ends: CopyEnds,
  table: TenantTable,
  overwritten: ReadonlySet<string>,
): Promise<{ rows: number; checksum: string; missing: string[]; differing: string[]; extra: string[] }> {
  const { pool, target, clientId, retry } = ends;
  const pageSize = MAX_PAGE_SIZE;
  const src = rows(tableKeyset({ db: pool, table, clientId, pageSize, retry }));
  const dst = rows(tableKeyset({ db: target, table, pageSize, retry }));
  const sum = createHash('sha256');
  const missing: string[] = [];
  const differing: string[] = [];
  const extra: string[] = [];
  let n = 0;
  let a = await src.next();
  let b = await dst.next();
  while (!a.done || !b.done) {
    const ida = a.done ? undefined : String(a.value.id);
    const idb = b.done ? undefined : String(b.value.id);
    if (ida !== undefined && (idb === undefined || ida < idb)) {
      missing.push(ida);
      a = await src.next();
    } else if (idb !== undefined && (ida === undefined || idb < ida)) {
      extra.push(idb);
      b = await dst.next();
    } else {
      const ha = rowDigest(a.value as Row);
      const hb = rowDigest(b.value as Row);
      const same =
        ha.equals(hb) ||
        (overwritten.has(ida!) &&
          rowDigest(a.value as Row, ['updated_at']).equals(rowDigest(b.value as Row, ['updated_at'])));
      if (!same) differing.push(ida!);
      sum.update(ida!).update(ha);
      n++;
      a = await src.next();
      b = await dst.next();
    }
  }
  return { rows: n + missing.length, checksum: sum.digest('hex'), missing, differing, extra };
}

async function recopy(
  ends: CopyEnds,
  table: TenantTable,
  ids: string[],
  ignoreDuplicates: boolean,
): Promise<number> {
  let n = 0;
  // 100 uuids per request keep the URL far below PostgREST's and the gateways' limits.
  for (let i = 0; i < ids.length; i += 100) {
    const batch = ids.slice(i, i + 100);
    const { data } = await request<Row[]>(
      `reading ${table} rows to copy again`,
      () => ends.pool.from(table).select('*').eq('client_id', ends.clientId).in('id', batch).retry(false),
      ends.retry,
    );
    if (!data.length) continue;
    await request(
      `copying ${data.length} ${table} rows again`,
      () =>
        ends.target
          .from(table)
          .upsert(data.map(withoutClientId), { onConflict: 'id', ignoreDuplicates })
          .retry(false),
      ends.retry,
    );
    n += data.length;
  }
  return n;
}

/** A row as the other kind of database stores it: without the pool's client_id column. */
export function withoutClientId(row: Row): Row {
  const { client_id: _, ...rest } = row;
  return rest;
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
