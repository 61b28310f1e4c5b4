import type { Logger } from 'pino';
import type { ClientConnectionManager } from '../tenancy/connections.js';
import type { Leases } from '../work/leases.js';
import { OpsError, UsageError } from './errors.js';
import type { PlatformAdmin } from './platform.js';
import { connectClient } from './tenant.js';

/**
 * The retention sweep: for every ready client whose tier (or override) limits
 * `transcript_retention_days`, deletes its turns older than that (their embeddings are in the same
 * rows), then its conversations last updated before it that have no turn left, a page per request
 * (`sweep_expired`, migrations/*\/007). In the pool it goes through the client's own tenant token,
 * like a session: RLS keeps it to that client's rows, and the write fence of a tier move refuses it
 * (that client is swept next time, never from under the mover). One sweeper at a time across
 * workers: the `retention_sweep` lease in the platform database.
 */

/** The most rows sweep_expired deletes in one call (migrations shared_pool/007, dedicated/007). */
export const MAX_SWEEP_PAGE = 10_000;

export const RETENTION_LEASE = 'retention_sweep';
const LEASE_SECONDS = 300;

export interface ClientSweep {
  clientId: string;
  name: string;
  tier: string;
  hosting: string;
  /** null: kept without limit (the client's tier or override). */
  retentionDays: number | null;
  /** Rows created (or, for conversations, last updated) before this go. */
  cutoff: string | null;
  transcripts: number;
  conversations: number;
  pages: number;
  seconds: number;
  /** Why nothing was swept (unlimited retention, not ready), or what failed. */
  skipped?: string;
  error?: string;
}

export interface SweepResult {
  dryRun: boolean;
  clients: ClientSweep[];
  transcripts: number;
  conversations: number;
  seconds: number;
  /** Rows deleted (or counted) per second of the whole sweep. */
  rowsPerSecond: number;
}

export interface RetentionDeps {
  platform: PlatformAdmin;
  connections: ClientConnectionManager;
  leases: Leases;
  /** Who holds the lease (the worker's identity, or the CLI's). */
  holder: string;
  log: Logger;
}

export interface SweepOptions {
  /** Only this client. */
  clientId?: string | undefined;
  /** Count what would go; delete nothing (takes no lease). */
  dryRun?: boolean | undefined;
  /** Rows per request (default 500). */
  pageSize?: number | undefined;
  now?: Date | undefined;
  onClient?: (sweep: ClientSweep) => void;
}

export class SweepBusyError extends OpsError {
  constructor(holder: string | null) {
    super(
      `another retention sweep is running (${holder ?? 'a worker'}): run it again once that one has finished`,
    );
  }
}

/** One sweep, now. Throws SweepBusyError when another holds the lease. */
export async function sweepRetention(deps: RetentionDeps, opts: SweepOptions = {}): Promise<SweepResult> {
  // sweep_expired's own bounds, checked before anything is locked or deleted.
  const pageSize = opts.pageSize ?? 500;
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_SWEEP_PAGE) {
    throw new UsageError(`--page-size: must be a whole number from 1 to ${MAX_SWEEP_PAGE}, got ${pageSize}`);
  }
  if (opts.dryRun) return sweep(deps, opts);
  if (!(await deps.leases.take(RETENTION_LEASE, deps.holder, LEASE_SECONDS))) {
    throw new SweepBusyError((await deps.leases.describe(RETENTION_LEASE))?.holder ?? null);
  }
  let result: SweepResult | undefined;
  try {
    result = await sweep(deps, opts, () => deps.leases.take(RETENTION_LEASE, deps.holder, LEASE_SECONDS));
    return result;
  } finally {
    await deps.leases
      .release(RETENTION_LEASE, deps.holder, result ? summary(result) : { failed: true })
      .catch((err: Error) => deps.log.warn({ reason: err.message }, 'could not release the retention lease'));
  }
}

