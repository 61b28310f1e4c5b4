import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { z } from 'zod';
import { createSupabase, type SupabaseClient } from '../tenancy/supabase.js';
import type { TenantTable } from '../tenancy/tenant-query.js';
import {
  type Clock,
  DEFAULT_RETRY,
  type OpsBase,
  type RetryPolicy,
  request,
  systemClock,
} from './context.js';
import { type DedicatedProject, ensureDedicatedProject, projectOf } from './dedicated.js';
import { InjectedFailure, OpsError, UsageError, VerificationError } from './errors.js';
import type { ClientRow, PlatformAdmin, PoolAdmins } from './platform.js';
import { type DedicatedProvisioner, vectorIndexes } from './provisioner.js';
import {
  COPY_ORDER,
  checkPageSize,
  countRows,
  DELETE_ORDER,
  MAX_PAGE_SIZE,
  type PageQuery,
  pages,
  type Row,
  readPage,
  rowDigest,
  rows,
  withoutClientId,
} from './tables.js';

export type UpgradeTier = 'champion' | 'paragon';

/** Milestones of an upgrade, in order (onPhase hook; `migration_state.phase`). */
export type UpgradePhase =
  | 'target_ready'
  | 'fenced'
  | 'copied'
  | 'verified'
  | 'switched'
  | 'indexed'
  | 'cleaned';

export interface CopyProgress {
  table: TenantTable;
  copied: number;
  total: number;
}

export interface UpgradeDeps extends OpsBase {
  platform: PlatformAdmin;
  pools: PoolAdmins;
  provisioner: DedicatedProvisioner;
  /** A client directory in this process to forget the client in once it switched (others wait for their TTL). */
  directory?: { invalidate(clientId: string): void } | undefined;
}

export interface UpgradeOptions {
  clientId: string;
  tier?: UpgradeTier;
  /** Keep the pool's copy of the rows until `cleanup` (migration_status 'cleanup_pending'). */
  keepSource?: boolean;
  /** Rows per request, at most 1000 (the API's row cap). */
  pageSize?: number;
  /** After fencing, how long to wait for writes that passed the fence just before it to commit. */
  fenceSettleMs?: number;
  /** Page writes in flight at once (default 2). */
  writeConcurrency?: number;
  onProgress?: (p: CopyProgress) => void;
  hooks?: {
    /** Fails the run (InjectedFailure) after this many pages were written: a stand-in for a crash. */
    failAfterPages?: number;
    onPage?: (p: CopyProgress & { page: number }) => void | Promise<void>;
    onPhase?: (phase: UpgradePhase) => void | Promise<void>;
  };
}

export interface TableReport {
  table: TenantTable;
  /** Rows the source holds for the client (at verification). */
  rows: number;
  /** Rows written by this run (re-runs skip what earlier runs copied). */
  copiedThisRun: number;
  /** sha256 over the rows' content hashes in id order; equal on both sides. */
  checksum: string;
  /** Rows that verification found missing or different and copied again. */
  reconciled: number;
}

export interface UpgradeResult {
  clientId: string;
  /** upgraded: moved now; cleanup_pending: moved, the pool still holds the rows; already: nothing to do. */
  outcome: 'upgraded' | 'cleanup_pending' | 'already_upgraded';
  tier: string;
  project: { ref: string; url: string } | null;
  resumed: boolean;
  tables: TableReport[];
  rowsCopied: number;
  /** Copy phase only (reading, writing, progress records). */
  copySeconds: number;
  rowsPerSecond: number;
  totalSeconds: number;
}

const stateSchema = z.object({
  kind: z.literal('tier_upgrade').default('tier_upgrade'),
  target_tier: z.enum(['champion', 'paragon']).default('champion'),
  phase: z.string().optional(),
  source_pool_id: z.string().optional(),
  target_ready: z.boolean().default(false),
  copy_started: z.boolean().default(false),
  indexes_dropped: z.boolean().default(false),
  index_build_started: z.boolean().default(false),
  keep_source: z.boolean().default(false),
  /** Per table, the last id copied. */
  cursors: z.record(z.string(), z.string()).default({}),
  copied: z.record(z.string(), z.number()).default({}),
  done_tables: z.array(z.string()).default([]),
  verification: z
    .record(z.string(), z.object({ rows: z.number(), checksum: z.string(), reconciled: z.number() }))
    .optional(),
  started_at: z.string().optional(),
  switched_at: z.string().optional(),
  cleanup_completed_at: z.string().optional(),
});

