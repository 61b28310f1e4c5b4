import type { Logger } from 'pino';
import type { TenantQuery } from '../tenancy/tenant-query.js';

/** What the client knows about one end user (`user_overviews.sections`): facts by heading. */
export type UserOverview = Record<string, unknown>;

/**
 * The user's overview for a sidekick (its own, else the client-wide one), read once per session:
 * it does not change while the session runs. A database that does not answer within `timeoutMs`
 * gives an empty overview, logged; the session goes on without it.
 */
export async function readUserOverview(
  db: TenantQuery,
  q: { userId: string; sidekickId: string },
  timeoutMs: number,
  log: Logger,
): Promise<UserOverview> {
  const { data, error } = await db
    .rpc('get_user_overview_for_agent', { p_user_id: q.userId, p_agent_id: q.sidekickId })
    .abortSignal(AbortSignal.timeout(timeoutMs));
  if (error) {
    log.warn({ reason: error.message }, 'user overview unavailable at session start');
    return {};
  }
  return data && typeof data === 'object' && !Array.isArray(data) ? (data as UserOverview) : {};
}

/** The overview as lines of the instructions, or '' when nothing is known. */
export function formatUserOverview(overview: UserOverview): string {
  const facts = Object.entries(overview).map(
    ([k, v]) => `- ${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`,
  );
  return facts.length ? `What you know about the person you are talking to:\n${facts.join('\n')}` : '';
}
