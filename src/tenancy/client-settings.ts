import { isSupportedCountry } from 'libphonenumber-js';
import { z } from 'zod';

/**
 * What a client chose for the aftermath of its sessions (platform `clients.settings`, one JSON
 * object): where the end-of-session webhook goes and whether it carries the transcript, whether
 * the sidekick keeps a memory of each caller, and whether what is stored is redacted.
 *
 * Read key by key: one bad value never costs the others, and never fails a session. A key that is
 * absent takes its default; a key that is present but unreadable takes its *safe* value instead
 * (redaction on, memory off, no transcript in the webhook, no webhook), since the client meant
 * something by it and the worker cannot tell what. Each such key is reported through `warn`.
 */

export const REDACTION_MODES = ['off', 'mask'] as const;
export type RedactionMode = (typeof REDACTION_MODES)[number];

export interface ClientSettings {
  /** Where the signed end-of-session report is POSTed; null: no webhook. */
  readonly webhook_url: string | null;
  /** The webhook carries the stored (redacted) transcript. */
  readonly webhook_transcript: boolean;
  /** After a session with a user_id, facts the user stated are merged into their overview. */
  readonly memory: boolean;
  /** What is stored (transcripts, their embeddings, summaries, overviews) has PII masked. */
  readonly redaction: RedactionMode;
  /** Region (ISO 3166 alpha-2) that phone numbers written without a +country code are read in. */
  readonly phone_region: string;
}

/** A webhook URL: http(s), no credentials in it (the signature authenticates the worker). */
export const webhookUrlSchema = z
  .string()
  .max(2000, 'at most 2000 characters')
  .refine((v) => {
    try {
      const u = new URL(v);
      return (u.protocol === 'https:' || u.protocol === 'http:') && !u.username && !u.password;
    } catch {
      return false;
    }
  }, 'expected an http(s) URL without user:password');

const FIELDS = {
  webhook_url: webhookUrlSchema.nullable(),
  webhook_transcript: z.boolean(),
  memory: z.boolean(),
  redaction: z.enum(REDACTION_MODES),
  phone_region: z
    .string()
    .regex(/^[A-Z]{2}$/, 'expected a two-letter region code, e.g. US or GB')
    .refine(isSupportedCountry, 'expected a region phone numbers are known for, e.g. US or GB'),
} satisfies { [K in keyof ClientSettings]: z.ZodType<ClientSettings[K]> };

export type SettingName = keyof ClientSettings;
export const SETTING_NAMES = Object.freeze(Object.keys(FIELDS) as SettingName[]);

export const DEFAULT_SETTINGS: ClientSettings = Object.freeze({
  webhook_url: null,
  webhook_transcript: false,
  memory: true,
  redaction: 'off',
  phone_region: 'US',
});

/** What an unreadable value is read as: the choice that stores and sends the least. */
const SAFE_SETTINGS: ClientSettings = Object.freeze({
  ...DEFAULT_SETTINGS,
  memory: false,
  redaction: 'mask',
});

export type SettingsWarn = (msg: string, fields: Record<string, unknown>) => void;

/** The stored settings as the worker uses them (never throws). */
export function readClientSettings(stored: unknown, warn: SettingsWarn): ClientSettings {
  if (stored === null || stored === undefined) return DEFAULT_SETTINGS;
  if (typeof stored !== 'object' || Array.isArray(stored)) {
    warn('clients.settings is not a JSON object: every setting at its safe value', {
      used: SAFE_SETTINGS,
    });
    return SAFE_SETTINGS;
  }
  const out: Record<string, unknown> = { ...DEFAULT_SETTINGS };
  for (const [key, value] of Object.entries(stored)) {
    const field = FIELDS[key as SettingName];
    if (!field) {
      warn('clients.settings: unknown setting ignored', { key });
      continue;
    }
    const parsed = field.safeParse(value);
    if (parsed.success) out[key] = parsed.data;
    else {
      out[key] = SAFE_SETTINGS[key as SettingName];
      warn('clients.settings: unreadable value, using the safe one', {
        key,
        problem: parsed.error.issues[0]?.message,
        used: out[key],
      });
    }
  }
  return Object.freeze(out as unknown as ClientSettings);
}

/** A change an operator asks for, checked strictly: the error names the setting and what it takes. */
export function checkSettingsPatch(patch: Partial<Record<SettingName, unknown>>): Partial<ClientSettings> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === undefined) continue;
    const field = FIELDS[key as SettingName];
    if (!field) throw new InvalidSettingError(key, `unknown setting (known: ${SETTING_NAMES.join(', ')})`);
    const parsed = field.safeParse(value);
    if (!parsed.success) throw new InvalidSettingError(key, parsed.error.issues[0]?.message ?? 'invalid');
    out[key] = parsed.data;
  }
  return out as Partial<ClientSettings>;
}

export class InvalidSettingError extends Error {
  constructor(
    readonly setting: string,
    problem: string,
  ) {
    super(`${setting}: ${problem}`);
    this.name = 'InvalidSettingError';
  }
}
