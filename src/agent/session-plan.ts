import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Embedder } from '../context/embeddings.js';
import type { UserOverview } from '../context/user-overview.js';
import type { ClientConnection, ClientConnectionManager } from '../tenancy/connections.js';
import { readSessionStart, type SessionStart } from '../tenancy/session-start.js';
import type { SidekickRow } from '../tenancy/sidekicks.js';
import type { FeatureName, TierFeatures } from '../tenancy/tiers.js';
import type { Tier } from '../tenancy/types.js';
import {
  InvalidConversationError,
  NoChannelAllowedError,
  ProjectOwnedByAnotherClientError,
  SidekickLimitError,
  SidekickNotFoundError,
} from './errors.js';
import type { JobMetadata } from './metadata.js';
import { decideTools, type ToolsDecision } from './tools/plan.js';

export interface Decision {
  enabled: boolean;
  /** Why, in words an operator reading the log understands. */
  reason: string;
}

/** Everything the session may do, decided once before connecting, with the reason for each decision. */
export interface SessionPlan {
  clientId: string;
  tier: Tier;
  sidekick: {
    /** null while the client's database could not be read (a degraded session): found by slug later. */
    id: string | null;
    slug: string;
    name: string;
    instructions: string;
    greeting: string | null;
  };
  audio: Decision;
  text: Decision;
  video: Decision;
  rag: Decision;
  /** The sidekick's own voice where the tier allows it; null = the worker's default (TTS_VOICE). */
  voice: { name: string | null; custom: boolean; reason: string };
  /** The client's tools (tools_config) this session gets, and each one left out with why. */
  tools: ToolsDecision;
}

/** A sidekick row, or the degraded stand-in whose id is not known yet. */
type PlannedSidekick = Omit<SidekickRow, 'id'> & { id: string | null };

const DEFAULT_INSTRUCTIONS = 'You are a helpful voice assistant. Keep answers short and clear.';

/**
 * The session's side of the tier gate, pure: the client's features (tiers.ts decides those, with
 * the client's overrides) AND the sidekick's own switches decide each channel. Nothing here knows
 * what a tier allows; it only says where each decision came from.
 */
export function decideSession(input: {
  clientId: string;
  tier: Tier;
  features: TierFeatures;
  overridden?: ReadonlySet<FeatureName>;
  sidekick: PlannedSidekick;
}): SessionPlan {
  const { tier, features, sidekick: s } = input;
  const source = (feature: FeatureName) =>
    input.overridden?.has(feature) ? "this client's tier_features override" : `the ${tier} tier`;
  const allowed = (feature: FeatureName, what: string, on: boolean) =>
    on ? `${what} is allowed by ${source(feature)}` : `${what} is not allowed by ${source(feature)}`;
  const both = (feature: FeatureName & keyof TierFeatures, flag: boolean | null, what: string): Decision => {
    if (features[feature] !== true) return { enabled: false, reason: allowed(feature, what, false) };
    if (flag !== true) return { enabled: false, reason: `${what} is switched off on the sidekick` };
    return { enabled: true, reason: `${allowed(feature, what, true)} and switched on on the sidekick` };
  };
  const audio = both('voice_chat_enabled', s.voice_chat_enabled, 'voice chat');
  const text = both('text_chat_enabled', s.text_chat_enabled, 'text chat');
  const video = both('video_chat_enabled', s.video_chat_enabled, 'video chat');
  if (!audio.enabled && !text.enabled) {
    throw new NoChannelAllowedError(input.clientId, s.slug, `${audio.reason}; ${text.reason}`);
  }
  const rag: Decision = {
    enabled: features.rag_enabled,
    reason: allowed('rag_enabled', 'document retrieval', features.rag_enabled),
  };

  const wanted = typeof s.voice_settings?.voice === 'string' ? s.voice_settings.voice : undefined;
  const voice = !wanted
    ? { name: null, custom: false, reason: 'the sidekick sets no voice' }
    : features.custom_voice_enabled
      ? { name: wanted, custom: true, reason: allowed('custom_voice_enabled', 'a custom voice', true) }
      : {
          name: null,
          custom: false,
          reason: `${allowed('custom_voice_enabled', 'a custom voice', false)}; using the default voice`,
        };

  return {
    clientId: input.clientId,
    tier,
    sidekick: {
      id: s.id,
      slug: s.slug,
      name: s.name,
      instructions: s.system_prompt?.trim() || DEFAULT_INSTRUCTIONS,
      greeting: s.greeting?.trim() || null,
    },
    audio,
    text,
    video,
    rag,
    voice,
    tools: decideTools({ features, source, toolsConfig: s.tools_config }),
  };
}

export interface PlannedSession {
  plan: SessionPlan;
  connection: ClientConnection;
  /**
   * The client's database could not be read: the plan's sidekick is a plain stand-in of that slug
   * (its own prompt and greeting are in the unreachable database), and the session talks anyway.
   */
  degraded: boolean;
  /** The conversation the session writes to: the one to continue, or a new id. */
  conversationId: string;
  /** Its row exists already (continued, or created at session start): the transcript store need not. */
  conversationClaimed: boolean;
  /** The job continues a conversation that already has turns: its greeting was said then. */
  conversationContinued: boolean;
  /** What is known about the user, read once per session (empty without a user_id). */
  overview: UserOverview;
}

export interface PlanOptions {
  /** The job creates a new conversation's row at once; requestFunc only checks. */
  claimConversation: boolean;
  /** What this worker embeds queries with: documents embedded with another model cannot be found. */
  embedder: Pick<Embedder, 'model' | 'dimensions'>;
}

