import { z } from 'zod';
import { findSidekick, type SidekickRow } from './sidekicks.js';
import type { TenantQuery } from './tenant-query.js';

/**
 * What the client's database says when a session starts, read in one round trip by the
 * `begin_session` RPC (migrations shared_pool/004, dedicated/004): the sidekick (null when there is
 * none, or when it is beyond the client's sidekick limit), the user overview, whether the
 * conversation to continue may be continued, the embedding models of the sidekick's documents,
 * and, in a dedicated project, the client the project records as its owner.
 */
export interface SessionStart {
  sidekick: SidekickRow | null;
  /** The sidekick exists but is beyond `max_sidekicks` (the oldest ones stay usable). */
  beyondLimit: boolean;
  overview: Record<string, unknown>;
  conversation: {
    /**
     * none: no conversation id was given; new: the worker's new id, created (when `claimed`; not
     * while a tier move fences writes); continued: this sidekick's and this user's; other_sidekick /
     * other_user: this client's but not theirs; unknown: not one of this client's conversations
     * (no such id, or another client's: the two look the same on purpose).
     */
    status: ConversationStatus;
    /** The conversation row exists now (created by this call, or continued). */
    claimed: boolean;
  };
  /** Models (and sizes) the sidekick's ready documents were embedded with, most documents first. */
  embeddingModels: Array<{ model: string | null; dimensions: number | null; documents: number }>;
  /**
   * The client a dedicated project records as its owner (migrations/dedicated/003); null: a project
   * from before that record; undefined: the shared pool, which has none. When it is another client,
   * nothing else was read or written (`sidekick` is null).
   */
  projectOwner: string | null | undefined;
}

export const CONVERSATION_STATUSES = [
  'none',
  'new',
  'continued',
  'other_sidekick',
  'other_user',
  'unknown',
] as const;
export type ConversationStatus = (typeof CONVERSATION_STATUSES)[number];

export interface SessionStartQuery {
  /** The client the session serves: a dedicated project recorded as another's answers nothing. */
  clientId: string;
  agentSlug: string;
  /** null: unlimited. */
  maxSidekicks: number | null;
  userId?: string | undefined;
  /** A conversation to continue, or with `claimConversation` the new id the worker chose. */
  conversationId?: string | undefined;
  /** Create the conversation when it is new (the job does; requestFunc only looks). */
  claimConversation: boolean;
  signal?: AbortSignal;
}

const sidekickRow = z.object({
  id: z.string(),
  name: z.string(),
  slug: z.string(),
  system_prompt: z.string().nullable(),
  greeting: z.string().nullable(),
  voice_settings: z.record(z.string(), z.unknown()).nullable(),
  voice_chat_enabled: z.boolean().nullable(),
  text_chat_enabled: z.boolean().nullable(),
  video_chat_enabled: z.boolean().nullable(),
  tools_config: z.unknown(),
});

const response = z.object({
  sidekick: sidekickRow.nullable(),
  beyond_limit: z.boolean(),
  overview: z.record(z.string(), z.unknown()).nullable().default({}),
  conversation: z
    .object({ status: z.enum(CONVERSATION_STATUSES), claimed: z.boolean() })
    .default({ status: 'none', claimed: false }),
  embedding_models: z
    .array(
      z.object({
        model: z.string().nullable(),
        dimensions: z.number().int().nullable(),
        documents: z.number(),
      }),
    )
    .default([]),
  owner: z.string().nullable().optional(),
});

/** The client's database did not answer (or answered nonsense): the session may start degraded. */
export class SessionStartError extends Error {
  constructor(detail: string) {
    super(`reading the session's start from the client's database: ${detail}`);
    this.name = 'SessionStartError';
  }
}

/**
 * One round trip where the project has `begin_session`. A dedicated project that predates it
 * (existing champion projects keep their schema) is read with plain queries instead: the same
 * answer in up to four round trips, and `onLegacySchema` is told so an operator can migrate it.
 */