/**
 * Moves an adventurer from its shared pool into its own project (champion or paragon), without
 * losing a row and without losing the writes its live sessions make meanwhile:
 *
 * 1. provision the target project (the platform row records its ref as soon as it exists);
 * 2. migration_status 'migrating' and the pool fences the client's writes (pool_clients.write_fence):
 *    tenant writes are refused with SQLSTATE 55000, which the worker's TranscriptStore keeps and retries;
 * 3. copy every table in dependency order, keyset-paginated (pages ≤ 1000 rows, the API's cap), ids,
 *    timestamps and embeddings as they are, ON CONFLICT (id) DO NOTHING; after each page the cursor
 *    goes into clients.migration_state, so a re-run continues where a crash stopped;
 * 4. verify every table: row counts and a content checksum computed the same way on both sides;
 *    rows missed by a write that slipped past the fence are copied again, anything else fails;
 * 5. switch the platform record (tier, hosting dedicated, credentials, no pool: 'switched') and set
 *    the pool fence to 'moved': a worker holding a stale record has its write refused, looks the
 *    client up again and writes to the new project;
 * 6. delete the client's rows from the pool (children first), unless keepSource: then 'cleanup_pending'
 *    until `cleanupClient`.
 *
 * Every step is idempotent; running the upgrade again after any failure finishes it.
 */
