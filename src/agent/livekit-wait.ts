import type { Logger } from 'pino';

/** Errors that mean "no LiveKit server there (yet)", not "it answered and refused". */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
]);

function errorCode(error: unknown): string | undefined {
  if (!error || typeof error !== 'object') return undefined;
  const { code, errors } = error as { code?: unknown; errors?: unknown };
  if (typeof code === 'string') return code;
  // Node tries every address of "localhost" (::1, 127.0.0.1) and reports an AggregateError.
  if (Array.isArray(errors)) return errors.map(errorCode).find((c) => c !== undefined);
  return undefined;
}

function errorMessage(error: unknown): string {
  if (error instanceof Error && error.message) return error.message;
  return String(error);
}

export const LIVEKIT_DEV_HINT =
  'start one locally with `livekit-server --dev` (it listens on ws://localhost:7880 with key devkey / secret secret), or set LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET';

/**
 * What the operator is told about the worker's connection to LiveKit, fed by the worker's own
 * connection attempts (livekit-log.ts takes them from LiveKit's retry loop): while no server is
 * there, one line with the URL and how to start one, not a warning with a stack trace per retry;
 * a server that answers and refuses (bad key: 401) is a warning at every attempt, with the reason.
 * The health endpoint says 503 meanwhile, and LiveKit's own "registered worker" says when it is in.
 */
export class LiveKitConnectionNotice {
  private told = false;
  private connectedBefore = false;

  constructor(
    private readonly url: string,
    private readonly log: Logger,
    /** Called each time the worker registers with LiveKit (jobs can come from then on). */
    private readonly onConnected: () => void = () => {},
  ) {}

  attemptFailed(error: unknown): void {
    const code = errorCode(error);
    if (code !== undefined && UNREACHABLE.has(code)) {
      if (this.told) {
        this.log.debug({ livekit_url: this.url, reason: code }, 'LiveKit server still unreachable');
        return;
      }
      this.told = true;
      if (this.connectedBefore) {
        this.log.warn(
          { livekit_url: this.url, reason: code },
          `lost the LiveKit server at ${this.url} (${code}): the worker keeps trying to reconnect`,
        );
      } else {
        this.log.warn(
          { livekit_url: this.url, reason: code },
          `waiting for a LiveKit server at ${this.url}: ${LIVEKIT_DEV_HINT}; the worker keeps trying`,
        );
      }
      return;
    }
    const message = errorMessage(error);
    const hint = /\b401\b/.test(message)
      ? ': check LIVEKIT_API_KEY and LIVEKIT_API_SECRET (they must be a key pair of that server)'
      : '';
    this.log.warn(
      { livekit_url: this.url, reason: code ?? message },
      `the LiveKit server at ${this.url} did not take the worker (${message})${hint}; retrying`,
    );
  }

  /** The worker registered with LiveKit. */
  connected(): void {
    this.told = false;
    this.connectedBefore = true;
    this.onConnected();
  }
}
