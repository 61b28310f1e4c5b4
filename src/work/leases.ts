import { request } from '../ops/requests.js';
import type { SupabaseClient } from '../tenancy/supabase.js';

/**
 * Named leases in the platform database (migrations/platform/006): one holder at a time for a
 * chore that any worker may do but only one should (the retention sweep). A holder that dies
 * loses its lease when it expires; a released lease remembers when its chore last finished, so
 * every worker can schedule the chore and it still runs once per interval.
 */
export class Leases {
  constructor(private readonly platform: SupabaseClient) {}

  /** Takes or renews `name` for `seconds`; false while another holds it (or it ran too recently). */
  async take(name: string, holder: string, seconds: number, minIntervalSeconds = 0): Promise<boolean> {
    // Safe to repeat: a second take by the same holder renews the first.
    const { data } = await request(`taking lease ${name}`, () =>
      this.platform
        .rpc('take_lease', {
          p_name: name,
          p_holder: holder,
          p_seconds: Math.max(1, Math.round(seconds)),
          p_min_interval_seconds: Math.max(0, Math.round(minIntervalSeconds)),
        })
        .retry(false),
    );
    return data === true;
  }

  /** Ends the caller's lease, keeping `result` (false: it was no longer the caller's). */
  async release(name: string, holder: string, result?: Record<string, unknown>): Promise<boolean> {
    const { data } = await request(`releasing lease ${name}`, () =>
      this.platform
        .rpc('release_lease', { p_name: name, p_holder: holder, p_result: result ?? null })
        .retry(false),
    );
    return data === true;
  }

  /** Who holds `name` now, and when its chore last finished. */
  async describe(
    name: string,
  ): Promise<{ holder: string | null; expiresAt: string | null; lastFinishedAt: string | null } | null> {
    const { data } = await request(`reading lease ${name}`, () =>
      this.platform
        .from('platform_leases')
        .select('holder, expires_at, last_finished_at')
        .eq('name', name)
        .retry(false)
        .maybeSingle(),
    );
    const row = data as {
      holder: string | null;
      expires_at: string | null;
      last_finished_at: string | null;
    } | null;
    if (!row) return null;
    const live = row.holder && row.expires_at && Date.parse(row.expires_at) > Date.now();
    return {
      holder: live ? row.holder : null,
      expiresAt: live ? row.expires_at : null,
      lastFinishedAt: row.last_finished_at,
    };
  }
}
