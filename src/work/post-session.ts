import type OpenAI from 'openai';
import type { Logger } from 'pino';
import { redactDeep, redactorFor } from '../context/redaction.js';
import {
  type Digest,
  DigestFormatError,
  digestConversation,
  type TranscriptLine,
} from '../context/summarize.js';
import { mergeOverview, OverviewWriteError, updateUserOverview } from '../context/user-overview.js';
import type { ClientConnectionManager } from '../tenancy/connections.js';
import { findSidekick } from '../tenancy/sidekicks.js';
import { isRetryableDbError } from '../tenancy/supabase.js';
import type { TenantQuery } from '../tenancy/tenant-query.js';
import { asClientId } from '../tenancy/types.js';
import type { WorkQueue } from './queue.js';
import { dbFailure, GiveUp, type WorkHandler } from './runner.js';
import { type PostSessionPayload, postSessionDedupeKey, postSessionSchema } from './session-payload.js';
import { enqueueWebhook } from './webhook.js';

export { type PostSessionPayload, postSessionSchema };

/**
 * After a session: a title and a summary of the conversation (on `conversations`), what the user
 * said about themselves merged into their overview (`user_overviews.sections`, only with a
 * user_id and the client's memory switch on), then the client's webhook queued. Queued by the
 * job at session end (one platform request), done by any worker's main process; the LLM is the
 * session's own model (LLM_MODEL through the OpenAI-compatible API), one call per session.
 * Idempotent: a second run writes the same summary again, merges the same facts (same keys), and
 * the webhook's dedupe key makes it one delivery.
 */

export const POST_SESSION = 'post_session';
/** Enough for a fence of hours (the backoff doubles from 5 s to an hour). */
export const POST_SESSION_ATTEMPTS = 12;

/** The session's post-session item, as queued at its end or after its spooled turns are in. */
export function postSessionRequest(payload: PostSessionPayload) {
  return {
    kind: POST_SESSION,
    clientId: payload.client_id,
    dedupeKey: postSessionDedupeKey(payload),
    payload,
    maxAttempts: POST_SESSION_ATTEMPTS,
  };
}

export function enqueuePostSession(queue: WorkQueue, payload: PostSessionPayload) {
  return queue.enqueue(postSessionRequest(payload));
}

export interface PostSessionDeps {
  connections: ClientConnectionManager;
  queue: WorkQueue;
  /** The session's model; undefined when none is configured (no summary, the webhook still goes). */
  llm: { client: Pick<OpenAI, 'chat'>; model: string } | undefined;
  log: Logger;
}

/** A turn's row as this handler reads it. */
interface StoredTurn extends TranscriptLine {
  created_at: string;
}

/** Most turns of one conversation read for its digest (the most recent ones). */
const MAX_TURNS = 400;

