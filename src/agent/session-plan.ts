import type { Logger } from 'pino';
import type { ClientConnection, ClientConnectionManager } from '../tenancy/connections.js';
import type { TierFeatures } from '../tenancy/tiers.js';
import type { Tier } from '../tenancy/types.js';
import { NoChannelAllowedError, SidekickLimitError, SidekickNotFoundError } from './errors.js';
import type { JobMetadata } from './metadata.js';

/** A sidekick as stored in `agents` (pool or dedicated). */
export interface SidekickRow {
  id: string;
  name: string;
  slug: string;
  system_prompt: string | null;
  greeting: string | null;
  voice_settings: Record<string, unknown> | null;
  voice_chat_enabled: boolean | null;
  text_chat_enabled: boolean | null;
  video_chat_enabled: boolean | null;
}

export interface Decision {
  enabled: boolean;
  /** Why, in words an operator reading the log understands. */
  reason: string;
}

/** Everything the session may do, decided once before connecting, with the reason for each decision. */
export interface SessionPlan {
  clientId: string;
  tier: Tier;
  sidekick: { id: string; slug: string; name: string; instructions: string; greeting: string | null };
  audio: Decision;
  text: Decision;
  video: Decision;
  rag: Decision;
  voice: { name: string; custom: boolean; reason: string };
}

export interface PlanDefaults {
  /** The voice used when the tier does not allow the sidekick's own. */
  defaultVoice: string;
}

const DEFAULT_INSTRUCTIONS = 'You are a helpful voice assistant. Keep answers short and clear.';

/**
 * The tier gate, pure: the tier's features AND the sidekick's own switches decide each channel.
 * An adventurer never gets video, whatever its overrides say (the shared pool is not sized for it).
 */
export function decideSession(
  input: { clientId: string; tier: Tier; features: TierFeatures; sidekick: SidekickRow },
  defaults: PlanDefaults,
): SessionPlan {
  const { tier, features, sidekick: s } = input;
  const both = (feature: boolean, flag: boolean | null, what: string): Decision => {
    if (!feature) return { enabled: false, reason: `${what} is not part of the ${tier} tier` };
    if (flag !== true) return { enabled: false, reason: `${what} is switched off on the sidekick` };
    return { enabled: true, reason: `${what} allowed by the ${tier} tier and enabled on the sidekick` };
  };
  const audio = both(features.voice_chat_enabled, s.voice_chat_enabled, 'voice chat');
  const text = both(features.text_chat_enabled, s.text_chat_enabled, 'text chat');
  const video: Decision =
    tier === 'adventurer'
      ? { enabled: false, reason: 'video is never available to the adventurer tier' }
      : both(features.video_chat_enabled, s.video_chat_enabled, 'video chat');
  if (!audio.enabled && !text.enabled) {
    throw new NoChannelAllowedError(input.clientId, s.slug, `${audio.reason}; ${text.reason}`);
  }
  const rag: Decision = features.rag_enabled
    ? { enabled: true, reason: `document retrieval is part of the ${tier} tier` }
    : { enabled: false, reason: `document retrieval is not part of the ${tier} tier` };

  const wanted = typeof s.voice_settings?.voice === 'string' ? s.voice_settings.voice : undefined;
  const voice = !wanted
    ? { name: defaults.defaultVoice, custom: false, reason: 'the sidekick sets no voice' }
    : features.custom_voice_enabled
      ? { name: wanted, custom: true, reason: `custom voices are part of the ${tier} tier` }
      : {
          name: defaults.defaultVoice,
          custom: false,
          reason: `custom voices are not part of the ${tier} tier; using the default voice`,
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

const SIDEKICK_COLUMNS =
  'id, name, slug, system_prompt, greeting, voice_settings, voice_chat_enabled, text_chat_enabled, video_chat_enabled';

/**
 * Reads the sidekick and applies the tier gate. A sidekick beyond the client's `max_sidekicks`
 * (after a downgrade, say) is refused: the oldest ones stay usable. One database request when the
 * sidekick is allowed; a second only to explain a refusal.
 */
export async function loadSidekick(conn: ClientConnection, agentSlug: string): Promise<SidekickRow> {
  const max = conn.features.max_sidekicks;
  const agents = conn.db.from('agents');
  if (max === null) {
    const { data, error } = await agents.select(SIDEKICK_COLUMNS).eq('slug', agentSlug).maybeSingle();
    if (error) throw new Error(`reading sidekick "${agentSlug}": ${error.message}`);
    if (!data) throw new SidekickNotFoundError(conn.clientId, agentSlug);
    return data as unknown as SidekickRow;
  }
  const { data, error } = await agents
    .select(SIDEKICK_COLUMNS)
    .order('created_at', { ascending: true })
    .order('id', { ascending: true })
    .limit(max);
  if (error) throw new Error(`reading sidekicks: ${error.message}`);
  const found = (data as unknown as SidekickRow[]).find((a) => a.slug === agentSlug);
  if (found) return found;
  const exists = await conn.db.from('agents').select('id').eq('slug', agentSlug).maybeSingle();
  // A database that cannot answer is not a reason to call the sidekick unknown.
  if (exists.error) throw new Error(`reading sidekick ${agentSlug}: ${exists.error.message}`);
  if (exists.data) throw new SidekickLimitError(conn.clientId, agentSlug, max);
  throw new SidekickNotFoundError(conn.clientId, agentSlug);
}

export interface PlannedSession {
  plan: SessionPlan;
  connection: ClientConnection;
}

/** Metadata + the platform's record → what this session may do. The metadata's hosting hint decides nothing. */
export async function buildSessionPlan(
  metadata: JobMetadata,
  connections: ClientConnectionManager,
  defaults: PlanDefaults,
  log?: Logger,
): Promise<PlannedSession> {
  const connection = await connections.forClient(metadata.clientId);
  if (metadata.hostingTypeHint && metadata.hostingTypeHint !== connection.hostingType) {
    log?.warn(
      { hint: metadata.hostingTypeHint, platform: connection.hostingType },
      'job metadata hosting_type differs from the platform record; using the platform record',
    );
  }
  if (metadata.ignoredCredentialFields.length) {
    log?.warn({ fields: metadata.ignoredCredentialFields }, 'credential-like fields in job metadata ignored');
  }
  const sidekick = await loadSidekick(connection, metadata.agentSlug);
  const plan = decideSession(
    { clientId: connection.clientId, tier: connection.tier, features: connection.features, sidekick },
    defaults,
  );
  return { plan, connection };
}
