import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { z } from 'zod';
import type { SupabaseClient } from '../tenancy/supabase.js';

/**
 * The platform's durable work queue (migrations/platform/005_work_queue.sql): work that must
 * outlive the process that started it. Items are leased, not taken: a worker that dies mid-item
 * loses its lease when it expires and another worker does the item; the attempt number fences the
 * lease, so only the current holder's outcome counts. Handlers must therefore be idempotent
 * (an item may run twice when a lease expires mid-run; it is finished once).
 */

const itemSchema = z.object({
  id: z.string(),
  kind: z.string(),
  client_id: z.string().nullable(),
  dedupe_key: z.string().nullable(),
  payload: z.record(z.string(), z.unknown()),
  status: z.enum(['pending', 'running', 'done', 'failed']),
  attempts: z.number().int(),
  max_attempts: z.number().int(),
  run_after: z.string(),
  last_error: z.string().nullable(),
  result: z.unknown().nullable(),
  created_at: z.string(),
  finished_at: z.string().nullable(),
});
export type WorkItem = z.infer<typeof itemSchema>;

export interface EnqueueRequest {
  kind: string;
  clientId?: string | null;
  /** The same (kind, dedupeKey) enqueued twice is one item: what makes an enqueue safe to retry. */
  dedupeKey?: string;
  payload: Record<string, unknown>;
  maxAttempts?: number;
  /** Not before this time (default: now). */
  runAfter?: Date;
}

/** The platform database refused or did not answer a queue request. */
export class WorkQueueError extends Error {
  constructor(what: string, detail: string) {
    super(`work queue: ${what}: ${detail}`);
    this.name = 'WorkQueueError';
  }
}

/** A lease holder's name, unique per process: host, pid and a random part. */
export function workerIdentity(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

const COLUMNS = Object.keys(itemSchema.shape).join(',');

export class WorkQueue {
  constructor(
    /** The platform project with its service-role key. */
    private readonly platform: SupabaseClient,
    /** Who holds leases: unique per process (host, pid, a random part). */
    readonly workerId: string,
  ) {}

  /** Adds an item; returns it, or the item already queued under the same dedupe key. */
  async enqueue(req: EnqueueRequest): Promise<WorkItem> {
    const row = {
      kind: req.kind,
      client_id: req.clientId ?? null,
      dedupe_key: req.dedupeKey ?? null,
      payload: req.payload,
      ...(req.maxAttempts ? { max_attempts: req.maxAttempts } : {}),
      ...(req.runAfter ? { run_after: req.runAfter.toISOString() } : {}),
    };
    const inserted = await this.platform
      .from('work_items')
      .upsert(row, { onConflict: 'kind,dedupe_key', ignoreDuplicates: true })
      .select(COLUMNS)
      .retry(false);
    if (inserted.error) throw new WorkQueueError(`enqueueing ${req.kind}`, inserted.error.message);
    if (inserted.data?.length) return itemSchema.parse(inserted.data[0]);
    // Already there (a duplicate enqueue): the existing item.
    const existing = await this.platform
      .from('work_items')
      .select(COLUMNS)
      .eq('kind', req.kind)
      .eq('dedupe_key', req.dedupeKey ?? '')
      .retry(false)
      .maybeSingle();
    if (existing.error || !existing.data) {
      throw new WorkQueueError(`enqueueing ${req.kind}`, existing.error?.message ?? 'the item vanished');
    }
    return itemSchema.parse(existing.data);
  }

  /** Leases up to `limit` due items of these kinds for `leaseSeconds`. */
  async claim(kinds: readonly string[], opts: { limit: number; leaseSeconds: number }): Promise<WorkItem[]> {
    const { data, error } = await this.platform
      .rpc('claim_work_items', {
        p_kinds: kinds,
        p_worker: this.workerId,
        p_lease_seconds: opts.leaseSeconds,
        p_limit: opts.limit,
      })
      .retry(false);
    if (error) throw new WorkQueueError('claiming work', error.message);
    return z.array(itemSchema).parse(data ?? []);
  }

  /** Done: the item is finished for good. false = the lease was lost (another worker has it now). */
  complete(item: WorkItem, result?: Record<string, unknown>): Promise<boolean> {
    return this.finish(item, 'done', { result });
  }

  /** Try again after `retrySeconds`, or give up for good once the item's attempts are used up. */
  retry(item: WorkItem, error: string, retrySeconds: number): Promise<boolean> {
    return this.finish(item, 'retry', { error, retrySeconds });
  }

  /** Give up now, keeping the reason (e.g. the client's endpoint refused the address). */
  giveUp(item: WorkItem, error: string): Promise<boolean> {
    return this.finish(item, 'failed', { error });
  }

  /** Open items (pending, running) per kind and status, over every client: the outbox's depth. */
  async depth(): Promise<Array<{ kind: string; status: string; items: number }>> {
    const { data, error } = await this.platform.rpc('work_queue_depth').retry(false);
    if (error) throw new WorkQueueError('reading the queue depth', error.message);
    return z
      .array(z.object({ kind: z.string(), status: z.string(), items: z.coerce.number() }))
      .parse(data ?? []);
  }

  /** Items of a client (and kind), newest first: what `sidekick` shows an operator. */
  async list(filter: {
    clientId?: string;
    kind?: string;
    status?: WorkItem['status'];
    limit?: number;
  }): Promise<WorkItem[]> {
    let q = this.platform.from('work_items').select(COLUMNS);
    if (filter.clientId) q = q.eq('client_id', filter.clientId);
    if (filter.kind) q = q.eq('kind', filter.kind);
    if (filter.status) q = q.eq('status', filter.status);
    const { data, error } = await q
      .order('created_at', { ascending: false })
      .limit(filter.limit ?? 100)
      .retry(false);
    if (error) throw new WorkQueueError('listing work', error.message);
    return z.array(itemSchema).parse(data ?? []);
  }

  private async finish(
    item: WorkItem,
    outcome: 'done' | 'retry' | 'failed',
    opts: { error?: string; result?: Record<string, unknown> | undefined; retrySeconds?: number },
  ): Promise<boolean> {
    const { data, error } = await this.platform
      .rpc('finish_work_item', {
        p_id: item.id,
        p_worker: this.workerId,
        p_attempt: item.attempts,
        p_outcome: outcome,
        p_error: opts.error ?? null,
        p_result: opts.result ?? null,
        p_retry_seconds: Math.max(0, Math.round(opts.retrySeconds ?? 0)),
      })
      .retry(false);
    if (error) throw new WorkQueueError(`finishing ${item.kind} ${item.id}`, error.message);
    return data === true;
  }
}
