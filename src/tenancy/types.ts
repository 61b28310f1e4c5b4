/**
 * The tenancy vocabulary: branded ids, tiers and hosting types.
 *
 * Ids are brands over string so a client id can never be passed where an agent id is expected;
 * the only way to make one is a constructor below, which checks the uuid shape and lower-cases
 * it (Postgres prints uuids in lower case, and cache keys compare strings).
 */

declare const brand: unique symbol;

/** A string that has been checked to be a canonical (lower-case) uuid of kind `B`. */
export type Uuid<B extends string> = string & { readonly [brand]: B };

export type ClientId = Uuid<'ClientId'>;
export type ConversationId = Uuid<'ConversationId'>;
export type UserId = Uuid<'UserId'>;

const UUID_SHAPE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID_SHAPE.test(value);
}

function uuidOf<B extends string>(value: unknown, field: string): Uuid<B> {
  if (!isUuid(value)) {
    // The value itself is not echoed: ids arrive from job metadata, which is untrusted input.
    const got = typeof value === 'string' ? `a string of length ${value.length}` : typeof value;
    throw new TypeError(`${field}: expected a uuid (8-4-4-4-12 hex digits), got ${got}`);
  }
  return value.toLowerCase() as Uuid<B>;
}

/** `field` names the input in the error, e.g. 'metadata.client_id'. */
export function asClientId(value: unknown, field = 'client_id'): ClientId {
  return uuidOf<'ClientId'>(value, field);
}

export function asConversationId(value: unknown, field = 'conversation_id'): ConversationId {
  return uuidOf<'ConversationId'>(value, field);
}

export function asUserId(value: unknown, field = 'user_id'): UserId {
  return uuidOf<'UserId'>(value, field);
}

/** Ordered from least to most privileged. */
export const TIERS = ['adventurer', 'champion', 'paragon'] as const;
export type Tier = (typeof TIERS)[number];

export const HOSTING_TYPES = ['shared', 'dedicated'] as const;
export type HostingType = (typeof HOSTING_TYPES)[number];

export function isTier(value: unknown): value is Tier {
  return typeof value === 'string' && (TIERS as readonly string[]).includes(value);
}
