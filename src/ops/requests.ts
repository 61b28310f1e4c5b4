import pRetry, { AbortError } from 'p-retry';
import type { Logger } from 'pino';
import { isRetryableDbError } from '../tenancy/supabase.js';
import { type DatabaseApiError, dbError, type PostgrestErrorLike } from './errors.js';

/** Time, injectable so tests can run the polling and fence delays fast. */
export interface Clock {
  now(): Date;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => new Date(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** How often a request that failed for a transient reason (network, 5xx, 429) is tried again. */
export interface RetryPolicy {
  retries: number;
  minMs: number;
  maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = Object.freeze({ retries: 3, minMs: 250, maxMs: 4000 });

/** What every ops module needs besides its own collaborators. */
export interface OpsBase {
  log: Logger;
  clock?: Clock;
  retry?: RetryPolicy;
}

/** A supabase-js response, as far as these helpers look at it. */
export interface ApiResult<T> {
  data: T | null;
  error: PostgrestErrorLike | null;
  status: number;
  count?: number | null;
}

/**
 * Runs one PostgREST request (built anew for each attempt) and returns its data, retrying transient
 * failures only: a refusal by the database (an SQLSTATE, a 4xx) is final and thrown at once.
 * Only use it for requests that are safe to repeat (reads, upserts that ignore duplicates, deletes
 * by key, updates to fixed values).
 */
export async function request<T>(
  what: string,
  make: () => PromiseLike<ApiResult<T>>,
  retry: RetryPolicy = DEFAULT_RETRY,
): Promise<{ data: T; count: number | null }> {
  return pRetry(
    async () => {
      const res = await make();
      if (!res.error) return { data: res.data as T, count: res.count ?? null };
      const err: DatabaseApiError = dbError(what, res.error);
      if (isRetryableDbError(res.error, res.status)) throw err;
      throw new AbortError(err); // p-retry rethrows the DatabaseApiError itself
    },
    {
      retries: retry.retries,
      minTimeout: retry.minMs,
      maxTimeout: retry.maxMs,
      randomize: true,
    },
  );
}
