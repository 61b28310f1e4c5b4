import type { Logger } from 'pino';
import { isRetryableDbError } from '../tenancy/supabase.js';
import type { WorkItem, WorkQueue } from './queue.js';

/** Does one kind of work. Must be idempotent: an item whose lease expired mid-run runs again. */
export interface WorkHandler {
  readonly kind: string;
  /** Resolves with what to keep as the item's result; throws to retry later (or GiveUp to stop). */
  run(item: WorkItem, signal: AbortSignal): Promise<Record<string, unknown> | undefined>;
}

/** Thrown by a handler when trying again cannot help (a refused address, a client that is gone). */
export class GiveUp extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GiveUp';
  }
}

/** A database error in a handler: worth another attempt when it may pass (retryable), else GiveUp. */
export function dbFailure(what: string, error: { message: string; code?: string }, status: number): Error {
  const message = `${what}: ${error.message}${error.code ? ` (${error.code})` : ''}`;
  return isRetryableDbError(error, status) ? new Error(message) : new GiveUp(message);
}

export interface WorkRunnerOptions {
  queue: WorkQueue;
  handlers: readonly WorkHandler[];
  log: Logger;
  /** How often the queue is asked for due items when the last poll found none. */
  pollMs?: number;
  /** Lease length; a handler is aborted at 80% of it, so its lease never expires under it. */
  leaseSeconds?: number;
  /** Items run at once. */
  concurrency?: number;
  /** Seconds before attempt `n + 1` after attempt `n` failed. */
  backoffSeconds?: (attempt: number) => number;
}

/** Exponential, from 5 s, capped at an hour. */
export const defaultBackoff = (attempt: number): number => Math.min(3600, 5 * 2 ** Math.max(0, attempt - 1));

/**
 * Polls the work queue for the kinds it has handlers for and runs them, a few at a time. Runs in
 * the worker's main process (and in `sidekick` commands that drain the queue); stop() lets what
 * runs finish. Nothing a handler logs carries an item's payload (it may hold transcript text).
 */
export class WorkRunner {
  private readonly handlers: Map<string, WorkHandler>;
  private readonly running = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  private readonly abort = new AbortController();

  constructor(private readonly opts: WorkRunnerOptions) {
    this.handlers = new Map(opts.handlers.map((h) => [h.kind, h]));
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule(0);
  }

  /** No new items; waits for the running ones (they are aborted after `graceMs`). */
  async stop(graceMs = 10_000): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const timer = setTimeout(() => this.abort.abort(), graceMs);
    await Promise.allSettled([...this.running]);
    clearTimeout(timer);
  }

  /** Claims and runs what is due now, until nothing is left; returns how many items ran. */
  async drain(): Promise<number> {
    let ran = 0;
    for (;;) {
      ran += await this.runDue();
      if (this.running.size === 0) return ran;
      await Promise.race(this.running);
    }
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.runDue()
        .catch((err: Error) => {
          this.opts.log.warn({ reason: err.message }, 'work queue unavailable; trying again');
          return 0;
        })
        .then((n) => this.schedule(n > 0 ? 0 : (this.opts.pollMs ?? 2000)));
    }, ms);
    this.timer.unref?.();
  }

  /** One claim of as many items as there is room for; starts them and returns how many. */
  private async runDue(): Promise<number> {
    const room = (this.opts.concurrency ?? 2) - this.running.size;
    if (room <= 0 || this.handlers.size === 0) return 0;
    const items = await this.opts.queue.claim([...this.handlers.keys()], {
      limit: room,
      leaseSeconds: this.opts.leaseSeconds ?? 120,
    });
    for (const item of items) {
      const run = this.runOne(item).finally(() => this.running.delete(run));
      this.running.add(run);
    }
    return items.length;
  }

  private async runOne(item: WorkItem): Promise<void> {
    const handler = this.handlers.get(item.kind)!;
    const log = this.opts.log.child({ work_item: item.id, kind: item.kind, attempt: item.attempts });
    const signal = AbortSignal.any([
      this.abort.signal,
      AbortSignal.timeout((this.opts.leaseSeconds ?? 120) * 800),
    ]);
    const queue = this.opts.queue;
    try {
      const result = await handler.run(item, signal);
      if (!(await queue.complete(item, result))) log.warn('work item finished after its lease was lost');
      else log.info('work item done');
    } catch (err) {
      const reason = (err as Error).message;
      try {
        if (err instanceof GiveUp) {
          await queue.giveUp(item, reason);
          log.error({ reason }, 'work item given up');
        } else {
          const wait = (this.opts.backoffSeconds ?? defaultBackoff)(item.attempts);
          await queue.retry(item, reason, wait);
          log.warn(
            { reason, retry_in_s: wait, attempts_left: item.max_attempts - item.attempts },
            'work item failed',
          );
        }
      } catch (finishErr) {
        // The lease expires and the item runs again elsewhere: nothing is lost.
        log.warn({ reason: (finishErr as Error).message }, 'could not record the work item outcome');
      }
    }
  }
}
