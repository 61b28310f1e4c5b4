import type { Logger } from 'pino';
import { z } from 'zod';
import { createSupabase, type SupabaseClient } from '../tenancy/supabase.js';
import type { TenantTable } from '../tenancy/tenant-query.js';
import { DEDICATED_TIERS, type DedicatedTier, TIER_FEATURES } from '../tenancy/tiers.js';
import {
  type Clock,
  DEFAULT_RETRY,
  type OpsBase,
  type RetryPolicy,
  request,
  systemClock,
} from './requests.js';
import {
  assertEmpty,
  type CopyEnds,
  type CopyProgress,
  type CopyReport,
  copyTables,
  type Verification,
  verifyTables,
} from './copy.js';
import { ensureDedicatedProject, projectOf } from './dedicated.js';
import { InjectedFailure, OpsError, UsageError } from './errors.js';
import type { ClientPatch, ClientRow, PlatformAdmin, PoolAdmins } from './platform.js';
import { type DedicatedProvisioner, vectorIndexes } from './provisioner.js';
import { checkPageSize, DELETE_ORDER, MAX_PAGE_SIZE, readPage, tableKeyset } from './tables.js';

export type { CopyProgress } from './copy.js';

/** What an adventurer can move to: the tiers that live in a dedicated project. */
export type UpgradeTier = DedicatedTier;

/** Milestones of an upgrade, in order, as the onPhase hook (and the CLI's progress) reports them. */
export type UpgradePhase =
  | 'target_ready'
  | 'fenced'
  | 'copied'
  | 'verified'
  | 'switched'
  | 'indexed'
  | 'cleaned';

/**
 * A step of the move. Every step is idempotent: a run that crashed inside one does it again. The
 * step after it runs only once its completion is recorded (migration_state.step).
 */
interface Step {
  readonly name: string;
  /** The milestone it belongs to; reported when the last step of that milestone is done. */
  readonly phase: UpgradePhase;
  run(move: Move): Promise<StepEnd | undefined>;
}

interface StepEnd {
  /** Platform columns that change in the same update as the cursor (migration_status, tier, …). */
  patch?: ClientPatch;
  /** Only while the row still holds these (compare-and-set). */
  expect?: ClientPatch;
  /** There was nothing to do: no milestone to report. */
  skipped?: boolean;
  /** The move waits here (keepSource): the patch is saved, the cursor stays, a later run does this step. */
  held?: boolean;
}

/**
 * Moves an adventurer from its shared pool into its own project (champion or paragon), without
 * losing a row and without losing the writes its live sessions make meanwhile. The steps, in order:
 */
const STEPS = [
  { name: 'ensure_target', phase: 'target_ready', run: ensureTarget },
  { name: 'fence', phase: 'fenced', run: fence },
  { name: 'copy', phase: 'copied', run: copy },
  { name: 'verify', phase: 'verified', run: verify },
  { name: 'switch', phase: 'switched', run: switchRecord },
  { name: 'mark_moved', phase: 'switched', run: markMoved },
  { name: 'rebuild_indexes', phase: 'indexed', run: rebuildIndexes },
  { name: 'clean_up', phase: 'cleaned', run: cleanUp },
] as const satisfies readonly Step[];

export type UpgradeStep = (typeof STEPS)[number]['name'];
export const UPGRADE_STEPS = STEPS.map((s) => s.name) as [UpgradeStep, ...UpgradeStep[]];

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
    /** Before each step this run does. */
    onStep?: (step: UpgradeStep) => void | Promise<void>;
  };
}

export interface TableReport {
  table: TenantTable;
  /** Rows written by this run (re-runs skip what earlier runs copied). */
  copiedThisRun: number;
  /** Rows the source holds for the client (at verification). */
  rows: number;
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
  /** Copy step only (reading, writing, progress records). */
  copySeconds: number;
  rowsPerSecond: number;
  totalSeconds: number;
}

