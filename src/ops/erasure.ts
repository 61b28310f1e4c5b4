import type { ClientConnectionManager } from '../tenancy/connections.js';
import type { SupabaseClient } from '../tenancy/supabase.js';
import type { TenantQuery } from '../tenancy/tenant-query.js';
import { asClientId, asUserId } from '../tenancy/types.js';
import { dbError, must, type PostgrestErrorLike } from './errors.js';
import { connectClient } from './tenant.js';

/**
 * What is kept about one end user of one client, and "forget me": their conversations, turns
 * (with their embeddings), overviews and the platform's work items about them (pending
 * post-session work, webhooks, spooled turns). The client's rows are reached the way a session
 * reaches them (in the pool through the client's own tenant token, so RLS keeps every request to
 * that client; a dedicated project is the client's alone), the work items through the platform's
 * service role, filtered by client and user.
 *
 * Not reachable from here: a worker's local spool file (written only while the platform was down,
 * moved into the work queue when it answers; run `forget` again after), copies the client keeps
 * itself (webhook reports it received), and backups.
 */

export interface UserRecord {
  clientId: string;
  userId: string;
  /** Per sidekick (slug) or client-wide (sidekick null): what the sidekick knows of the user. */
  overviews: Array<{ sidekick: string | null; sections: Record<string, unknown>; updatedAt: string | null }>;
  conversations: { count: number; first: string | null; last: string | null };
  transcripts: { count: number; first: string | null; last: string | null };
  /** Work items about the user in the platform, by kind and status. */
  work: Array<{ kind: string; status: string; count: number }>;
}

export interface ErasureCounts {
  conversations: number;
  transcripts: number;
  overviews: number;
  work_items: number;
}

export interface Erasure {
  clientId: string;
  userId: string;
  /** False: only counted (no `yes`, and something would be lost); nothing was deleted. */
  deleted: boolean;
  /** What went, or (`deleted` false) what would go. */
  removes: ErasureCounts;
}

export interface ErasureDeps {
  connections: ClientConnectionManager;
  /** The platform project with its service-role key (work_items). */
  platform: SupabaseClient;
}

const PAGE = 200;

export async function describeUser(
  deps: ErasureDeps,
  q: { clientId: string; userId: string },
): Promise<UserRecord> {
  const clientId = asClientId(q.clientId, '--client');
  const userId = asUserId(q.userId, '--user');
  // Checked like every operator command: a project recording another owner is refused.
  const { db } = await connectClient(deps, clientId);
  const overviews = must(
    'reading the user overviews',
    await db.from('user_overviews').select('agent_id, sections, updated_at').eq('user_id', userId),
  ) as Array<{
    agent_id: string | null;
    sections: Record<string, unknown> | null;
    updated_at: string | null;
  }>;
  const agentIds = [...new Set(overviews.map((o) => o.agent_id).filter((a): a is string => a !== null))];
  const slugs = new Map<string, string>();
  if (agentIds.length) {
    const agents = must(
      'reading sidekicks',
      await db.from('agents').select('id, slug').in('id', agentIds),
    ) as Array<{
      id: string;
      slug: string;
    }>;
    for (const a of agents) slugs.set(a.id, a.slug);
  }
  const work = await workItems(deps.platform, clientId, userId);
  const tally = new Map<string, number>();
  for (const w of work)
    tally.set(`${w.kind}\u0000${w.status}`, (tally.get(`${w.kind}\u0000${w.status}`) ?? 0) + 1);
  return {
    clientId,
    userId,
    overviews: overviews.map((o) => ({
      sidekick: o.agent_id ? (slugs.get(o.agent_id) ?? o.agent_id) : null,
      sections: o.sections ?? {},
      updatedAt: o.updated_at,
    })),
    conversations: await span(db, 'conversations', userId),
    transcripts: await span(db, 'conversation_transcripts', userId),
    work: [...tally].map(([k, count]) => {
      const [kind, status] = k.split('\u0000') as [string, string];
      return { kind, status, count };
    }),
  };
}

/**
 * Deletes everything of the user in the client's database and the platform's queue; counts it.
 * Without `yes`, only counts what would go, and deletes only when that is nothing (as
 * `clients delete` does: nothing to lose needs no confirmation).
 */
