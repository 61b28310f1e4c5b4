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
