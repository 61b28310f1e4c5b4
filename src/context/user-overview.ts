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

/** At most this many facts are kept per overview; beyond it new keys wait until old ones go. */
export const MAX_OVERVIEW_KEYS = 40;

/** What the session learnt, merged over what was known: a fact stated again replaces the old one. */
export function mergeOverview(
  known: UserOverview,
  facts: ReadonlyArray<{ key: string; value: string }>,
): { sections: UserOverview; added: number; updated: number; skipped: number } {
  const sections: UserOverview = { ...known };
  let added = 0;
  let updated = 0;
  let skipped = 0;
  for (const { key, value } of facts) {
    if (key in sections) {
      if (sections[key] !== value) updated++;
    } else if (Object.keys(sections).length >= MAX_OVERVIEW_KEYS) {
      skipped++;
      continue;
    } else added++;
    sections[key] = value;
  }
  return { sections, added, updated, skipped };
}

/** The overview rows that a session of this user and sidekick reads: its own, then the client-wide one. */
interface OverviewRow {
  id: string;
  agent_id: string | null;
  sections: UserOverview | null;
  updated_at: string;
}

/** Writing an overview failed; `retryable` when the database may take it later. */
export class OverviewWriteError extends Error {
  constructor(
    detail: string,
    readonly retryable: boolean,
  ) {
    super(`writing the user overview: ${detail}`);
    this.name = 'OverviewWriteError';
  }
}

/**
 * Merges `update(what the session would read)` into the sidekick's own overview of the user, so
 * the next session of this user and sidekick reads it. A sidekick without its own row starts
 * from the client-wide one (what its sessions read until now). Compare-and-set on updated_at: two
 * sessions of one user ending at once both land, neither overwrites the other's facts.
 */
export async function updateUserOverview(
  db: TenantQuery,
  q: { userId: string; sidekickId: string },
  update: (known: UserOverview) => UserOverview,
  isRetryable: (error: { code?: string }, status: number) => boolean,
): Promise<UserOverview> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const read = await db
      .from('user_overviews')
      .select('id, agent_id, sections, updated_at')
      .eq('user_id', q.userId)
      .or(`agent_id.eq.${q.sidekickId},agent_id.is.null`);
    if (read.error) throw new OverviewWriteError(read.error.message, isRetryable(read.error, read.status));
    const rows = (read.data ?? []) as unknown as OverviewRow[];
    const own = rows.find((r) => r.agent_id === q.sidekickId);
    const shared = rows.find((r) => r.agent_id === null);
    const known = (own ?? shared)?.sections ?? {};
    const sections = update(known);
    const res = own
      ? await db
          .from('user_overviews')
          .update({ sections })
          .eq('id', own.id)
          .eq('updated_at', own.updated_at)
          .select('id')
      : await db
          .from('user_overviews')
          .upsert(
            { user_id: q.userId, agent_id: q.sidekickId, sections },
            {
              onConflict: db.isShared ? 'client_id,user_id,agent_id' : 'user_id,agent_id',
              ignoreDuplicates: true,
            },
          )
          .select('id');
    if (res.error) throw new OverviewWriteError(res.error.message, isRetryable(res.error, res.status));
    if (res.data?.length) return sections;
    // Someone else wrote it meanwhile: merge into theirs.
  }
  throw new OverviewWriteError('it kept changing under five attempts', true);
}
