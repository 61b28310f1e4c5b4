/**
 * The webhook's one seam to the outbound module (src/outbound: the address guard, timeouts, the
 * size cap, the HMAC signature) and to where the client's signing secret lives. Everything else in
 * webhook.ts depends on these two interfaces only.
 */

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
