/**
 * The webhook's one seam to the outbound module (src/outbound: the address guard, timeouts, the
 * size cap, the HMAC signature) and to where the client's signing secret lives. Everything else in
 * webhook.ts depends on these two interfaces only.
 */

import { type OutboundClient, OutboundError } from '../outbound/index.js';

export interface WebhookTransport {
  /** POSTs `body` (JSON) signed with `signingSecret`; resolves with the answer's status, whatever it is. */
  post(
    url: string,
    body: string,
    opts: {
      signingSecret: string;
      headers: Record<string, string>;
      timeoutMs: number;
      signal?: AbortSignal | undefined;
    },
  ): Promise<{ status: number }>;
}

/** The client's signing secret (the one its tool calls are signed with); null when it has none. */
export interface SigningSecrets {
  signingSecret(clientId: string): Promise<string | null>;
}

/** No answer from the endpoint: `retryable` false when waiting cannot help (a refused address, a bad URL). */
export class WebhookUnreachableError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'WebhookUnreachableError';
  }
}

/** The outbound module as the webhook's transport: the guard, the deadline, the cap, the signature. */
export function outboundTransport(client: OutboundClient): WebhookTransport {
  return {
    async post(url, body, opts) {
      try {
        const res = await client.request(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...opts.headers },
          body,
          signWith: opts.signingSecret,
          timeoutMs: opts.timeoutMs,
          // The answer is not read beyond its status: a little is enough.
          maxBytes: 4096,
          maxRedirects: 0,
          signal: opts.signal,
        });
        return { status: res.status };
      } catch (err) {
        if (!(err instanceof OutboundError)) throw err;
        const permanent =
          err.kind === 'refused' || err.kind === 'invalid_request' || err.kind === 'too_many_redirects';
        throw new WebhookUnreachableError(`webhook ${err.kind}: ${err.message}`, !permanent);
      }
    },
  };
}

/**
 * The client's signing secret from the secrets store (src/secrets: `signingSecret(clientId)` makes
 * one on first use, the same one its tool calls are signed with). Without a store (no SECRETS_KEY)
 * there is no secret, and deliveries are given up saying so: an unsigned report is never sent.
 */
export function signingSecretsFrom(
  store: { signingSecret(clientId: string): Promise<{ value: string }> } | null,
): SigningSecrets {
  return { signingSecret: async (clientId) => (store ? (await store.signingSecret(clientId)).value : null) };
}
