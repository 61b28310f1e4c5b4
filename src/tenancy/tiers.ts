/**
 * The tier gate's one source of truth: what each tier may do and how much of it, a client's
 * overrides (platform `clients.tier_features`, `clients.max_sidekicks`) merged over it, and the
 * facts no override can change because the platform database enforces them.
 */

import { type HostingType, isTier, TIERS, type Tier } from './types.js';

export const BOOLEAN_FEATURES = [
  'text_chat_enabled',
  'rag_enabled',
  'voice_chat_enabled',
  'video_chat_enabled',
  'custom_voice_enabled',
  'api_access_enabled',
  'priority_support',
  'white_label',
  'custom_integrations',
  'dedicated_support_channel',
] as const;
export type BooleanFeature = (typeof BOOLEAN_FEATURES)[number];

export const LIMIT_NAMES = [
  'max_sidekicks',
  'max_documents',
  'max_document_size_mb',
  /** HTTP tools (and MCP servers) one sidekick may have. */
  'max_tools',
  /** Days transcripts and conversations are kept; the retention sweep deletes older ones. */
  'transcript_retention_days',
  /** Sessions of one client at once, across every worker (a lease each in the platform database). */
  'max_concurrent_sessions',
  /** Session minutes per calendar month (UTC), from the usage ledger. */
  'max_session_minutes',
] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];

export type FeatureName = BooleanFeature | LimitName;

/** A limit is a non-negative integer, or null for unlimited. */
export type Limit = number | null;

export type TierFeatures = { readonly [F in BooleanFeature]: boolean } & { readonly [L in LimitName]: Limit };

/** Where each tier's data lives (the platform database's check constraints say the same). */
export const TIER_HOSTING = Object.freeze({
  adventurer: 'shared',
  champion: 'dedicated',
  paragon: 'dedicated',
} as const satisfies Record<Tier, HostingType>);

/** The tiers whose data lives in a dedicated project: what a tier move can go to. */
export type DedicatedTier = { [T in Tier]: (typeof TIER_HOSTING)[T] extends 'dedicated' ? T : never }[Tier];
export const DEDICATED_TIERS: readonly DedicatedTier[] = Object.freeze(
  TIERS.filter((t): t is DedicatedTier => TIER_HOSTING[t] === 'dedicated'),
);

/** The tier an unknown or missing tier is treated as: the least privileged. */
export const FALLBACK_TIER: Tier = 'adventurer';

export const TIER_FEATURES: Readonly<Record<Tier, TierFeatures>> = Object.freeze({
  adventurer: Object.freeze({
    max_sidekicks: 1,
    max_documents: 50,
    max_document_size_mb: 5,
    max_tools: 2,
    transcript_retention_days: 30,
    max_concurrent_sessions: 2,
    max_session_minutes: 600,
    text_chat_enabled: true,
    rag_enabled: true,
    voice_chat_enabled: true,
    video_chat_enabled: false,
    custom_voice_enabled: false,
    api_access_enabled: false,
    priority_support: false,
    white_label: false,
    custom_integrations: false,
    dedicated_support_channel: false,
  }),
  champion: Object.freeze({
    max_sidekicks: null,
    max_documents: null,
    max_document_size_mb: 50,
    max_tools: 20,
    transcript_retention_days: 365,
    max_concurrent_sessions: 20,
    max_session_minutes: 20_000,
    text_chat_enabled: true,
    rag_enabled: true,
    voice_chat_enabled: true,
    video_chat_enabled: true,
    custom_voice_enabled: true,
    api_access_enabled: true,
    priority_support: false,
    white_label: false,
    custom_integrations: false,
    dedicated_support_channel: false,
  }),
  paragon: Object.freeze({
    max_sidekicks: null,
    max_documents: null,
    max_document_size_mb: null,
    max_tools: null,
    transcript_retention_days: null,
    max_concurrent_sessions: null,
    max_session_minutes: null,
    text_chat_enabled: true,
    rag_enabled: true,
    voice_chat_enabled: true,
    video_chat_enabled: true,
    custom_voice_enabled: true,
    api_access_enabled: true,
    priority_support: true,
    white_label: true,
    custom_integrations: true,
    dedicated_support_channel: true,
  }),
});

/**
 * Facts that overrides cannot change, because the platform database enforces them and the worker
 * must not believe otherwise: an adventurer lives in the shared pool with exactly one sidekick
 * (`clients` check constraint on tier = 'adventurer', and the pool's sidekick-limit trigger).
 */
const FIXED: Readonly<Partial<Record<Tier, Partial<TierFeatures>>>> = Object.freeze({
  adventurer: Object.freeze({ max_sidekicks: 1 }),
});

