/**
 * The signature every call to a client's endpoint carries, so the endpoint knows the call is ours
 * and recent: `X-Sidekick-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed
 * with the client's signing secret (`sidekick secrets signing-secret`). The README shows how an
 * endpoint verifies it; `verifySignature` is the same check, for our own tests and receivers.
 */

import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-sidekick-signature';

/** How far a signature's time may be from the receiver's clock (both ways), by default. */
export const SIGNATURE_TOLERANCE_S = 300;

function hmac(secret: string, timestamp: number, body: string): string {
  return createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
}

/** The header value for `body` signed at `nowMs`. */
export function signatureHeader(secret: string, body: string, nowMs: number = Date.now()): string {
  const t = Math.floor(nowMs / 1000);
  return `t=${t},v1=${hmac(secret, t, body)}`;
}

export type SignatureCheck =
  | { valid: true; timestamp: number }
  | { valid: false; reason: 'missing' | 'malformed' | 'stale' | 'mismatch' };

/**
 * Checks a signature header against the raw body: the HMAC matches (compared in constant time)
 * and the timestamp is within `toleranceS` of `nowMs`. Replays inside the window are the
 * receiver's to refuse (remember the v1 values it saw for the window's length).
 */
export function verifySignature(
  header: string | undefined | null,
  body: string,
  secret: string,
  opts: { nowMs?: number; toleranceS?: number } = {},
): SignatureCheck {
  if (!header) return { valid: false, reason: 'missing' };
  const parts = new Map(
    header.split(',').map((p) => {
      const i = p.indexOf('=');
      return [p.slice(0, i).trim(), p.slice(i + 1).trim()] as const;
    }),
  );
  const t = Number(parts.get('t'));
  const v1 = parts.get('v1') ?? '';
  if (!Number.isSafeInteger(t) || !/^[0-9a-f]{64}$/.test(v1)) return { valid: false, reason: 'malformed' };
  const now = Math.floor((opts.nowMs ?? Date.now()) / 1000);
  if (Math.abs(now - t) > (opts.toleranceS ?? SIGNATURE_TOLERANCE_S))
    return { valid: false, reason: 'stale' };
  const expected = Buffer.from(hmac(secret, t, body), 'hex');
  if (!timingSafeEqual(expected, Buffer.from(v1, 'hex'))) return { valid: false, reason: 'mismatch' };
  return { valid: true, timestamp: t };
}
