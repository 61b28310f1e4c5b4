import cardValidator from 'card-validator';
import { electronicFormatIBAN, isValidIBAN } from 'ibantools';
import { type CountryCode, findPhoneNumbersInText, isSupportedCountry } from 'libphonenumber-js/max';
import type { ClientSettings } from '../tenancy/client-settings.js';

/**
 * PII masking of what is stored (transcript rows and the text their embeddings are made of,
 * summaries, overviews). The live conversation is never altered: the session's own history keeps
 * what was said; only what leaves it for storage goes through here.
 *
 * Covered, each replaced by a marker that says what was there:
 *   e-mail addresses        name@domain.tld, and the spoken form "name at domain dot com"  → [email]
 *   phone numbers           libphonenumber-js (Google's metadata, full "max" set): numbers valid for
 *                           their region, +international anywhere, national ones in the client's
 *                           phone_region                                                      → [phone]
 *   payment card numbers    13-19 digits, spaces or dashes between groups, that card-validator
 *                           accepts (a known brand's prefix and length, and the Luhn check)  → [card]
 *   IBANs                   2 letters, 2 check digits, up to 30 more, grouped or not, valid by
 *                           ibantools (per-country length and the mod-97 checksum)         → [iban]
 * Not covered: numbers spoken as words ("four one one one ..."), phone numbers that are not valid
 * for any region (e.g. fictional 555-01xx), local numbers of another region than phone_region
 * written without +country code, card numbers of brands card-validator does not know, postal
 * addresses, names, dates of birth, national id numbers.
 * Ordinary numbers (prices, years, distances, order numbers that fail these checks) stay as they are.
 */

export type PiiKind = 'email' | 'phone' | 'card' | 'iban';
const MARKER: Record<PiiKind, string> = {
  email: '[email]',
  phone: '[phone]',
  card: '[card]',
  iban: '[iban]',
};

export interface Redaction {
  text: string;
  /** How many of each kind were masked. */
  found: Record<PiiKind, number>;
}

export type Redactor = (text: string) => Redaction;

const EMAIL = /[\p{L}\p{N}._%+-]+@[\p{L}\p{N}-]+(?:\.[\p{L}\p{N}-]+)*\.\p{L}{2,}/gu;
// What speech-to-text writes for a spoken address: "jane dot doe at example dot com".
const TLD = 'com|org|net|edu|gov|io|co|uk|de|fr|nl|es|it|ca|au|ch|be|at|se|no|dk|ie|info|biz|me|us|eu';
const SPOKEN_EMAIL = new RegExp(
  `\\b[\\p{L}\\p{N}]+(?:\\s+dot\\s+[\\p{L}\\p{N}]+)*\\s+at\\s+[\\p{L}\\p{N}-]+(?:\\s+dot\\s+[\\p{L}\\p{N}-]+)*\\s+dot\\s+(?:${TLD})\\b`,
  'giu',
);
// Card: 13-19 digits, optionally in groups split by one space or dash.
const CARD = /\b\d(?:[ -]?\d){12,18}\b/g;
// IBAN: country, check digits, then 11-30 capitals or digits, grouped by single spaces or not.
const IBAN = /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b/g;

/** A redactor for a client's settings; `undefined` when its redaction is off (store as said). */
export function redactorFor(
  settings: Pick<ClientSettings, 'redaction' | 'phone_region'>,
): Redactor | undefined {
  if (settings.redaction !== 'mask') return undefined;
  const region = isSupportedCountry(settings.phone_region) ? (settings.phone_region as CountryCode) : 'US';
  return (text) => maskPii(text, region);
}

/** Masks every covered kind in `text`, reading national phone numbers in `region`. */
export function maskPii(text: string, region: CountryCode): Redaction {
  const found: Record<PiiKind, number> = { email: 0, phone: 0, card: 0, iban: 0 };
  const mask = (kind: PiiKind) => {
    found[kind]++;
    return MARKER[kind];
  };
  // Longest, most specific patterns first: an IBAN or a card number also contains digit runs that
  // a phone number parser might take for one.
  let out = text.replace(EMAIL, () => mask('email')).replace(SPOKEN_EMAIL, () => mask('email'));
  out = out.replace(IBAN, (m) => {
    // The match may run on into a following capitalised word: the longest valid prefix of groups.
    const groups = m.split(' ');
    for (let n = groups.length; n > 0; n--) {
      const iban = electronicFormatIBAN(groups.slice(0, n).join(''));
      if (iban && isValidIBAN(iban)) return [mask('iban'), ...groups.slice(n)].join(' ');
    }
    return m;
  });
  out = out.replace(CARD, (m) => (cardValidator.number(m.replace(/[ -]/g, '')).isValid ? mask('card') : m));
  out = maskPhones(out, region, () => mask('phone'));
  return { text: out, found };
}

function maskPhones(text: string, region: CountryCode, mask: () => string): string {
  const spans = findPhoneNumbersInText(text, { defaultCountry: region });
  if (!spans.length) return text;
  let out = '';
  let at = 0;
  for (const s of spans) {
    out += text.slice(at, s.startsAt) + mask();
    at = s.endsAt;
  }
  return out + text.slice(at);
}

/**
 * The transcript store's hook: the turn as it should be stored. When masking changed the text, a
 * vector the caller made of the original text (the turn's context lookup) is dropped, so the row
 * is embedded again from what is stored.
 */
export function redactTurn<T extends { content: string }>(redact: Redactor, turn: T): T {
  const { text } = redact(turn.content);
  if (text === turn.content) return turn;
  const { embedding: _unredacted, ...rest } = turn as T & { embedding?: unknown };
  return { ...rest, content: text } as T;
}

/** Masks every string inside a JSON value (summaries, overview sections). */
export function redactDeep<T>(redact: Redactor, value: T): T {
  if (typeof value === 'string') return redact(value).text as T;
  if (Array.isArray(value)) return value.map((v) => redactDeep(redact, v)) as T;
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactDeep(redact, v)])) as T;
  }
  return value;
}
