/**
 * What each tier may do: the feature table, a client's overrides (platform `clients.tier_features`)
 * merged over it, and limit checks.
 */

import { type HostingType, isTier, type Tier } from './types.js';

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

export const LIMIT_NAMES = ['max_sidekicks', 'max_documents', 'max_document_size_mb'] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];

/** A limit is a non-negative integer, or null for unlimited. */
export type Limit = number | null;

export type TierFeatures = { readonly [F in BooleanFeature]: boolean } & { readonly [L in LimitName]: Limit };

/** Where each tier's data lives (the platform database's check constraints say the same). */
export const TIER_HOSTING: Readonly<Record<Tier, HostingType>> = Object.freeze({
  adventurer: 'shared',
  champion: 'dedicated',
  paragon: 'dedicated',
});

/** The tier an unknown or missing tier is treated as: the least privileged. */
export const FALLBACK_TIER: Tier = 'adventurer';

export const TIER_FEATURES: Readonly<Record<Tier, TierFeatures>> = Object.freeze({
  adventurer: Object.freeze({
    max_sidekicks: 1,
    max_documents: 50,
    max_document_size_mb: 5,
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
 * Limits that overrides cannot change, because the platform database enforces them and the worker
 * must not believe otherwise: an adventurer lives in the shared pool with exactly one sidekick
 * (`clients` check constraint on tier = 'adventurer').
 */
const FIXED_LIMITS: Readonly<Partial<Record<Tier, Partial<Record<LimitName, Limit>>>>> = Object.freeze({
  adventurer: Object.freeze({ max_sidekicks: 1 }),
});

export type FeatureWarn = (msg: string, fields: Record<string, unknown>) => void;

const isBooleanFeature = (key: string): key is BooleanFeature =>
  (BOOLEAN_FEATURES as readonly string[]).includes(key);
const isLimitName = (key: string): key is LimitName => (LIMIT_NAMES as readonly string[]).includes(key);
const isLimit = (value: unknown): value is Limit =>
  value === null || (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0);

const describeType = (value: unknown): string =>
  value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;

/**
 * The features a client has: its tier's defaults with its overrides merged over them.
 *
 * Decision: an override is the operator's explicit grant, so it applies in either direction
 * (an adventurer may be granted video, a champion may have RAG switched off), except for the
 * limits in FIXED_LIMITS, which the database enforces and which therefore stay.
 * Bad input never fails the session: an unknown key or a value of the wrong type is dropped, an
 * unknown tier gets the least-privileged features, and each such case is reported through `warn`
 * with the key, so the operator can fix the row.
 */
export function resolveFeatures(tier: string, overrides: unknown, warn: FeatureWarn): TierFeatures {
  let effectiveTier: Tier = FALLBACK_TIER;
  if (isTier(tier)) {
    effectiveTier = tier;
  } else {
    warn('unknown tier: using the least-privileged features', { tier, used: FALLBACK_TIER });
  }

  const features: { -readonly [K in keyof TierFeatures]: TierFeatures[K] } = {
    ...TIER_FEATURES[effectiveTier],
  };

  if (overrides !== null && overrides !== undefined) {
    if (typeof overrides !== 'object' || Array.isArray(overrides)) {
      warn('tier_features is not a JSON object: ignoring every override', {
        tier: effectiveTier,
        got: describeType(overrides),
      });
    } else {
      for (const [key, value] of Object.entries(overrides)) {
        if (isBooleanFeature(key)) {
          if (typeof value === 'boolean') features[key] = value;
          else warnDropped(warn, effectiveTier, key, 'a boolean', value);
        } else if (isLimitName(key)) {
          if (isLimit(value)) features[key] = value;
          else warnDropped(warn, effectiveTier, key, 'a non-negative integer or null (unlimited)', value);
        } else {
          warn('tier_features override dropped: unknown feature', { tier: effectiveTier, key });
        }
      }
    }
  }

  const fixed = FIXED_LIMITS[effectiveTier] ?? {};
  for (const limit of LIMIT_NAMES) {
    const pinned = fixed[limit];
    if (pinned !== undefined && features[limit] !== pinned) {
      warn('tier_features override ignored: this limit is fixed for the tier by the platform database', {
        tier: effectiveTier,
        key: limit,
        fixed: pinned,
      });
      features[limit] = pinned;
    }
  }

  return Object.freeze(features);
}

function warnDropped(warn: FeatureWarn, tier: Tier, key: string, expected: string, value: unknown): void {
  warn('tier_features override dropped: wrong type', { tier, key, expected, got: describeType(value) });
}

export function mayUse(features: TierFeatures, feature: BooleanFeature): boolean {
  return features[feature] === true;
}

/** null = unlimited. */
export function limitOf(features: TierFeatures, limit: LimitName): Limit {
  return features[limit];
}

/**
 * Whether `count` is within the limit (count <= limit; unlimited always is). To ask whether one more
 * may be added, pass the count after adding it: `withinLimit(f, 'max_sidekicks', existing + 1)`.
 */
export function withinLimit(features: TierFeatures, limit: LimitName, count: number): boolean {
  if (!Number.isFinite(count) || count < 0) {
    throw new RangeError(`withinLimit(${limit}): count must be a non-negative number, got ${count}`);
  }
  const max = features[limit];
  return max === null || count <= max;
}