const stateSchema = z.object({
  kind: z.literal('tier_upgrade').default('tier_upgrade'),
  target_tier: z.enum(DEDICATED_TIERS).default('champion'),
  source_pool_id: z.string().optional(),
  keep_source: z.boolean().default(false),
  /** The cursor: the last step done (null: none yet). */
  step: z.enum(UPGRADE_STEPS).nullable().default(null),
  /** The milestone of that step, for `clients show`; written from `step`, never read. */
  phase: z.string().optional(),
  /** The copy dropped the project's vector indexes (a fact about the target, not progress). */
  indexes_dropped: z.boolean().default(false),
  /** The copy's own progress: per table, the last id copied. */
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
export type MigrationState = z.infer<typeof stateSchema>;

/** The step that each `phase` of the earlier format (booleans and phase, no cursor) says is done. */
const LEGACY_PHASE_STEP: Readonly<Record<string, UpgradeStep>> = {
  target_ready: 'ensure_target',
  fenced: 'fence',
  copied: 'copy',
  verified: 'verify',
  switched: 'switch',
  cleaned: 'clean_up',
};

/**
 * clients.migration_state as the steps use it. A row written before the cursor existed (booleans
 * target_ready / copy_started / index_build_started and `phase`) gets the cursor they imply; its
 * copy cursors, indexes_dropped and keep_source mean what they meant. Resuming from an earlier step
 * than strictly needed is safe: every step is idempotent.
 */
export function readMigrationState(json: Record<string, unknown> | null): MigrationState {
  const raw = json ?? {};
  const state = stateSchema.parse(raw);
  if (raw.step === undefined) {
    const byPhase = typeof raw.phase === 'string' ? (LEGACY_PHASE_STEP[raw.phase] ?? null) : null;
    const byFlags = raw.copy_started === true ? 'fence' : raw.target_ready === true ? 'ensure_target' : null;
    state.step = stepIndex(byPhase) >= stepIndex(byFlags) ? byPhase : byFlags;
  }
  return state;
}

/** Position of a step in STEPS; -1 for none. */
function stepIndex(step: UpgradeStep | null): number {
  return step === null ? -1 : UPGRADE_STEPS.indexOf(step);
}

type MoveDeps = OpsBase &
  Pick<UpgradeDeps, 'platform' | 'pools' | 'directory'> & { provisioner?: DedicatedProvisioner };

/** The dependencies and options of a run, every default filled in: resolved once, at the entry point. */
interface Settings {
  readonly platform: PlatformAdmin;
  readonly pools: PoolAdmins;
  readonly provisioner: DedicatedProvisioner | undefined;
  readonly directory: UpgradeDeps['directory'];
  readonly log: Logger;
  readonly clock: Clock;
  readonly retry: RetryPolicy;
  readonly pageSize: number;
  readonly fenceSettleMs: number;
  readonly writeConcurrency: number;
  readonly onProgress: UpgradeOptions['onProgress'];
  readonly hooks: NonNullable<UpgradeOptions['hooks']>;
}

function settings(
  deps: MoveDeps,
  opts: Pick<UpgradeOptions, 'pageSize' | 'fenceSettleMs' | 'writeConcurrency' | 'onProgress' | 'hooks'>,
  defaultPageSize = 500,
): Settings {
  return {
    platform: deps.platform,
    pools: deps.pools,
    provisioner: deps.provisioner,
    directory: deps.directory,
    log: deps.log,
    clock: deps.clock ?? systemClock,
    retry: deps.retry ?? DEFAULT_RETRY,
    pageSize: checkPageSize(opts.pageSize ?? defaultPageSize),
    fenceSettleMs: opts.fenceSettleMs ?? 2000,
    writeConcurrency: Math.max(1, opts.writeConcurrency ?? 2),
    onProgress: opts.onProgress,
    hooks: opts.hooks ?? {},
  };
}

/** One run of the steps on one client. */
interface Move extends Settings {
  /** clean_up holds (cleanup_pending) instead of deleting the pool's rows. */
  readonly keepSource: boolean;
  row: ClientRow;
  readonly state: MigrationState;
  /** What this run's copy, verify and clean_up did (for the result). */
  copy: CopyReport | null;
  verification: Map<TenantTable, Verification> | null;
  deleted: Partial<Record<TenantTable, number>>;
  target: SupabaseClient | null;
}

function openMove(s: Settings, row: ClientRow, state: MigrationState, keepSource: boolean): Move {
  return {
    ...s,
    log: s.log.child({ client_id: row.id, op: 'upgrade' }),
    keepSource,
    row,
    state,
    copy: null,
    verification: null,
    deleted: {},
    target: null,
  };
}

/**
 * Runs the steps after the cursor, recording each as done (with its patch of the platform row)
 * before the next begins. Every write of the state checks that migration_status is still what this
 * run last saw: an `--abort` from another terminal stops the run at its next save.
 */
async function runSteps(m: Move): Promise<'finished' | 'held'> {
  for (const [i, step] of STEPS.entries()) {
    if (i <= stepIndex(m.state.step)) continue;
    await m.hooks.onStep?.(step.name);
    const end = (await step.run(m)) ?? {};
    if (!end.held) m.state.step = step.name;
    await save(m, end.patch, end.expect);
    if (end.held) return 'held';
    m.log.debug({ step: step.name }, 'upgrade step done');
    if (!end.skipped && STEPS[i + 1]?.phase !== step.phase) {
      m.log.info({ phase: step.phase }, `upgrade: ${step.phase}`);
      await m.hooks.onPhase?.(step.phase);
    }
  }
  return 'finished';
}

async function save(m: Move, patch: ClientPatch = {}, expect: ClientPatch = {}): Promise<void> {
  const milestone = STEPS[stepIndex(m.state.step)]?.phase;
  if (milestone) m.state.phase = milestone;
  m.row = await m.platform.updateClient(
    m.row.id,
    { ...patch, migration_state: m.state },
    { migration_status: m.row.migration_status, ...expect },
  );
}

/**
 * The target project: created (or found again), migrated, keys in the platform row, while the
 * client keeps working normally in the pool. It must be empty before anything is fenced, so that a
 * refused upgrade leaves the client as it was.
 */
async function ensureTarget(m: Move): Promise<undefined> {
  if (!m.provisioner)
    throw new OpsError(`client ${m.row.id}: creating the target project needs a provisioner`);
  const ensured = await ensureDedicatedProject(
    { platform: m.platform, provisioner: m.provisioner, log: m.log },
    m.row,
    { migrate: true },
  );
  m.row = ensured.client;
  await assertEmpty(targetOf(m), ensured.project.ref, m.retry);
}

/**
 * migration_status 'migrating' (new sessions wait), then the pool fences the client's writes
 * (pool_clients.write_fence): tenant writes are refused with SQLSTATE 55000, which the worker's
 * TranscriptStore keeps and retries. Then a pause for writes that passed the fence just before it.
 */
async function fence(m: Move): Promise<undefined> {
  if (m.row.migration_status === 'none') {
    await save(m, { migration_status: 'migrating', migration_started_at: m.clock.now().toISOString() });
  }
  await setFence(m, sourcePoolId(m), m.row.id, 'fenced');
  await m.clock.sleep(m.fenceSettleMs);
}

/** Every table, keyset-paged, from the copy cursors on (see copyTables); the cursors are saved per page. */
async function copy(m: Move): Promise<undefined> {
  const ends = await copyEnds(m);
  const runSql = m.provisioner?.runSql?.bind(m.provisioner);
  if (runSql && !m.state.indexes_dropped) {
    // Inserting row by row into an HNSW graph is several times slower than building it once after.
    m.state.indexes_dropped = true;
    await save(m);
    const drops = (await vectorIndexes()).map((i) => `DROP INDEX IF EXISTS ${i.name};`);
    await runSql(ends.targetRef, drops.join('\n'));
  }
  const { hooks } = m;
  m.copy = await copyTables(ends, m.state, {
    pageSize: m.pageSize,
    writeConcurrency: m.writeConcurrency,
    save: () => save(m),
    onProgress: m.onProgress,
    afterPage: async (p) => {
      await hooks.onPage?.(p);
      if (hooks.failAfterPages !== undefined && p.page >= hooks.failAfterPages) {
        throw new InjectedFailure(`injected failure after ${p.page} page(s) (failAfterPages)`);
      }
    },
  });
}

/** Counts and checksums on both sides; rows a write racing the fence left behind are copied again. */
async function verify(m: Move): Promise<undefined> {
  m.verification = await verifyTables(await copyEnds(m), m.log);
  m.state.verification = Object.fromEntries(m.verification);
}

/**
 * The platform record points at the project: tier, hosting dedicated, credentials, no pool. Only
 * if the move is still on: an `--abort` meanwhile opened the fence again, and the pool may hold
 * writes the copy does not have.
 */
async function switchRecord(m: Move): Promise<StepEnd> {
  m.state.switched_at = m.clock.now().toISOString();
  return {
    patch: {
      tier: m.state.target_tier,
      hosting_type: 'dedicated',
      max_sidekicks: TIER_FEATURES[m.state.target_tier].max_sidekicks,
      shared_pool_id: null,
      migration_status: 'switched',
    },
    expect: { migration_status: 'migrating', supabase_project_ref: targetRef(m) },
  };
}

/**
 * The pool fence becomes 'moved': a worker holding the old record has its write refused, looks the
 * client up again and writes to the new project. This process's directory forgets the client now.
 */
async function markMoved(m: Move): Promise<undefined> {
  await setFence(m, sourcePoolId(m), m.row.id, 'moved');
  m.directory?.invalidate(m.row.id);
}

/**
 * After the switch, so the fence is not held for the build; CONCURRENTLY, so the sessions' writes go
 * on meanwhile. Retrieval stays exact without the index, only slower.
 */
async function rebuildIndexes(m: Move): Promise<StepEnd> {
  if (!m.state.indexes_dropped) return { skipped: true };
  const ref = m.row.supabase_project_ref;
  const runSql = m.provisioner?.runSql?.bind(m.provisioner);
  if (!runSql || !ref) {
    throw new UsageError(
      `client ${m.row.id}: its vector indexes must be rebuilt, which needs the provisioner that has SQL access`,
    );
  }
  for (const index of await vectorIndexes()) {
    // An earlier build may have stopped half-way and left an INVALID index, which IF NOT EXISTS would keep.
    await runSql(ref, `DROP INDEX CONCURRENTLY IF EXISTS ${index.name}`);
    await runSql(ref, index.createConcurrently);
  }
  m.state.indexes_dropped = false;
  return {};
}

/**
 * Deletes the client's rows from the pool, children first, in bounded batches (each a keyset range
 * of at most one page); with keepSource the move waits in 'cleanup_pending' for `cleanupClient`.
 * The pool_clients row stays, fenced 'moved', so a worker that still holds the old record is
 * refused there and looks the client up again.
 */
async function cleanUp(m: Move): Promise<StepEnd> {
  if (m.keepSource) return { held: true, patch: { migration_status: 'cleanup_pending' } };
  const { db: pool } = await m.pools.forPool(sourcePoolId(m));
  const clientId = m.row.id;
  for (const table of DELETE_ORDER) {
    const ids = tableKeyset({
      db: pool,
      table,
      clientId,
      columns: 'id',
      pageSize: m.pageSize,
      retry: m.retry,
    });
    let n = 0;
    for (;;) {
      const page = await readPage(ids, null);
      if (page.length === 0) break;
      const last = String(page.at(-1)!.id);
      await request(
        `deleting ${table} rows of client ${clientId} from its old pool`,
        () => pool.from(table).delete().eq('client_id', clientId).lte('id', last).retry(false),
        m.retry,
      );
      n += page.length;
    }
    m.deleted[table] = n;
  }
  m.state.cleanup_completed_at = m.clock.now().toISOString();
  m.log.info({ deleted: m.deleted }, 'old pool rows deleted');
  return { patch: { migration_status: 'none' } };
}

/** Opens, fences or marks moved a client's writes in a pool (pool_clients.write_fence). */
async function setFence(
  m: { pools: PoolAdmins; clock: Clock; retry: RetryPolicy },
  poolId: string,
  clientId: string,
  fence: 'open' | 'fenced' | 'moved',
): Promise<void> {
  const { db: pool } = await m.pools.forPool(poolId);
  const fencedAt = fence === 'open' ? null : m.clock.now().toISOString();
  const { data } = await request(
    `setting the write fence of client ${clientId} to ${fence}`,
    () =>
      pool
        .from('pool_clients')
        .update({ write_fence: fence, fenced_at: fencedAt })
        .eq('client_id', clientId)
        .select('client_id')
        .retry(false),
    m.retry,
  );
  if (!data?.length) throw new OpsError(`client ${clientId} is not registered in its pool (pool_clients)`);
}

function sourcePoolId(m: Move): string {
  if (!m.state.source_pool_id)
    throw new OpsError(`client ${m.row.id}: migration_state does not name the old pool`);
  return m.state.source_pool_id;
}

function targetRef(m: Move): string {
  const ref = m.row.supabase_project_ref;
  if (!ref)
    throw new OpsError(
      `client ${m.row.id}: the upgrade is past its first step, but the row names no project`,
    );
  return ref;
}

/** The service-role client of the target project the platform row names. */
function targetOf(m: Move): SupabaseClient {
  if (!m.target) {
    const project = projectOf(m.row);
    if (!project) {
      throw new OpsError(
        `client ${m.row.id}: the target project should be ready, but the row lacks its URL or keys`,
      );
    }
    m.target = createSupabase(project.url, project.serviceRoleKey);
  }
  return m.target;
}

async function copyEnds(m: Move): Promise<CopyEnds> {
  const { db: pool } = await m.pools.forPool(sourcePoolId(m));
  return { pool, target: targetOf(m), targetRef: targetRef(m), clientId: m.row.id, retry: m.retry };
}

/**
 * Moves the client (see STEPS), or continues a move that stopped: from the step after the last one
 * recorded, so running it again after any failure finishes it.
 */
export async function upgradeClient(deps: UpgradeDeps, opts: UpgradeOptions): Promise<UpgradeResult> {
  const t0 = performance.now();
  const run = settings(deps, opts);
  const row = await run.platform.getClient(opts.clientId);
  const resumed = row.migration_status !== 'none';

  if (row.hosting_type === 'dedicated' && row.migration_status !== 'switched') {
    const outcome = row.migration_status === 'cleanup_pending' ? 'cleanup_pending' : 'already_upgraded';
    return upgradeResult(row, outcome, { t0, resumed: false });
  }
  if (row.hosting_type === 'shared') {
    if (row.tier !== 'adventurer') {
      throw new UsageError(`client ${row.id} is ${row.tier} but hosted shared: fix its platform row first`);
    }
    if (row.provisioning_status !== 'ready') {
      throw new UsageError(
        `client ${row.id} is not ready (${row.provisioning_status}): finish its provisioning first`,
      );
    }
  }
  let state: MigrationState;
  if (!resumed) {
    if (!row.shared_pool_id) throw new UsageError(`client ${row.id} has no shared pool`);
    state = stateSchema.parse({
      target_tier: opts.tier ?? 'champion',
      source_pool_id: row.shared_pool_id,
      started_at: run.clock.now().toISOString(),
    });
  } else {
    state = readMigrationState(row.migration_state);
    if (row.hosting_type === 'shared' && opts.tier && opts.tier !== state.target_tier) {
      throw new UsageError(
        `client ${row.id} is already moving to ${state.target_tier}; finish that move first`,
      );
    }
  }
  if (opts.keepSource !== undefined) state.keep_source = opts.keepSource;

  const move = openMove(run, row, state, state.keep_source);
  if (!resumed) await save(move);
  const end = await runSteps(move);
  return upgradeResult(move.row, end === 'held' ? 'cleanup_pending' : 'upgraded', {
    t0,
    resumed,
    copy: move.copy,
    verification: move.verification,
  });
}

/** The one shape of an upgrade's result, whichever way the run ended. */
function upgradeResult(
  row: ClientRow,
  outcome: UpgradeResult['outcome'],
  run: {
    t0: number;
    resumed: boolean;
    copy?: CopyReport | null;
    verification?: Map<TenantTable, Verification> | null;
  },
): UpgradeResult {
  const rowsCopied = run.copy?.rows ?? 0;
  const copySeconds = run.copy?.seconds ?? 0;
  return {
    clientId: row.id,
    outcome,
    tier: row.tier,
    project: row.supabase_project_ref ? { ref: row.supabase_project_ref, url: row.supabase_url ?? '' } : null,
    resumed: run.resumed,
    tables: [...(run.verification ?? [])].map(([table, v]) => ({
      table,
      copiedThisRun: run.copy?.perTable.get(table) ?? 0,
      ...v,
    })),
    rowsCopied,
    copySeconds,
    rowsPerSecond: copySeconds > 0 ? rowsCopied / copySeconds : 0,
    totalSeconds: (performance.now() - run.t0) / 1000,
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
  const run = settings(deps, {});
  const row = await run.platform.getClient(opts.clientId);
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
  const state = readMigrationState(row.migration_state);
  const poolId = state.source_pool_id ?? row.shared_pool_id;
  if (poolId) await setFence(run, poolId, row.id, 'open');
  const abandonedProject = row.supabase_project_ref
    ? { ref: row.supabase_project_ref, url: row.supabase_url }
    : null;
  await run.platform.updateClient(row.id, {
    migration_status: 'none',
    migration_started_at: null,
    migration_state: { aborted_at: run.clock.now().toISOString(), abandoned_project: abandonedProject },
    supabase_project_ref: null,
    supabase_url: null,
    supabase_anon_key: null,
    supabase_service_role_key: null,
  });
  run.log.warn({ client_id: row.id, abandoned_project: abandonedProject?.ref }, 'upgrade aborted');
  // Once fenced, the copy may have begun.
  return { clientId: row.id, abandonedProject, partialCopy: stepIndex(state.step) >= stepIndex('fence') };
}

export interface CleanupResult {
  clientId: string;
  deleted: Partial<Record<TenantTable, number>>;
}

/**
 * Deletes a moved client's rows from its old pool: the rest of its upgrade's steps, with the
 * pool's copy no longer kept (see cleanUp).
 */
export async function cleanupClient(
  deps: Pick<UpgradeDeps, 'platform' | 'pools' | 'log' | 'clock' | 'retry'>,
  opts: { clientId: string; pageSize?: number },
): Promise<CleanupResult> {
  const run = settings(deps, opts, MAX_PAGE_SIZE);
  const row = await run.platform.getClient(opts.clientId);
  if (row.hosting_type !== 'dedicated' || !['switched', 'cleanup_pending'].includes(row.migration_status)) {
    throw new UsageError(
      `client ${row.id} has nothing to clean up (hosting ${row.hosting_type}, migration_status ${row.migration_status}): cleanup follows a completed upgrade`,
    );
  }
  const state = readMigrationState(row.migration_state);
  if (!state.source_pool_id)
    throw new OpsError(`client ${row.id}: migration_state does not name the old pool`);
  if (state.indexes_dropped) {
    throw new UsageError(
      `client ${row.id}: its upgrade stopped before the vector indexes were rebuilt; run \`sidekick clients upgrade --client ${row.id}\` first`,
    );
  }
  const move = openMove(run, row, state, false);
  await runSteps(move);
  return { clientId: row.id, deleted: move.deleted };
}
