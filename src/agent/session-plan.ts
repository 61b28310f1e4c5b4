import type { Logger } from 'pino';
import type { ClientConnection, ClientConnectionManager } from '../tenancy/connections.js';
import { findSidekick, SIDEKICK_COLUMNS, type SidekickRow } from '../tenancy/sidekicks.js';
import type { FeatureName, TierFeatures } from '../tenancy/tiers.js';
import type { Tier } from '../tenancy/types.js';
import {
  NoChannelAllowedError,
  SessionRefusedError,
  SidekickLimitError,
  SidekickNotFoundError,
} from './errors.js';
import type { JobMetadata } from './metadata.js';

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
  };
}

/**
 * Reads the sidekick and applies the client's sidekick limit: a sidekick beyond `max_sidekicks`
 * (after a downgrade, say) is refused, the oldest ones stay usable. One database request when the
 * sidekick is allowed; a second only to explain a refusal.
 */
export async function loadSidekick(conn: ClientConnection, agentSlug: string): Promise<SidekickRow> {
  const max = conn.features.max_sidekicks;
  if (max === null) {
    const found = await findSidekick(conn.db, { slug: agentSlug });
    if (!found) throw new SidekickNotFoundError(conn.clientId, agentSlug);
    return found;
  }
  const { data, error } = await conn.db
    .from('agents')
    .select(SIDEKICK_COLUMNS)
    .order('created_at', { ascending: true })
    .order('id', { ascending: true })
    .limit(max);
  if (error) throw new Error(`reading sidekicks: ${error.message}`);
  const found = (data as unknown as SidekickRow[]).find((a) => a.slug === agentSlug);
  if (found) return found;
  // A database that cannot answer is not a reason to call the sidekick unknown (findSidekick throws).
  if (await findSidekick(conn.db, { slug: agentSlug })) {
    throw new SidekickLimitError(conn.clientId, agentSlug, max);
  }
  throw new SidekickNotFoundError(conn.clientId, agentSlug);
}

export interface PlannedSession {
  plan: SessionPlan;
  connection: ClientConnection;
  /**
   * The client's database could not be read: the plan's sidekick is a plain stand-in of that slug
   * (its own prompt and greeting are in the unreachable database), and the session talks anyway.
   */
  degraded: boolean;
}

/**
 * The one way a session is planned, for requestFunc and for the job: metadata + the platform's
 * record → what the session may do. The metadata's hosting hint decides nothing (a difference is
 * logged). Refusals (unknown client or sidekick, a client not ready, a sidekick beyond the limit,
 * no channel allowed) throw; a client database that cannot answer gives a degraded plan instead,
 * which requestFunc accepts and the job starts with.
 */
export async function planSession(
  metadata: JobMetadata,
  connections: ClientConnectionManager,
  log: Logger,
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
  let sidekick: PlannedSidekick;
  let degraded = false;
  try {
    sidekick = await loadSidekick(connection, metadata.agentSlug);
  } catch (err) {
    if (err instanceof SessionRefusedError) throw err;
    degraded = true;
    log.error(
      { reason: (err as Error).message },
      "the client's database did not answer at session start; the sidekick talks in degraded mode",
    );
    sidekick = {
      id: null,
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
  const plan = decideSession({
    clientId: connection.clientId,
    tier: connection.tier,
    features: connection.features,
    overridden: connection.overridden,
    sidekick,
  });
  return { plan, connection, degraded };
}