export async function upgradeClient(deps: UpgradeDeps, opts: UpgradeOptions): Promise<UpgradeResult> {
  const t0 = performance.now();
  const clock = deps.clock ?? systemClock;
  const retry = deps.retry ?? DEFAULT_RETRY;
  const pageSize = checkPageSize(opts.pageSize ?? 500);
  const log = deps.log.child({ client_id: opts.clientId, op: 'upgrade' });
  let row = await deps.platform.getClient(opts.clientId);
  const resumed = row.migration_status !== 'none';
  const phase = async (p: UpgradePhase) => {
    log.info({ phase: p }, `upgrade: ${p}`);
    await opts.hooks?.onPhase?.(p);
  };

  // Already moved (or moved and waiting for cleanup): finish what is left.
  if (row.hosting_type === 'dedicated') {
    if (row.migration_status === 'switched') {
      return finish(deps, row, opts, {
        phase,
        resumed: true,
        t0,
        tables: [],
        copy: 0,
      });
    }
    return {
      clientId: row.id,
      outcome: row.migration_status === 'cleanup_pending' ? 'cleanup_pending' : 'already_upgraded',
      tier: row.tier,
      project: projectSummary(row),
      resumed: false,
      tables: [],
      rowsCopied: 0,
      copySeconds: 0,
      rowsPerSecond: 0,
      totalSeconds: (performance.now() - t0) / 1000,
    };
  }

  if (row.tier !== 'adventurer') {
    throw new UsageError(`client ${row.id} is ${row.tier} but hosted shared: fix its platform row first`);
  }
  if (row.provisioning_status !== 'ready') {
    throw new UsageError(
      `client ${row.id} is not ready (${row.provisioning_status}): finish its provisioning first`,
    );
  }
  const state = stateSchema.parse(row.migration_state ?? {});
  if (row.migration_status === 'none') {
    if (!row.shared_pool_id) throw new UsageError(`client ${row.id} has no shared pool`);
    Object.assign(state, stateSchema.parse({}), {
      target_tier: opts.tier ?? 'champion',
      source_pool_id: row.shared_pool_id,
      keep_source: opts.keepSource ?? false,
      started_at: clock.now().toISOString(),
    });
  } else if (opts.tier && opts.tier !== state.target_tier) {
    throw new UsageError(
      `client ${row.id} is already moving to ${state.target_tier}; finish that move first`,
    );
  }
  if (opts.keepSource !== undefined) state.keep_source = opts.keepSource;
  const save = async (patch: Partial<ClientRow> = {}, expect: Partial<ClientRow> = {}) => {
    row = await deps.platform.updateClient(row.id, { ...patch, migration_state: state }, expect);
  };

  // 1. The target project (while the client keeps working normally in the pool).
  let project: DedicatedProject;
  if (!state.target_ready) {
    await save();
    const ensured = await ensureDedicatedProject(
      { platform: deps.platform, provisioner: deps.provisioner, log },
      row,
      { migrate: true },
    );
    row = ensured.client;
    project = ensured.project;
    state.target_ready = true;
    state.phase = 'target_ready';
    await save();
    await phase('target_ready');
  } else {
    const p = projectOf(row);
    if (!p)
      throw new OpsError(
        `client ${row.id}: migration_state says the target is ready, but the row has no project`,
      );
    project = p;
  }

  // The target must be empty before anything is fenced: a refused upgrade leaves the client as it was.
  const target = createSupabase(project.url, project.serviceRoleKey);
  if (!state.copy_started) await assertEmpty(target, project.ref, retry);

  // 2. Fence.
  const { db: pool } = await deps.pools.forPool(state.source_pool_id!);
  if (row.migration_status === 'none') {
    await save({ migration_status: 'migrating', migration_started_at: clock.now().toISOString() });
  }
  await setFence(pool, row.id, 'fenced', clock, retry);
  state.phase = 'fenced';
  await phase('fenced');
  await clock.sleep(opts.fenceSettleMs ?? 2000);

  if (!state.copy_started) {
    state.copy_started = true;
    if (deps.provisioner.runSql) state.indexes_dropped = true;
    await save();
    // Inserting row by row into an HNSW graph is several times slower than building it once after.
    if (deps.provisioner.runSql) {
      const drops = (await vectorIndexes()).map((i) => `DROP INDEX IF EXISTS ${i.name};`);
      await deps.provisioner.runSql(project.ref, drops.join('\n'));
    }
  }

  // 3. Copy. Two page writes may be in flight (and the next read); the cursor only ever moves past
  // pages that are written, in order, so a failure leaves it at a page boundary that is safe.
  const tc = performance.now();
  let copiedThisRun = 0;
  let pagesThisRun = 0;
  const perTable = new Map<TenantTable, number>();
  const concurrency = Math.max(1, opts.writeConcurrency ?? 2);
  for (const table of COPY_ORDER) {
    if (state.done_tables.includes(table)) continue;
    const source: PageQuery = { db: pool, table, clientId: row.id, pageSize, retry };
    const total = await countRows(pool, table, row.id, retry);
    let copied = state.copied[table] ?? 0;
    opts.onProgress?.({ table, copied, total });
    const inflight: Array<{ page: Row[]; written: Promise<unknown> }> = [];
    const settleFirst = async () => {
      const { page, written } = inflight.shift()!;
      await written;
      copied += page.length;
      copiedThisRun += page.length;
      perTable.set(table, (perTable.get(table) ?? 0) + page.length);
      state.cursors[table] = String(page.at(-1)!.id);
      state.copied[table] = copied;
      await save();
      pagesThisRun++;
      const progress = { table, copied, total: Math.max(total, copied) };
      opts.onProgress?.(progress);
      await opts.hooks?.onPage?.({ ...progress, page: pagesThisRun });
      if (opts.hooks?.failAfterPages !== undefined && pagesThisRun >= opts.hooks.failAfterPages) {
        throw new InjectedFailure(`injected failure after ${pagesThisRun} page(s) (failAfterPages)`);
      }
    };
    try {
      for await (const page of pages(source, state.cursors[table] ?? null)) {
        const written = request(
          `copying ${page.length} ${table} rows into project ${project.ref}`,
          () =>
            target
              .from(table)
              .upsert(page.map(withoutClientId), { onConflict: 'id', ignoreDuplicates: true })
              .retry(false),
          retry,
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
    state.done_tables.push(table);
    await save();
  }
  const copySeconds = (performance.now() - tc) / 1000;
  state.phase = 'copied';
  await phase('copied');

  // 4. Verify (and repair what a write racing the fence left behind).
  const reports: TableReport[] = [];
  state.verification = {};
  for (const table of COPY_ORDER) {
    const v = await verifyTable(pool, target, table, row.id, retry, log);
    state.verification[table] = { rows: v.rows, checksum: v.checksum, reconciled: v.reconciled };
    reports.push({ table, copiedThisRun: perTable.get(table) ?? 0, ...v });
  }
  state.phase = 'verified';
  await save();
  await phase('verified');

  // 5. Switch.
  state.switched_at = clock.now().toISOString();
  state.phase = 'switched';
  // Only if the move is still on: an `--abort` run meanwhile opened the fence again, and the pool
  // may hold writes the copy does not have.
  await save(
    {
      tier: state.target_tier,
      hosting_type: 'dedicated',
      max_sidekicks: null,
      shared_pool_id: null,
      migration_status: 'switched',
    },
    { migration_status: 'migrating', supabase_project_ref: project.ref },
  );
  return finish(deps, row, opts, {
    phase,
    resumed,
    t0,
    tables: reports,
    copy: copySeconds,
    copied: copiedThisRun,
  });
}

interface FinishCtx {
  phase: (p: UpgradePhase) => Promise<void>;
  resumed: boolean;
  t0: number;
  tables: TableReport[];
  copy: number;
  copied?: number;
}

/** After the switch: tell workers (fence 'moved'), then clean the pool up or leave it for `cleanup`. */
async function finish(
  deps: UpgradeDeps,
  switchedRow: ClientRow,
  opts: UpgradeOptions,
  ctx: FinishCtx,
): Promise<UpgradeResult> {
  let row = switchedRow;
  const state = stateSchema.parse(row.migration_state ?? {});
  if (opts.keepSource !== undefined) state.keep_source = opts.keepSource;
  if (state.source_pool_id) {
    const { db: pool } = await deps.pools.forPool(state.source_pool_id);
    await setFence(pool, row.id, 'moved', deps.clock ?? systemClock, deps.retry ?? DEFAULT_RETRY);
  }
  deps.directory?.invalidate(row.id);
  await ctx.phase('switched');
  if (state.indexes_dropped) {
    // After the switch, so the fence is not held for the build; CONCURRENTLY, so the sessions'
    // writes go on meanwhile. Retrieval stays exact without the index, only slower.
    const ref = row.supabase_project_ref;
    if (!deps.provisioner?.runSql || !ref) {
      throw new UsageError(
        `client ${row.id}: its vector indexes must be rebuilt, which needs the provisioner that has SQL access`,
      );
    }
    const indexes = await vectorIndexes();
    if (state.index_build_started) {
      // An earlier build stopped half-way: it may have left an INVALID index, which IF NOT EXISTS would keep.
      for (const index of indexes)
        await deps.provisioner.runSql(ref, `DROP INDEX CONCURRENTLY IF EXISTS ${index.name}`);
    }
    state.index_build_started = true;
    row = await deps.platform.updateClient(row.id, { migration_state: state });
    for (const index of indexes) await deps.provisioner.runSql(ref, index.createConcurrently);
    state.indexes_dropped = false;
    state.index_build_started = false;
    row = await deps.platform.updateClient(row.id, { migration_state: state });
    await ctx.phase('indexed');
  }
  let outcome: UpgradeResult['outcome'] = 'upgraded';
  if (state.keep_source) {
    await deps.platform.updateClient(row.id, { migration_status: 'cleanup_pending', migration_state: state });
    outcome = 'cleanup_pending';
  } else {
    await cleanupClient(deps, { clientId: row.id, pageSize: checkPageSize(opts.pageSize ?? 500) });
    await ctx.phase('cleaned');
  }
  const rowsCopied = ctx.copied ?? 0;
  return {
    clientId: row.id,
    outcome,
    tier: state.target_tier,
    project: projectSummary(row),
    resumed: ctx.resumed,
    tables: ctx.tables,
    rowsCopied,
    copySeconds: ctx.copy,
    rowsPerSecond: ctx.copy > 0 ? rowsCopied / ctx.copy : 0,
    totalSeconds: (performance.now() - ctx.t0) / 1000,
  };
}

export interface AbortResult {
  clientId: string;
  /** The project the move was copying into: no longer referenced by the platform. */
  abandonedProject: { ref: string; url: string | null } | null;
  /** Rows were copied into it already: delete them (or the project) before using it again. */
  partialCopy: boolean;
}

/**
 * Backs out of an upgrade that has not switched yet (e.g. its target project is broken): the pool
 * fence opens again, the platform row is as before the move, and the target project is no longer
 * referenced (its partial copy stays there until someone deletes the project). After the switch
 * there is nothing to abort: the client lives in its new project.
 */
export async function abortUpgrade(
  deps: Pick<UpgradeDeps, 'platform' | 'pools' | 'log' | 'clock' | 'retry'>,
  opts: { clientId: string },
): Promise<AbortResult> {
  const clock = deps.clock ?? systemClock;
  const row = await deps.platform.getClient(opts.clientId);
  // A move under way, or one refused before it began that still names its target project.
  const abortable =
    row.hosting_type === 'shared' &&
    (row.migration_status === 'migrating' ||
      (row.migration_status === 'none' && row.supabase_project_ref !== null));
  if (!abortable) {
    throw new UsageError(
      `client ${row.id} has no upgrade to abort (hosting ${row.hosting_type}, migration_status ${row.migration_status})`,
    );
  }
  const state = stateSchema.parse(row.migration_state ?? {});
  const poolId = state.source_pool_id ?? row.shared_pool_id;
  if (poolId) {
    const { db: pool } = await deps.pools.forPool(poolId);
    await setFence(pool, row.id, 'open', clock, deps.retry ?? DEFAULT_RETRY);
  }
  const abandonedProject = row.supabase_project_ref
    ? { ref: row.supabase_project_ref, url: row.supabase_url }
    : null;
  await deps.platform.updateClient(row.id, {
    migration_status: 'none',
    migration_started_at: null,
    migration_state: { aborted_at: clock.now().toISOString(), abandoned_project: abandonedProject },
    supabase_project_ref: null,
    supabase_url: null,
    supabase_anon_key: null,
    supabase_service_role_key: null,
  });
  deps.log.warn({ client_id: row.id, abandoned_project: abandonedProject?.ref }, 'upgrade aborted');
  return { clientId: row.id, abandonedProject, partialCopy: state.copy_started };
}

export interface CleanupResult {
  clientId: string;
  deleted: Partial<Record<TenantTable, number>>;
}

/**
 * Deletes a moved client's rows from its old pool, children first, in bounded batches (each a
 * keyset range of at most one page). The pool_clients row stays, fenced 'moved', so a worker that
 * still holds the old record is refused there and looks the client up again.
 */
export async function cleanupClient(
  deps: Pick<UpgradeDeps, 'platform' | 'pools' | 'log' | 'clock' | 'retry'>,
  opts: { clientId: string; pageSize?: number },
): Promise<CleanupResult> {
  const clock = deps.clock ?? systemClock;
  const retry = deps.retry ?? DEFAULT_RETRY;
  const pageSize = checkPageSize(opts.pageSize ?? 1000);
  const row = await deps.platform.getClient(opts.clientId);
  if (row.hosting_type !== 'dedicated' || !['switched', 'cleanup_pending'].includes(row.migration_status)) {
    throw new UsageError(
      `client ${row.id} has nothing to clean up (hosting ${row.hosting_type}, migration_status ${row.migration_status}): cleanup follows a completed upgrade`,
    );
  }
  const state = stateSchema.parse(row.migration_state ?? {});
  if (!state.source_pool_id)
    throw new OpsError(`client ${row.id}: migration_state does not name the old pool`);
  if (state.indexes_dropped) {
    throw new UsageError(
      `client ${row.id}: its upgrade stopped before the vector indexes were rebuilt; run \`sidekick clients upgrade --client ${row.id}\` first`,
    );
  }
  const { db: pool } = await deps.pools.forPool(state.source_pool_id);
  await setFence(pool, row.id, 'moved', clock, retry);
  const deleted: Partial<Record<TenantTable, number>> = {};
  for (const table of DELETE_ORDER) {
    let n = 0;
    for (;;) {
      const ids = await readPage({ db: pool, table, clientId: row.id, columns: 'id', pageSize, retry }, null);
      if (ids.length === 0) break;
      const last = String(ids.at(-1)!.id);
      await request(
        `deleting ${table} rows of client ${row.id} from its old pool`,
        () => pool.from(table).delete().eq('client_id', row.id).lte('id', last).retry(false),
        retry,
      );
      n += ids.length;
    }
    deleted[table] = n;
  }
  state.cleanup_completed_at = clock.now().toISOString();
  state.phase = 'cleaned';
  await deps.platform.updateClient(row.id, { migration_status: 'none', migration_state: state });
  deps.log.info({ client_id: row.id, deleted }, 'old pool rows deleted');
  return { clientId: row.id, deleted };
}

/** The project a result names (no keys). */
function projectSummary(row: ClientRow): UpgradeResult['project'] {
  return row.supabase_project_ref ? { ref: row.supabase_project_ref, url: row.supabase_url ?? '' } : null;
}

async function setFence(
  pool: SupabaseClient,
  clientId: string,
  fence: 'open' | 'fenced' | 'moved',
  clock: Clock,
  retry: RetryPolicy,
): Promise<void> {
  const fencedAt = fence === 'open' ? null : clock.now().toISOString();
  const { data } = await request(
    `setting the write fence of client ${clientId} to ${fence}`,
    () =>
      pool
        .from('pool_clients')
        .update({ write_fence: fence, fenced_at: fencedAt })
        .eq('client_id', clientId)
        .select('client_id')
        .retry(false),
    retry,
  );
  if (!data?.length) throw new OpsError(`client ${clientId} is not registered in its pool (pool_clients)`);
}

async function assertEmpty(target: SupabaseClient, ref: string, retry: RetryPolicy): Promise<void> {
  for (const table of COPY_ORDER) {
    const n = await countRows(target, table, undefined, retry);
    if (n > 0) {
      throw new UsageError(
        `target project ${ref} already holds data (${n} rows in ${table}); an upgrade only copies into an empty project`,
      );
    }
  }
}

interface Verification {
  rows: number;
  checksum: string;
  reconciled: number;
}

/**
 * Compares the client's rows in the pool with the project's, walking both in id order (a merge
 * join over keyset pages): counts, and per row a hash of every column. Rows missing in the target or
 * different there (a write that committed just after the fence went up) are copied again from the
 * source (at most twice); rows only in the target, or differences that persist, fail the upgrade.
 */
async function verifyTable(
  pool: SupabaseClient,
  target: SupabaseClient,
  table: TenantTable,
  clientId: string,
  retry: RetryPolicy,
  log: Logger,
): Promise<Verification> {
  let reconciled = 0;
  // Rows repaired by overwriting: the project's updated_at trigger stamps the repair time on them,
  // so for those rows alone updated_at may differ from the pool's; every other column must match.
  const overwritten = new Set<string>();
  for (let round = 1; ; round++) {
    const diff = await compare(pool, target, table, clientId, retry, overwritten);
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
    reconciled += await recopy(pool, target, table, clientId, diff.missing, true, retry);
    reconciled += await recopy(pool, target, table, clientId, diff.differing, false, retry);
    for (const id of diff.differing) overwritten.add(id);
  }
}

async function compare(
  pool: SupabaseClient,
  target: SupabaseClient,
  table: TenantTable,
  clientId: string,
  retry: RetryPolicy,
  overwritten: ReadonlySet<string>,
): Promise<{ rows: number; checksum: string; missing: string[]; differing: string[]; extra: string[] }> {
  const pageSize = MAX_PAGE_SIZE;
  const src = rows({ db: pool, table, clientId, pageSize, retry });
  const dst = rows({ db: target, table, pageSize, retry });
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
  pool: SupabaseClient,
  target: SupabaseClient,
  table: TenantTable,
  clientId: string,
  ids: string[],
  ignoreDuplicates: boolean,
  retry: RetryPolicy,
): Promise<number> {
  let n = 0;
  // 100 uuids per request keep the URL far below PostgREST's and the gateways' limits.
  for (let i = 0; i < ids.length; i += 100) {
    const batch = ids.slice(i, i + 100);
    const { data } = await request<Row[]>(
      `reading ${table} rows to copy again`,
      () => pool.from(table).select('*').eq('client_id', clientId).in('id', batch).retry(false),
      retry,
    );
    if (!data.length) continue;
    await request(
      `copying ${data.length} ${table} rows again`,
      () =>
        target
          .from(table)
          .upsert(data.map(withoutClientId), { onConflict: 'id', ignoreDuplicates })
          .retry(false),
      retry,
    );
    n += data.length;
  }
  return n;
}
