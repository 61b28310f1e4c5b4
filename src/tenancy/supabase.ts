import { createClient, type SupabaseClient } from '@supabase/supabase-js';

export type { SupabaseClient };

export interface SupabaseOptions {
  /** Abort a request after this long (PostgREST requests only). */
  timeoutMs?: number;
  /** Replaces the global fetch (the shared pool's tenant-token fetch wraps it). */
  fetch?: typeof fetch;
}

/**
 * A server-side supabase-js client: no session persistence, no token refresh timers, nothing that
 * keeps the process alive or writes to disk.
 */
export function createSupabase(url: string, key: string, opts: SupabaseOptions = {}): SupabaseClient {
  return createClient(url, key, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    db: opts.timeoutMs ? { timeout: opts.timeoutMs } : {},
    global: opts.fetch ? { fetch: opts.fetch } : {},
  });
}

/**
 * Whether a failed PostgREST request is worth trying again: it never got an answer (status 0),
 * a gateway or server error, a timeout or rate limit; a refused or expired token (PGRST3xx, e.g.
 * a rotated pool key: the caller looks the client up again first), PostgREST's own connection
 * trouble (PGRST000-003); and Postgres' connection, serialization, resource and shutdown classes,
 * and 55 ("not in prerequisite state": the pool's write fence during a tier move). Anything else
 * is the request's own fault, and repeating it cannot help.
 */
export function isRetryableDbError(error: { code?: string | null }, status: number | undefined): boolean {
  if (!status || status >= 500 || status === 408 || status === 429) return true;
  const code = error.code || undefined;
  if (!code) return false;
  if (code.startsWith('PGRST')) return code <= 'PGRST003' || code.startsWith('PGRST3');
  return ['08', '40', '53', '55', '57', '58'].includes(code.slice(0, 2));
}
