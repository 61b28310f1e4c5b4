import { randomUUID } from 'node:crypto';
import { voice } from '@livekit/agents';
import type { Logger } from 'pino';
import { ContextManager } from '../context/context-manager.js';
import { TranscriptStore } from '../context/transcripts.js';
import type { ClientConnection } from '../tenancy/connections.js';
import { SessionLedger } from '../usage/ledger.js';
import { SessionMeter } from '../usage/meter.js';
import { leaseFor } from '../usage/session-leases.js';
import { sessionAftercare } from '../work/session-end.js';
import type { JobMetadata } from './metadata.js';
import type { WorkerRuntime } from './runtime.js';
import { planSession, type SessionPlan } from './session-plan.js';
import { Sidekick } from './sidekick.js';
import { prepareSessionTools, toolTurn } from './tools/session-tools.js';
import type { LookupEvent } from './turn-lookup.js';
import type { FrameSource } from './video.js';

/** One session, planned and wired, ready to be started in a room, a terminal or a test. */
export interface PreparedSession {
  plan: SessionPlan;
  connection: ClientConnection;
  /** The conversation the turns are written to. */
  readonly conversationId: string;
  agent: Sidekick;
  transcripts: TranscriptStore;
  /** True when the client's database could not be read: the sidekick talks on what was cached. */
  degraded: boolean;
  /** Hooks the session's events: every user and assistant turn to the transcript store (the user's
   * with the vector its lookup made), and the user's transcripts to the turn's lookups. */
  attach(session: voice.AgentSession): void;
  /**
   * Flushes transcripts (retrying for the grace period; what is left goes to the spool), queues the
   * post-session work, and reports what happened. Called again, it returns the first call's result.
   */
  close(): Promise<{ written: number; dropped: number; spooled: number }>;
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
  opts: {
    video?: FrameSource;
    sessionId?: string;
    observe?: (ev: LookupEvent) => void;
    /** A LiveKit job: the session holds a lease (its slot, renewed) under its job id, `sessionId`, and leaves a ledger row. */
    lease?: boolean;
  } = {},
): Promise<PreparedSession> {
  const startedAt = new Date();
  const { config, connections } = runtime;
  const { plan, connection, degraded, conversationId, conversationClaimed, conversationContinued, overview } =
    await planSession(metadata, connections, log, { claimConversation: true, embedder: runtime.embedder });
  log.info(
    {
      tier: plan.tier,
      hosting: connection.hostingType,
      audio: plan.audio,
      text: plan.text,
      video: plan.video,
      rag: plan.rag,
      voice: plan.voice,
      tools: plan.tools.reason,
      degraded,
    },
    'session planned',
  );
  // Usage and latency (src/usage/); with a lease, the session's slot and ledger row.
  const meter = new SessionMeter({ tier: plan.tier, audio: plan.audio.enabled, metrics: runtime.metrics });
  const embedder = meter.embedder(runtime.embedder);
  const lease =
    opts.lease && opts.sessionId ? leaseFor(opts.sessionId, { plan, connection, conversationId }) : null;
  const ledger = lease ? await SessionLedger.start(runtime.leases, lease, meter, log) : undefined;

  // Asked every turn: if the client's tier move switches databases mid-session, lookups follow.
  const resolveDb = async () => (await connections.forClient(metadata.clientId)).db;
  const context = new ContextManager({
    db: resolveDb,
    embedder,
    settings: {
      ragEnabled: plan.rag.enabled,
      matchCount: config.context.ragMatchCount,
      matchThreshold: config.context.ragMatchThreshold,
      recallCount: config.context.recallMatchCount,
    },
    budgets: { lookupMs: config.context.budgetMs, maxChars: config.context.maxChars },
    log,
  });
  const after = sessionAftercare(
    { queue: runtime.work, spool: runtime.spool, log },
    {
      clientId: metadata.clientId,
      sessionId: opts.sessionId ?? randomUUID(),
      sidekickId: plan.sidekick.id,
      sidekickSlug: plan.sidekick.slug,
      userId: metadata.userId ?? null,
      settings: connection.settings,
      startedAt,
    },
  );
  const transcripts = new TranscriptStore({
    resolveDb,
    // A refusal may mean the client moved (tier upgrade): look it up afresh before the next try.
    onWriteFailure: () => connections.directory.invalidate(metadata.clientId),
    embedder,
    conversation: {
      id: conversationId,
      created: conversationClaimed,
      // A degraded session does not know its sidekick's id yet: the store looks it up by slug.
      agentId: plan.sidekick.id ?? undefined,
      agentSlug: plan.sidekick.slug,
      userId: metadata.userId ?? null,
    },
    log,
    batchSize: config.transcripts.batchSize,
    maxBuffered: config.transcripts.maxBuffered,
    graceMs: config.transcripts.graceMs,
    redact: after.redact,
    spool: after.spool,
  });
  meter.trackTranscripts(() => transcripts.stats);
  const tools = await prepareSessionTools(plan, {
    outbound: runtime.outbound,
    secrets: runtime.secrets,
    log,
    conversationId: () => transcripts.conversationId,
    onCall: (call) => transcripts.add(toolTurn(call)),
  });
  const agent = new Sidekick({
    plan,
    tools: tools.entries,
    context,
    userId: metadata.userId,
    conversationId: () => transcripts.conversationId,
    greet: !conversationContinued,
    overview,
    video: plan.video.enabled ? opts.video : undefined,
    observe: opts.observe,
    log,
  });

  let closed: ReturnType<PreparedSession['close']> | undefined;
  return {
    plan,
    connection,
    // The store's: a foreign id found only after a degraded start is replaced there.
    get conversationId() {
      return transcripts.conversationId;
    },
    agent,
    transcripts,
    degraded,
    attach(session) {
      meter.attach(session);
      session.on(voice.AgentSessionEventTypes.ConversationItemAdded, (ev) => {
        const item = ev.item;
        if (item.type !== 'message' || (item.role !== 'user' && item.role !== 'assistant')) return;
        // A reply's latency goes with its transcript row (metadata.latency).
        const latency = meter.turn(item, agent.lastTurnContext);
        const text = item.textContent?.trim();
        if (item.role === 'user') agent.lookups.endTurn();
        if (!text) return;
        transcripts.add({
          role: item.role,
          content: text,
          metadata: { livekit_item_id: item.id, ...(latency ? { latency } : {}) },
          embedding: item.role === 'user' ? agent.lookups.embeddingFor(text) : undefined,
        });
      });
      session.on(voice.AgentSessionEventTypes.UserInputTranscribed, (ev) => {
        if (ev.isFinal) agent.lookups.final(ev.transcript);
        else agent.lookups.interim(ev.transcript);
      });
    },
    close() {
      closed ??= (async () => {
        // The slot is free as soon as the session ends; the ledger row follows its last writes.
        await ledger?.ended();
        await tools.close();
        const stats = await transcripts.close();
        log.info(
          { written: stats.written, dropped: stats.dropped, spooled: stats.spooled },
          'session transcripts closed',
        );
        await after.end(stats, transcripts.conversationId);
        meter.close();
        await ledger?.finish();
        return { written: stats.written, dropped: stats.dropped, spooled: stats.spooled };
      })();
      return closed;
    },
  };
}
