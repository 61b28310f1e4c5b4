import type { TenantQuery } from './tenant-query.js';
import { isUuid } from './types.js';

/** A sidekick as stored in `agents` (the same columns in the pool and in a dedicated project). */
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
  /** The sidekick's tools (HTTP actions, MCP servers), as stored; validated where they are used. */
  tools_config: unknown;
}

export const SIDEKICK_COLUMNS =
  'id, name, slug, system_prompt, greeting, voice_settings, voice_chat_enabled, text_chat_enabled, video_chat_enabled, tools_config';

/** The client's database did not answer a sidekick lookup (as opposed to: there is no such sidekick). */
export class SidekickLookupError extends Error {
  constructor(
    ref: string,
    detail: string,
    readonly code: string | undefined,
  ) {
    super(`reading the sidekick with ${ref}: ${detail}`);
    this.name = 'SidekickLookupError';
  }
}

/**
 * The slug rule, one place for the job-metadata contract (agent_slug) and `sidekick agents create`:
 * letters, digits, "-" or "_", starting with a letter or digit, at most 100 characters.
 */
export const SIDEKICK_SLUG = /^[a-z0-9][a-z0-9_-]{0,99}$/i;
export const SIDEKICK_SLUG_RULE = 'letters, digits, "-" or "_", starting with a letter or digit, at most 100';

export function isSidekickSlug(value: unknown): value is string {
  return typeof value === 'string' && SIDEKICK_SLUG.test(value);
}

export type SidekickRef = { slug: string } | { id: string };

/** What an operator typed (`--agent`): an id when it is a uuid, else a slug. */
export function sidekickRef(input: string): SidekickRef {
  return isUuid(input) ? { id: input } : { slug: input };
}

export function describeRef(ref: SidekickRef): string {
  return 'id' in ref ? `id "${ref.id}"` : `slug "${ref.slug}"`;
}

/**
 * One of the client's sidekicks, or null when there is none. The client is the TenantQuery's: in
 * the pool only its own rows are visible.
 */
export async function findSidekick(db: TenantQuery, ref: SidekickRef): Promise<SidekickRow | null> {
  const [column, value] = 'id' in ref ? ['id', ref.id] : ['slug', ref.slug];
  const { data, error } = await db.from('agents').select(SIDEKICK_COLUMNS).eq(column, value).maybeSingle();
  if (error) {
    throw new SidekickLookupError(
      describeRef(ref),
      error.message || 'request failed',
      error.code || undefined,
    );
  }
  return (data as unknown as SidekickRow | null) ?? null;
}