export function postSessionHandler(deps: PostSessionDeps): WorkHandler {
  return {
    kind: POST_SESSION,
    async run(item, signal) {
      const parsed = postSessionSchema.safeParse(item.payload);
      if (!parsed.success)
        throw new GiveUp(`unreadable post-session payload: ${parsed.error.issues[0]?.message}`);
      const p = parsed.data;
      const connection = await deps.connections.forClient(asClientId(p.client_id));
      const { db, settings } = connection;
      const sidekickId = p.sidekick_id ?? (await sidekickOf(db, p.sidekick_slug));
      const turns = await readTurns(db, p.conversation_id);
      const memory = Boolean(p.user_id) && settings.memory;
      const result: Record<string, unknown> = { turns: turns.length, memory };

      if (!turns.some((t) => t.role === 'user')) {
        result.digest = 'skipped: no user turn';
      } else if (!deps.llm) {
        result.digest = 'skipped: no model configured (OPENAI_API_KEY)';
      } else {
        const known = memory ? await readKnown(db, p.user_id!, sidekickId) : {};
        const started = performance.now();
        let digest: Digest;
        try {
          digest = await digestConversation(
            deps.llm.client,
            deps.llm.model,
            { lines: turns, overview: known, facts: memory },
            signal,
          );
        } catch (err) {
          // Bad JSON or an unreachable model: the runner tries again with backoff.
          throw err instanceof DigestFormatError
            ? err
            : new Error(`the model did not answer: ${(err as Error).message}`);
        }
        const redact = redactorFor(settings);
        const title = redact ? redact(digest.title).text : digest.title;
        const summary = redact ? redact(digest.summary).text : digest.summary;
        await writeSummary(db, p.conversation_id, { title, summary }, deps.log);
        Object.assign(result, {
          llm_ms: Math.round(performance.now() - started),
          ...(digest.usage
            ? { prompt_tokens: digest.usage.promptTokens, completion_tokens: digest.usage.completionTokens }
            : {}),
          summary_chars: summary.length,
          facts: digest.facts.length,
          facts_rejected: digest.rejected.length,
        });
        if (digest.rejected.length) {
          // Keys and reasons only: never a value or a quote (they are the user's words).
          deps.log.warn(
            { rejected: digest.rejected },
            'facts the transcript does not support were not stored',
          );
        }
        if (memory && digest.facts.length) {
          const facts = redact
            ? digest.facts.map((f) => ({ ...f, value: redactDeep(redact, f.value) }))
            : digest.facts;
          let merged: ReturnType<typeof mergeOverview> | undefined;
          await updateUserOverview(
            db,
            { userId: p.user_id!, sidekickId },
            (current) => {
              merged = mergeOverview(current, facts);
              return merged.sections;
            },
            isRetryableDbError,
          ).catch((err: Error) => {
            throw err instanceof OverviewWriteError && !err.retryable ? new GiveUp(err.message) : err;
          });
          Object.assign(result, { overview_added: merged?.added, overview_updated: merged?.updated });
        }
      }

      if (settings.webhook_url) {
        const hook = await enqueueWebhook(deps.queue, p);
        result.webhook = hook.id;
      }
      return result;
    },
  };
}

/** What the client's own sidekick-or-client-wide overview says now (the session's view). */
async function readKnown(db: TenantQuery, userId: string, sidekickId: string) {
  const { data, error, status } = await db.rpc('get_user_overview_for_agent', {
    p_user_id: userId,
    p_agent_id: sidekickId,
  });
  if (error) throw dbFailure('reading the user overview', error, status);
  return data && typeof data === 'object' && !Array.isArray(data) ? (data as Record<string, unknown>) : {};
}

async function readTurns(db: TenantQuery, conversationId: string): Promise<StoredTurn[]> {
  const { data, error, status } = await db
    .from('conversation_transcripts')
    .select('role, content, created_at')
    .eq('conversation_id', conversationId)
    .order('created_at', { ascending: false })
    .order('id', { ascending: false })
    .limit(MAX_TURNS);
  if (error) throw dbFailure('reading the transcript', error, status);
  return ((data ?? []) as unknown as Array<StoredTurn & { content: string | null }>)
    .filter((t) => t.content)
    .reverse();
}

/**
 * Title and summary on the conversation. A dedicated project without migrations/dedicated/007
 * has no summary column: the summary goes to conversations.metadata.summary there (said once).
 */
async function writeSummary(
  db: TenantQuery,
  conversationId: string,
  s: { title: string; summary: string },
  log: Logger,
): Promise<void> {
  const res = await db
    .from('conversations')
    .update({ title: s.title || null, summary: s.summary })
    .eq('id', conversationId)
    .select('id');
  if (!res.error) {
    if (!res.data?.length) throw new GiveUp('the conversation is gone (erased or expired)');
    return;
  }
  if (res.error.code !== 'PGRST204') throw dbFailure('writing the summary', res.error, res.status);
  if (!legacyWarned) {
    legacyWarned = true;
    log.warn(
      "this client's database has no conversations.summary column: apply migrations/dedicated/007; summaries go to metadata meanwhile",
    );
  }
  const read = await db.from('conversations').select('metadata').eq('id', conversationId).maybeSingle();
  if (read.error) throw dbFailure('reading the conversation', read.error, read.status);
  const metadata = { ...((read.data?.metadata as Record<string, unknown> | null) ?? {}), summary: s.summary };
  const legacy = await db
    .from('conversations')
    .update({ title: s.title || null, metadata })
    .eq('id', conversationId);
  if (legacy.error) throw dbFailure('writing the summary', legacy.error, legacy.status);
}
let legacyWarned = false;

async function sidekickOf(db: TenantQuery, slug: string): Promise<string> {
  const found = await findSidekick(db, { slug });
  if (!found) throw new GiveUp(`sidekick ${slug} does not exist in the client's database`);
  return found.id;
}