/** What a client may do, and which of it comes from its own overrides rather than its tier. */
export interface ClientFeatures {
  /** The tier the features are those of: the stored one, or FALLBACK_TIER when it is unknown. */
  readonly tier: Tier;
  readonly features: TierFeatures;
  /** Features a per-client override set to something other than the tier's default. */
  readonly overridden: ReadonlySet<FeatureName>;
}

export type FeatureWarn = (msg: string, fields: Record<string, unknown>) => void;

const isBooleanFeature = (key: string): key is BooleanFeature =>
  (BOOLEAN_FEATURES as readonly string[]).includes(key);
const isLimitName = (key: string): key is LimitName => (LIMIT_NAMES as readonly string[]).includes(key);
const isLimit = (value: unknown): value is Limit =>
  value === null || (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0);

const describeType = (value: unknown): string =>
  value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;

/** A stored tier as the gate reads it: an unknown one (a typo, a tier from the future) is the least privileged. */
export function effectiveTier(stored: string | null | undefined, warn: FeatureWarn): Tier {
  if (isTier(stored)) return stored;
  warn('unknown tier: using the least-privileged features', { tier: stored, used: FALLBACK_TIER });
  return FALLBACK_TIER;
}

/**
 * The features a client has: its tier's defaults, with its overrides merged over them.
 *
 * Decision: an override is the operator's explicit grant, so it applies in either direction (an
 * adventurer may be granted video, a champion may have RAG switched off), except for the FIXED
 * facts the database enforces. `maxSidekicks` is `clients.max_sidekicks`, the platform's own
 * column for that limit; when set it wins over `tier_features.max_sidekicks`.
 * Bad input never fails a session: an unknown key or a value of the wrong type is dropped, and
 * each such case is reported through `warn` with the key, so the operator can fix the row.
 */
export function resolveFeatures(
  client: { tier: string | null | undefined; tierFeatures: unknown; maxSidekicks?: number | null },
  warn: FeatureWarn,
): ClientFeatures {
  const tier = effectiveTier(client.tier, warn);
  const defaults = TIER_FEATURES[tier];
  const features: { -readonly [K in FeatureName]: TierFeatures[K] } = { ...defaults };

  const overrides = client.tierFeatures;
  if (overrides !== null && overrides !== undefined) {
    if (typeof overrides !== 'object' || Array.isArray(overrides)) {
      warn('tier_features is not a JSON object: ignoring every override', {
        tier,
        got: describeType(overrides),
      });
    } else {
      for (const [key, value] of Object.entries(overrides)) {
        if (isBooleanFeature(key)) {
          if (typeof value === 'boolean') features[key] = value;
          else warnDropped(warn, tier, key, 'a boolean', value);
        } else if (isLimitName(key)) {
          if (isLimit(value)) features[key] = value;
          else warnDropped(warn, tier, key, 'a non-negative integer or null (unlimited)', value);
        } else {
          warn('tier_features override dropped: unknown feature', { tier, key });
        }
      }
    }
  }
  if (client.maxSidekicks !== undefined && client.maxSidekicks !== null) {
    features.max_sidekicks = client.maxSidekicks;
  }

  for (const [key, pinned] of Object.entries(FIXED[tier] ?? {}) as Array<[FeatureName, boolean | Limit]>) {
    if (features[key] !== pinned) {
      warn('tier_features override ignored: this is fixed for the tier by the platform database', {
        tier,
        key,
        fixed: pinned,
      });
      (features as Record<FeatureName, boolean | Limit>)[key] = pinned;
    }
  }

  const overridden = new Set(
    (Object.keys(features) as FeatureName[]).filter((k) => features[k] !== defaults[k]),
  );
  return Object.freeze({ tier, features: Object.freeze(features), overridden });
}

function warnDropped(warn: FeatureWarn, tier: Tier, key: string, expected: string, value: unknown): void {
  warn('tier_features override dropped: wrong type', { tier, key, expected, got: describeType(value) });
}

/** The feature names a client's overrides may set for this tier (what FIXED holds is not among them). */
export function overridableFeatures(tier: Tier): FeatureName[] {
  const fixed = FIXED[tier] ?? {};
  return [...BOOLEAN_FEATURES, ...LIMIT_NAMES].filter((f) => !(f in fixed));
}

/**
 * What is wrong with overrides an operator is about to write (`--features`): each unknown key, value
 * of the wrong type, or fixed fact it would try to change, in words naming the key. Sessions never
 * fail on such a row (resolveFeatures drops what is wrong, with a warning); writing one is refused.
 */
export function tierFeatureProblems(tier: Tier, overrides: unknown): string[] {
  const problems: string[] = [];
  resolveFeatures({ tier, tierFeatures: overrides }, (msg, fields) => {
    const key = typeof fields.key === 'string' ? fields.key : undefined;
    const detail =
      fields.expected !== undefined ? `expected ${String(fields.expected)}, got ${String(fields.got)}` : msg;
    problems.push(key ? `${key}: ${detail}` : detail);
  });
  return problems;
}