/**
 * The worker's schedule: a sweep when none ran for `intervalS` (across every worker: the lease
 * remembers), checked every minute at most. Returns the result, or undefined when it was not due.
 */
export async function sweepIfDue(
  deps: RetentionDeps,
  intervalS: number,
  opts: Omit<SweepOptions, 'dryRun' | 'clientId'> = {},
): Promise<SweepResult | undefined> {
  if (!(await deps.leases.take(RETENTION_LEASE, deps.holder, LEASE_SECONDS, intervalS))) return undefined;
  let result: SweepResult | undefined;
  try {
    result = await sweep(deps, opts, () => deps.leases.take(RETENTION_LEASE, deps.holder, LEASE_SECONDS));
    deps.log.info(summary(result), 'retention sweep done');
    return result;
  } finally {
    await deps.leases
      .release(RETENTION_LEASE, deps.holder, result ? summary(result) : { failed: true })
      .catch((err: Error) => deps.log.warn({ reason: err.message }, 'could not release the retention lease'));
  }
}

function summary(r: SweepResult): Record<string, unknown> {
  return {
    transcripts: r.transcripts,
    conversations: r.conversations,
    clients: r.clients.length,
    failed: r.clients.filter((c) => c.error).length,
    seconds: Math.round(r.seconds * 10) / 10,
    rows_per_second: Math.round(r.rowsPerSecond),
  };
}

async function sweep(
  deps: RetentionDeps,
  opts: SweepOptions,
  renew?: () => Promise<boolean>,
): Promise<SweepResult> {
  const started = performance.now();
  const now = opts.now ?? new Date();
  const pageSize = opts.pageSize ?? 500;
  const clients = opts.clientId
    ? [await deps.platform.getClient(opts.clientId)]
    : await collect(deps.platform.listClients({ status: 'ready' }));
  const out: ClientSweep[] = [];
  for (const row of clients) {
    const c: ClientSweep = {
      clientId: row.id,
      name: row.name,
      tier: row.tier,
      hosting: row.hosting_type,
      retentionDays: null,
      cutoff: null,
      transcripts: 0,
      conversations: 0,
      pages: 0,
      seconds: 0,
    };
    out.push(c);
    const t0 = performance.now();
    try {
      // A client whose project records another owner is not swept (the sweep would delete that
      // owner's turns by this client's retention): the error says so, like every operator command.
      const connection = await connectClient(deps, row.id);
      c.retentionDays = connection.features.transcript_retention_days;
      if (c.retentionDays === null) {
        c.skipped = 'kept without limit';
      } else {
        const cutoff = new Date(now.getTime() - c.retentionDays * 86_400_000).toISOString();
        c.cutoff = cutoff;
        for (;;) {
          const { data, error } = await connection.db.rpc('sweep_expired', {
            p_before: cutoff,
            p_limit: pageSize,
            p_dry_run: opts.dryRun === true,
          });
          if (error) throw new Error(`${error.message}${error.code ? ` (${error.code})` : ''}`);
          const page = data as { transcripts: number; conversations: number; more: boolean };
          c.pages++;
          c.transcripts += page.transcripts;
          c.conversations += page.conversations;
          if (!page.more) break;
          if (renew && !(await renew())) throw new Error('lost the retention lease to another worker');
        }
      }
    } catch (err) {
      c.error = (err as Error).message;
      deps.log.warn(
        { client_id: row.id, reason: c.error },
        'retention sweep of a client failed; the next sweep tries again',
      );
    }
    c.seconds = (performance.now() - t0) / 1000;
    opts.onClient?.(c);
  }
  const seconds = (performance.now() - started) / 1000;
  const transcripts = out.reduce((n, c) => n + c.transcripts, 0);
  const conversations = out.reduce((n, c) => n + c.conversations, 0);
  return {
    dryRun: opts.dryRun === true,
    clients: out,
    transcripts,
    conversations,
    seconds,
    rowsPerSecond: seconds > 0 ? (transcripts + conversations) / seconds : 0,
  };
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
