import type { Logger } from 'pino';
import { redactorFor, redactTurn } from '../context/redaction.js';
import type { SpooledConversation, SpooledTurn, TranscriptStats, Turn } from '../context/transcripts.js';
import type { ClientSettings } from '../tenancy/client-settings.js';
import { enqueuePostSession, postSessionRequest } from './post-session.js';
import type { WorkQueue } from './queue.js';
import type { PostSessionPayload } from './session-payload.js';
import type { TranscriptSpool } from './spool.js';

/**
 * What one session hands to what happens after it: the redaction of what it stores, the spool of
 * what it could not store in time, and, at its end, the post-session job (one platform request;
 * when turns were spooled, the job rides along with them and is queued once they are written, so
 * the summary never misses them).
 */
export interface SessionAftercare {
  /** The transcript store's `redact` option (undefined: the client stores turns as said). */
  redact: ((turn: Turn) => Turn) | undefined;
  /** The transcript store's `spool` option. */
  spool(rows: readonly SpooledTurn[], conversation: SpooledConversation): Promise<boolean>;
  /** After the store closed: queues the post-session job unless the spool took it along. */
  end(stats: TranscriptStats, conversationId: string): Promise<void>;
}

export function sessionAftercare(
  deps: { queue: WorkQueue; spool: TranscriptSpool; log: Logger },
  session: {
    clientId: string;
    sessionId: string;
    sidekickId: string | null;
    sidekickSlug: string;
    userId: string | null;
    settings: ClientSettings;
    startedAt: Date;
  },
): SessionAftercare {
  const redact = redactorFor(session.settings);
  const payload = (conversationId: string): PostSessionPayload => ({
    client_id: session.clientId,
    session_id: session.sessionId,
    conversation_id: conversationId,
    sidekick_id: session.sidekickId,
    sidekick_slug: session.sidekickSlug,
    user_id: session.userId,
    started_at: session.startedAt.toISOString(),
    ended_at: new Date().toISOString(),
  });
  return {
    redact: redact ? (turn) => redactTurn(redact, turn) : undefined,
    spool: (rows, conversation) => {
      return deps.spool.spill(
        session.clientId,
        rows,
        conversation,
        postSessionRequest(payload(conversation.id)),
      );
    },
    async end(stats, conversationId) {
      if (stats.spooled > 0) return;
      try {
        const item = await enqueuePostSession(deps.queue, payload(conversationId));
        deps.log.info({ work_item: item.id }, 'post-session work queued');
      } catch (err) {
        // Nothing of the conversation is lost: only its summary, memory and webhook are not made.
        deps.log.error({ reason: (err as Error).message }, 'post-session work could not be queued');
      }
    },
  };
}