/** Warned once per process: a dedicated project without begin_session works, in more round trips. */
let legacyWarned = false;
/** Clients whose project records no owner, warned about once per process. */
const unownedWarned = new Set<string>();

/**
 * The one way a session is planned, for requestFunc and for the job: metadata + the platform's
 * record + the client's database (one round trip, begin_session) → what the session may do. The
 * metadata's hosting hint decides nothing (a difference is logged). Refusals (unknown client or
 * sidekick, a client not ready, a dedicated project recorded as another client's, a sidekick beyond
 * the limit, a conversation that is not this sidekick's and user's, no channel allowed) throw; a client database that cannot answer gives a
 * degraded plan instead, which requestFunc accepts and the job starts with.
 */
export async function planSession(
  metadata: JobMetadata,
  connections: ClientConnectionManager,
  log: Logger,
  opts: PlanOptions,
): Promise<PlannedSession> {
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
      'credential-like fields in job metadata were ignored (secrets never travel in metadata)',
    );
  }
  // The metadata's conversation_id is one to continue (it must be this sidekick's and user's); a
  // new conversation's id is always the worker's own, so no client can choose or probe ids.
  const newConversation = opts.claimConversation && !metadata.conversationId;
  const conversationId = metadata.conversationId ?? (newConversation ? randomUUID() : undefined);
  let start: SessionStart | undefined;
  try {
    start = await readSessionStart(
      connection.db,
      {
        clientId: connection.clientId,
        agentSlug: metadata.agentSlug,
        maxSidekicks: connection.features.max_sidekicks,
        userId: metadata.userId,
        conversationId,
        claimConversation: newConversation,
      },
      () => {
        if (legacyWarned) return;
        legacyWarned = true;
        log.warn(
          'this dedicated project has no begin_session function: sessions start in several round trips; apply migrations/dedicated to it',
        );
      },
    );
  } catch (err) {
    log.error(
      { reason: (err as Error).message },
      "the client's database did not answer at session start; the sidekick talks in degraded mode",
    );
  }
  if (start?.projectOwner && start.projectOwner !== connection.clientId) {
    throw new ProjectOwnedByAnotherClientError(connection.clientId, start.projectOwner);
  }
  if (start && start.projectOwner === null && !unownedWarned.has(connection.clientId)) {
    unownedWarned.add(connection.clientId);
    log.warn(
      `the dedicated project of client ${connection.clientId} records no owner (it predates the record): run \`sidekick clients verify --client ${connection.clientId}\` to record it, so that no other client can be pointed at this project`,
    );
  }
  if (start && !start.sidekick) {
    if (start.beyondLimit) {
      throw new SidekickLimitError(
        connection.clientId,
        metadata.agentSlug,
        connection.features.max_sidekicks ?? 0,
      );
    }
    throw new SidekickNotFoundError(connection.clientId, metadata.agentSlug);
  }
  const status = start?.conversation.status;
  if (status === 'other_sidekick' || status === 'other_user' || status === 'unknown') {
    throw new InvalidConversationError(conversationId!, status);
  }
  const plan = decideSession({
    clientId: connection.clientId,
    tier: connection.tier,
    features: connection.features,
    overridden: connection.overridden,
    // Degraded: its own prompt and greeting are in the unreachable database; a plain one talks meanwhile.
    sidekick: start?.sidekick ?? {
      id: null,
      name: metadata.agentSlug,
      slug: metadata.agentSlug,
      system_prompt: null,
      greeting: null,
      voice_settings: null,
      voice_chat_enabled: true,
      text_chat_enabled: true,
      video_chat_enabled: false,
      tools_config: null,
    },
  });
  const mismatch = start ? embeddingMismatch(start.embeddingModels, opts.embedder) : undefined;
  if (mismatch && plan.rag.enabled) {
    log.error(
      { documents: mismatch.documents, stored: mismatch.stored, worker: mismatch.worker },
      `${mismatch.reason}: run \`sidekick docs reembed --client ${connection.clientId} --agent ${metadata.agentSlug}\`, or configure the worker's embedder (EMBEDDING_*) to match`,
    );
    if (mismatch.all) plan.rag = { enabled: false, reason: mismatch.reason };
  }
  return {
    plan,
    connection,
    degraded: !start,
    conversationId: conversationId ?? randomUUID(),
    conversationClaimed: start?.conversation.claimed ?? false,
    conversationContinued: start?.conversation.status === 'continued',
    overview: start?.overview ?? {},
  };
}

/**
 * Documents embedded with a model (or size) other than the worker's: their vectors and the query's
 * live in different spaces, so retrieval would silently find nothing. Documents of unknown model
 * (loaded by other tools) are not counted. `all`: none of the sidekick's documents can be found.
 */
export function embeddingMismatch(
  stored: SessionStart['embeddingModels'],
  worker: Pick<Embedder, 'model' | 'dimensions'>,
): { reason: string; documents: number; all: boolean; stored: string[]; worker: string } | undefined {
  const describe = (m: string, d: number | null) => `${m}${d ? ` (${d} dimensions)` : ''}`;
  const known = stored.filter((s) => s.model !== null);
  const other = known.filter(
    (s) => s.model !== worker.model || (s.dimensions !== null && s.dimensions !== worker.dimensions),
  );
  if (!other.length) return undefined;
  const documents = other.reduce((n, s) => n + s.documents, 0);
  const models = other.map((s) => describe(s.model!, s.dimensions));
  const all = other.length === known.length && known.length === stored.length;
  return {
    reason: `${documents} of the sidekick's documents were embedded with ${models.join(', ')}, but this worker embeds queries with ${describe(worker.model, worker.dimensions)}`,
    documents,
    all,
    stored: models,
    worker: describe(worker.model, worker.dimensions),
  };
}
