import type { Logger } from 'pino';
import { createRootLogger, type LogLevel } from '../log.js';
import type { LiveKitConnectionNotice } from './livekit-wait.js';

/**
 * @livekit/agents (1.9) logs through one pino logger that it keeps on globalThis under
 * Symbol.for('@livekit/agents:logger') (its log_core.js; a global, so that every copy of the
 * package shares it), set by initializeLogger(). cli.runApp calls initializeLogger itself (JSON
 * under `start`, its own always-coloured printer under `dev`) and takes no logger. Holding that
 * slot for ours gives LiveKit's lines our format (pretty in a terminal, JSON otherwise) and our
 * redaction. test/livekit-log.test.ts fails if a LiveKit release moves the slot.
 */
const LIVEKIT_LOGGER = Symbol.for('@livekit/agents:logger');

/**
 * From now on LiveKit logs through `logger`. initializeLogger()'s own logger is ignored; a child
 * of ours (a job process sets one with the job's id) is taken. Returns a function that undoes it.
 */
export function routeLiveKitLogs(logger: Logger): () => void {
  let current = logger;
  const previous = Object.getOwnPropertyDescriptor(globalThis, LIVEKIT_LOGGER);
  Object.defineProperty(globalThis, LIVEKIT_LOGGER, {
    configurable: true,
    get: () => current,
    set: (next: unknown) => {
      // pino makes a child with Object.create(parent): ours is on the prototype chain of our children.
      if (typeof next === 'object' && next !== null && Object.prototype.isPrototypeOf.call(logger, next)) {
        current = next as Logger;
      }
    },
  });
  return () => {
    if (previous) Object.defineProperty(globalThis, LIVEKIT_LOGGER, previous);
    else delete (globalThis as Record<symbol, unknown>)[LIVEKIT_LOGGER];
  };
}

/** The message of LiveKit's retry loop (worker.js: "failed to connect to LiveKit server (URL), retrying in N seconds: (k/max)"). */
const CONNECT_FAILED = 'failed to connect to LiveKit server';

/**
 * The logger for LiveKit in the worker's main process: LiveKit's connection retries go to
 * `notice` (one clear line instead of a warning with a stack trace every few seconds); every
 * other line is written as it is.
 */
export function liveKitLogger(
  level: LogLevel,
  notice: LiveKitConnectionNotice,
  options: { destination?: Parameters<typeof createRootLogger>[0]['destination']; pretty?: boolean } = {},
): Logger {
  return createRootLogger({
    level,
    ...options,
    hooks: {
      logMethod(args, method) {
        const [first, second] = args as unknown[];
        const msg = typeof first === 'string' ? first : typeof second === 'string' ? second : '';
        if (msg.startsWith(CONNECT_FAILED)) {
          notice.attemptFailed((first as { error?: unknown } | undefined)?.error);
          return;
        }
        if (msg === 'registered worker') notice.connected();
        method.apply(this, args);
      },
    },
  });
}