export async function readSessionStart(
  db: TenantQuery,
  q: SessionStartQuery,
  onLegacySchema?: () => void,
): Promise<SessionStart> {
  let rpc = db.rpc('begin_session', {
    p_agent_slug: q.agentSlug,
    p_max_sidekicks: q.maxSidekicks,
    p_user_id: q.userId ?? null,
    p_conversation_id: q.conversationId ?? null,
    p_claim_conversation: q.claimConversation,
    // The pool's begin_session takes p_client_id (TenantQuery adds it) and has no owner record.
    ...(db.isShared ? {} : { p_for_client: q.clientId }),
  });
  if (q.signal) rpc = rpc.abortSignal(q.signal);
  const { data, error } = await rpc;
  if (error) {
    // The project lacks the migration: PostgREST knows no such function (PGRST202), or its schema
    // cache still names one that Postgres no longer has (42883).
    if ((error.code === 'PGRST202' || error.code === '42883') && !db.isShared) {
      onLegacySchema?.();
      return readWithoutRpc(db, q);
    }
    throw new SessionStartError(
      `${error.message || 'request failed'}${error.code ? ` (${error.code})` : ''}`,
    );
  }
  const parsed = response.safeParse(data);
  if (!parsed.success)
    throw new SessionStartError(`unexpected begin_session answer: ${parsed.error.message}`);
  const r = parsed.data;
  return {
    sidekick: r.sidekick,
    beyondLimit: r.beyond_limit,
    overview: r.overview ?? {},
    conversation: r.conversation,
    embeddingModels: r.embedding_models,
    projectOwner: db.isShared ? undefined : (r.owner ?? null),
  };
}

/** The same answer from a dedicated project's tables, for projects without `begin_session`. */
async function readWithoutRpc(db: TenantQuery, q: SessionStartQuery): Promise<SessionStart> {
  const fail = (what: string, error: { message: string }) =>
    new SessionStartError(`${what}: ${error.message}`);
  // Before anything else: a project recorded as another client's is not read further.
  const owned = await db.readProjectOwner();
  // A project from before the owner record has no such table (PGRST205; 42P01 from Postgres).
  if (owned.error && owned.error.code !== 'PGRST205' && owned.error.code !== '42P01')
    throw fail('reading the project owner', owned.error);
  const projectOwner = owned.data?.client_id ?? null;
  const none: SessionStart = {
    sidekick: null,
    beyondLimit: false,
    overview: {},
    conversation: { status: 'none', claimed: false },
    embeddingModels: [],
    projectOwner,
  };
  if (projectOwner && projectOwner !== q.clientId) return none;
  const sidekick = await findSidekick(db, { slug: q.agentSlug });
  if (!sidekick) return none;
  if (q.maxSidekicks !== null) {
    const { data, error } = await db
      .from('agents')
      .select('id')
      .order('created_at', { ascending: true })
      .order('id', { ascending: true })
      .limit(q.maxSidekicks);
    if (error) throw fail('reading sidekicks', error);
    if (!(data ?? []).some((a) => a.id === sidekick.id)) return { ...none, beyondLimit: true };
  }
  let overview: Record<string, unknown> = {};
  if (q.userId) {
    const res = await db.rpc('get_user_overview_for_agent', { p_user_id: q.userId, p_agent_id: sidekick.id });
    if (res.error) throw fail('reading the user overview', res.error);
    if (res.data && typeof res.data === 'object') overview = res.data as Record<string, unknown>;
  }
  let conversation: SessionStart['conversation'] = { status: 'none', claimed: false };
  if (q.conversationId) {
    const { data, error } = await db
      .from('conversations')
      .select('agent_id, user_id')
      .eq('id', q.conversationId)
      .maybeSingle();
    if (error) throw fail('reading the conversation', error);
    if (data && !q.claimConversation) {
      const status =
        data.agent_id !== sidekick.id
          ? 'other_sidekick'
          : (data.user_id ?? null) !== (q.userId ?? null)
            ? 'other_user'
            : 'continued';
      conversation = { status, claimed: status === 'continued' };
    } else if (!data && q.claimConversation) {
      const res = await db
        .from('conversations')
        .upsert(
          { id: q.conversationId, agent_id: sidekick.id, user_id: q.userId ?? null },
          { onConflict: 'id', ignoreDuplicates: true },
        );
      if (res.error) throw fail('creating the conversation', res.error);
      conversation = { status: 'new', claimed: true };
    } else {
      conversation = { status: 'unknown', claimed: false };
    }
  }
  // Without the RPC the models are not aggregated: an unknown model is never a mismatch.
  return { sidekick, beyondLimit: false, overview, conversation, embeddingModels: [], projectOwner };
}
