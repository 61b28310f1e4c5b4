import { randomUUID } from 'node:crypto';
import { voice } from '@livekit/agents';
import type { Logger } from 'pino';
import { ContextManager } from '../context/context-manager.js';
import { TranscriptStore } from '../context/transcripts.js';
import type { ClientConnection } from '../tenancy/connections.js';
import { SessionRefusedError } from './errors.js';
import type { JobMetadata } from './metadata.js';
import type { WorkerRuntime } from './runtime.js';
import { decideSession, loadSidekick, type SessionPlan, type SidekickRow } from './session-plan.js';
import { Sidekick } from './sidekick.js';
import type { FrameSource } from './video.js';

/** One session, planned and wired, ready to be started in a room, a terminal or a test. */
export interface PreparedSession {
  plan: SessionPlan;
  connection: ClientConnection;
  conversationId: string;
  agent: Sidekick;
  transcripts: TranscriptStore;
  /** True when the client's database could not be read: the sidekick talks on what was cached. */
  degraded: boolean;
  /** Hooks the session's events: every user and assistant turn to the transcript store, and each
   * final user transcript to the context prefetch. */
  attach(session: voice.AgentSession): void;
  /** Flushes transcripts (retrying for the grace period) and reports what happened. */
  close(): Promise<{ written: number; dropped: number }>;
}

/**
 * Metadata → a ready Sidekick with its context and transcript store. The platform database decides
 * where the data lives; when the client's own database is down the session still starts, with a
 * plain sidekick of that slug, logged as degraded; its context lookups and transcript writes
 * succeed again once the database answers.
 */
export async function prepareSession(
  runtime: WorkerRuntime,
  metadata: JobMetadata,
  log: Logger,
  opts: { video?: FrameSource } = {},
): Promise<PreparedSession> {
  const { config, connections } = runtime;
  const connection = await connections.forClient(metadata.clientId);
  if (metadata.hostingTypeHint && metadata.hostingTypeHint !== connection.hostingType) {
    log.warn(
      { hint: metadata.hostingTypeHint, platform: connection.hostingType },
      'job metadata hosting_type differs from the platform record; the platform record decides',
    );
  }
  if (metadata.ignoredCredentialFields.length) {
    log.warn(
      { fields: metadata.ignoredCredentialFields },
      'credential-like fields in job metadata were ignored',
    );
  }

  let sidekick: SidekickRow;
  let degraded = false;
  try {
    sidekick = await loadSidekick(connection, metadata.agentSlug);
  } catch (err) {
    if (err instanceof SessionRefusedError) throw err;
    degraded = true;
    log.error(
      { reason: (err as Error).message },
      'client database unreachable at session start; the sidekick talks in degraded mode',
    );
    // Its own prompt and greeting are in the unreachable database: a plain sidekick talks meanwhile.
    sidekick = {
      id: randomUUID(),
      name: metadata.agentSlug,
      slug: metadata.agentSlug,
      system_prompt: null,
      greeting: null,
      voice_settings: null,
      voice_chat_enabled: true,
      text_chat_enabled: true,
      video_chat_enabled: false,
    };
  }
  const plan = decideSession(
    { clientId: connection.clientId, tier: connection.tier, features: connection.features, sidekick },
    { defaultVoice: config.models.defaultVoice },
  );
  log.info(
    {
      tier: plan.tier,
      hosting: connection.hostingType,
      audio: plan.audio,
      text: plan.text,
      video: plan.video,
      rag: plan.rag,
      voice: plan.voice,
      degraded,
    },
    'session planned',
  );

  const conversationId = metadata.conversationId ?? randomUUID();
  // Asked every turn: if the client's tier move switches databases mid-session, lookups follow.
  const resolveDb = async () => (await connections.forClient(metadata.clientId)).db;
  const context = new ContextManager({
    db: resolveDb,
    embedder: runtime.embedder,
    settings: {
      ragEnabled: plan.rag.enabled,
      matchCount: config.context.ragMatchCount,
      matchThreshold: config.context.ragMatchThreshold,
      recallCount: config.context.recallMatchCount,
    },
    budgets: { lookupMs: config.context.budgetMs, maxChars: config.context.maxChars },
    log,
  });
  const overview =
    metadata.userId && !degraded
      ? await readOverview(connection, plan, metadata.userId, config.context.budgetMs, log)
      : {};
  const transcripts = new TranscriptStore({
    resolveDb,
    // A refusal may mean the client moved (tier upgrade): look it up afresh before the next try.
    onWriteFailure: () => connections.directory.invalidate(metadata.clientId),
    embedder: runtime.embedder,
    conversation: {
      id: conversationId,
      // A sidekick made up in degraded mode has no real id: the store looks it up by slug.
      agentId: degraded ? undefined : plan.sidekick.id,
      agentSlug: plan.sidekick.slug,
      userId: metadata.userId ?? null,
    },
    log,
    batchSize: config.transcripts.batchSize,
    maxBuffered: config.transcripts.maxBuffered,
    graceMs: config.transcripts.graceMs,
  });
  const agent = new Sidekick({
    plan,
    // Also when degraded: lookups fail fast (or at their budget) while the database is down, and
    // the sidekick knows its documents again as soon as it is back.
    context,
    transcripts,
    userId: metadata.userId,
    conversationId,
    overview,
    video: plan.video.enabled ? opts.video : undefined,
    log,
  });

  return {
    plan,
    connection,
    conversationId,
    agent,
    transcripts,
    degraded,
    attach(session) {
      session.on(voice.AgentSessionEventTypes.ConversationItemAdded, (ev) => {
        const item = ev.item;
        if (item.type !== 'message' || (item.role !== 'user' && item.role !== 'assistant')) return;
        const text = item.textContent?.trim();
        if (text) transcripts.add({ role: item.role, content: text, metadata: { livekit_item_id: item.id } });
      });
      session.on(voice.AgentSessionEventTypes.UserInputTranscribed, (ev) => {
        if (ev.isFinal) agent.prefetch(ev.transcript);
      });
    },
    async close() {
      const stats = await transcripts.close();
      log.info({ written: stats.written, dropped: stats.dropped }, 'session transcripts closed');
      return { written: stats.written, dropped: stats.dropped };
    },
  };
}

async function readOverview(
  connection: ClientConnection,
  plan: SessionPlan,
  userId: string,
  budgetMs: number,
  log: Logger,
): Promise<Record<string, unknown>> {
  const { data, error } = await connection.db
    .rpc('get_user_overview_for_agent', { p_user_id: userId, p_agent_id: plan.sidekick.id })
    .abortSignal(AbortSignal.timeout(budgetMs * 2));
  if (error) {
    log.warn({ reason: error.message }, 'user overview unavailable at session start');
    return {};
  }
  return data && typeof data === 'object' ? (data as Record<string, unknown>) : {};
}