export async function forgetUser(
  deps: ErasureDeps,
  q: { clientId: string; userId: string; yes: boolean },
): Promise<Erasure> {
  const clientId = asClientId(q.clientId, '--client');
  const userId = asUserId(q.userId, '--user');
  // Checked like every operator command: a project recording another owner is refused.
  const { db } = await connectClient(deps, clientId);
  if (!q.yes) {
    const removes = await countErasure(deps.platform, db, clientId, userId);
    if (Object.values(removes).some((n) => n > 0)) return { clientId, userId, deleted: false, removes };
  }
  const deleted: ErasureCounts = { conversations: 0, transcripts: 0, overviews: 0, work_items: 0 };
  // The queue first: post-session work still pending would write the overview again afterwards.
  const work = await deps.platform
    .from('work_items')
    .delete({ count: 'exact' })
    .eq('client_id', clientId)
    .eq('payload->>user_id', userId)
    .retry(false);
  if (work.error) throw dbError('deleting the user’s work items', work.error);
  deleted.work_items = work.count ?? 0;

  deleted.transcripts += count(
    'deleting the user’s turns',
    await db.from('conversation_transcripts').delete({ count: 'exact' }).eq('user_id', userId),
  );
  // Their conversations, a page at a time, with any turn in them that carries no user id.
  for (;;) {
    const page = must(
      'listing the user’s conversations',
      await db.from('conversations').select('id').eq('user_id', userId).order('id').limit(PAGE),
    ) as Array<{ id: string }>;
    if (!page.length) break;
    const ids = page.map((c) => c.id);
    deleted.transcripts += count(
      'deleting turns of the user’s conversations',
      await db.from('conversation_transcripts').delete({ count: 'exact' }).in('conversation_id', ids),
    );
    deleted.conversations += count(
      'deleting the user’s conversations',
      await db.from('conversations').delete({ count: 'exact' }).in('id', ids),
    );
  }
  deleted.overviews = count(
    'deleting the user’s overviews',
    await db.from('user_overviews').delete({ count: 'exact' }).eq('user_id', userId),
  );
  return { clientId, userId, deleted: true, removes: deleted };
}

/** What forgetUser deletes, counted the same way: the turns of the user's conversations included. */
async function countErasure(
  platform: SupabaseClient,
  db: TenantQuery,
  clientId: string,
  userId: string,
): Promise<ErasureCounts> {
  const work = await platform
    .from('work_items')
    .select('id', { count: 'exact', head: true })
    .eq('client_id', clientId)
    .eq('payload->>user_id', userId)
    .retry(false);
  if (work.error) throw dbError('counting the user’s work items', work.error);
  const ofUser = async (table: 'conversations' | 'conversation_transcripts' | 'user_overviews') =>
    count(
      `counting ${table}`,
      await db.from(table).select('id', { count: 'exact', head: true }).eq('user_id', userId),
    );
  let transcripts = await ofUser('conversation_transcripts');
  // Turns in the user's conversations that carry no user id (or another's) go with them.
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const page = must(
      'listing the user’s conversations',
      await db
        .from('conversations')
        .select('id')
        .eq('user_id', userId)
        .gt('id', after)
        .order('id')
        .limit(PAGE),
    ) as Array<{ id: string }>;
    if (!page.length) break;
    transcripts += count(
      'counting turns of the user’s conversations',
      await db
        .from('conversation_transcripts')
        .select('id', { count: 'exact', head: true })
        .in(
          'conversation_id',
          page.map((c) => c.id),
        )
        .or(`user_id.is.null,user_id.neq.${userId}`),
    );
    after = page[page.length - 1]!.id;
  }
  return {
    conversations: await ofUser('conversations'),
    transcripts,
    overviews: await ofUser('user_overviews'),
    work_items: work.count ?? 0,
  };
}

async function span(db: TenantQuery, table: 'conversations' | 'conversation_transcripts', userId: string) {
  const total = await db.from(table).select('id', { count: 'exact', head: true }).eq('user_id', userId);
  if (total.error) throw dbError(`counting ${table}`, total.error);
  const edge = async (ascending: boolean) => {
    const r = await db
      .from(table)
      .select('created_at')
      .eq('user_id', userId)
      .order('created_at', { ascending })
      .limit(1);
    if (r.error) throw dbError(`reading ${table}`, r.error);
    return ((r.data ?? [])[0] as { created_at?: string } | undefined)?.created_at ?? null;
  };
  return { count: total.count ?? 0, first: await edge(true), last: await edge(false) };
}

async function workItems(platform: SupabaseClient, clientId: string, userId: string) {
  const { data, error } = await platform
    .from('work_items')
    .select('kind, status')
    .eq('client_id', clientId)
    .eq('payload->>user_id', userId)
    .limit(10_000)
    .retry(false);
  if (error) throw dbError('reading the user’s work items', error);
  return (data ?? []) as Array<{ kind: string; status: string }>;
}

function count(what: string, res: { count: number | null; error: PostgrestErrorLike | null }): number {
  if (res.error) throw dbError(what, res.error);
  return res.count ?? 0;
}
