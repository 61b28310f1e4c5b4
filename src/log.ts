/**
 * Logging: pino, with secrets redacted wherever they appear, and a child logger per job. JSON
 * lines, or in a terminal (and not in production) human-readable ones from pino-pretty.
 *
 * pino's own `redact` takes fixed paths and cannot express "any field called apiKey at any
 * depth", so every merged object and every set of child bindings is walked once by `redact`
 * (copy-on-write: objects without secrets are passed through untouched). That happens in the
 * logger itself, before any line is written, so the pretty output never sees a secret either.
 */

import { type DestinationStream, type Logger, pino } from 'pino';
import { prettyFactory } from 'pino-pretty';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value);
}

export const REDACTED = '[redacted]';

/*
 * Field names that look like secrets, compared after lower-casing and dropping '_' and '-'
 * (so apiKey, api_key, x-api-key and API-KEY are one name).
 * "key" alone is a secret, but cacheKey or sortKey are not: only the known *key suffixes count.
 * "tokens" (prompt_tokens, maxTokens) are usage counts, not secrets: only names ending in "token".
 */
const SECRET_NAME =
  /^key$|(?:apikey|secretkey|privatekey|rolekey|servicekey|anonkey|accesskey|signingkey|token|authorization|cookie)$|jwt|secret|passw|credential/;

const secretNameMemo = new Map<string, boolean>();
const MEMO_LIMIT = 2000;

export function isSecretFieldName(name: string): boolean {
  const known = secretNameMemo.get(name);
  if (known !== undefined) return known;
  const secret = SECRET_NAME.test(name.toLowerCase().replace(/[-_]/g, ''));
  // Field names are mostly a fixed vocabulary; the cap guards against maps keyed by ids.
  if (secretNameMemo.size < MEMO_LIMIT) secretNameMemo.set(name, secret);
  return secret;
}

/*
 * Secrets inside strings: JWTs (a JSON header always encodes to "eyJ"), bearer tokens, passwords in
 * URLs (postgres://user:pw@host), secret query or key=value parameters, and "apiKey":"..." pairs
 * from JSON that was interpolated into a message.
 */
const MAYBE_SECRET = /eyJ|Bearer|:\/\/|=|":/;
const JWT = /eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*/g;
const BEARER = /\bBearer\s+[\w\-.~+/]{16,}=*/g;
const URL_PASSWORD = /(\/\/[^\s:/?#@]*:)[^\s/?#@]+@/g;
const SECRET_PARAM =
  /((?:^|[?&;\s])(?:[\w-]*?(?:api[_-]?key|token|secret|password|passwd|jwt|signature)|key|sig)=)[^&#;\s]+/gi;
const SECRET_JSON_PAIR =
  /("[\w-]*?(?:key|token|secret|password|authorization|jwt|credentials?)"\s*:\s*)"(?:[^"\\]|\\.)*"/gi;

export function redactString(text: string): string {
  if (text.length < 8 || !MAYBE_SECRET.test(text)) return text;
  return text
    .replace(JWT, REDACTED)
    .replace(BEARER, `Bearer ${REDACTED}`)
    .replace(URL_PASSWORD, `$1${REDACTED}@`)
    .replace(SECRET_PARAM, `$1${REDACTED}`)
    .replace(SECRET_JSON_PAIR, `$1"${REDACTED}"`);
}

/**
 * A copy of `value` with every secret-named field replaced by '[redacted]' at any depth (objects,
 * arrays, errors), and secrets inside strings masked. Values that contain no secret are returned
 * as they are, not copied.
 */
export function redact(value: unknown): unknown {
  return walk(value, new WeakSet());
}

function walk(value: unknown, path: WeakSet<object>): unknown {
  if (typeof value === 'string') return redactString(value);
  if (value === null || typeof value !== 'object') return value;
  if (path.has(value)) return '[Circular]';
  if (value instanceof Date || ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return value;
  if (value instanceof URL) return redactString(value.href);

  path.add(value);
  try {
    if (value instanceof Error) return walk(errorToObject(value), path);
    if (Array.isArray(value)) return walkArray(value, path);
    const toJSON: unknown = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') return walk(toJSON.call(value), path);
    if (value instanceof Map || value instanceof Set) return value; // JSON shows {}: nothing leaks
    return walkObject(value as Record<string, unknown>, path);
  } finally {
    // Tracks the current path only, so an object referenced twice (not a cycle) is logged twice.
    path.delete(value);
  }
}

function walkArray(items: readonly unknown[], path: WeakSet<object>): unknown[] {
  let copy: unknown[] | undefined;
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    const next = walk(item, path);
    if (next !== item) {
      copy ??= items.slice();
      copy[i] = next;
    }
  }
  return copy ?? (items as unknown[]);
}

function walkObject(obj: Record<string, unknown>, path: WeakSet<object>): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(obj)) {
    const field = obj[key];
    // null/undefined are kept: "not set" is useful to see and reveals nothing.
    const next = field == null ? field : isSecretFieldName(key) ? REDACTED : walk(field, path);
    if (next !== field) {
      copy ??= { ...obj };
      copy[key] = next;
    }
  }
  return copy ?? obj;
}

/** pino's error serializer (type, message and stack with causes, own fields) as a plain object. */
function errorToObject(err: Error): Record<string, unknown> {
  const serialized: Record<string, unknown> = pino.stdSerializers.err(err);
  const out: Record<string, unknown> = {};
  for (const key in serialized) {
    if (serialized[key] !== undefined) out[key] = serialized[key];
  }
  return out;
}

export interface RootLoggerOptions {
  level: LogLevel;
  /** Where lines go; stdout when absent. Tests pass a stream that collects them. */
  destination?: DestinationStream;
  /** Human-readable lines instead of JSON (default: `prettyByDefault()` for stdout, JSON for a given destination). */
  pretty?: boolean;
  /** Colours in pretty lines (default: pino-pretty's own test of the terminal, which honours NO_COLOR). */
  colorize?: boolean;
  /** pino's hooks, e.g. one that reshapes a library's lines (livekit-log.ts). */
  hooks?: pino.LoggerOptions['hooks'];
}

/**
 * Pretty lines for a person at a terminal; JSON for anything else (a pipe, a file, a log
 * collector) and always in production, where lines are parsed, not read.
 */
export function prettyByDefault(
  stream: { isTTY?: boolean } = process.stdout,
  env: NodeJS.ProcessEnv = process.env,
): boolean {
  return stream.isTTY === true && env.NODE_ENV !== 'production';
}

/**
 * @livekit/agents names the fields that hold what a user said or who they are `lk.pii.*` (the
 * transcript, a tool call's arguments, a participant's identity). Their values are kept out of
 * lines at info and above; LOG_LEVEL=debug shows them on the debug lines.
 */
const PII_PREFIX = 'lk.pii.';
export const PII_HIDDEN = '[hidden at info: LOG_LEVEL=debug shows it]';
const INFO = 30;

function withoutPii(args: unknown[]): unknown[] {
  const [first] = args;
  if (first === null || typeof first !== 'object' || first instanceof Error) return args;
  const keys = Object.keys(first);
  if (!keys.some((k) => k.startsWith(PII_PREFIX))) return args;
  const copy: Record<string, unknown> = { ...(first as Record<string, unknown>) };
  for (const k of keys) if (k.startsWith(PII_PREFIX)) copy[k] = PII_HIDDEN;
  return [copy, ...args.slice(1)];
}

export function createRootLogger({
  level,
  destination,
  pretty = destination === undefined && prettyByDefault(),
  colorize,
  hooks,
}: RootLoggerOptions): Logger {
  const options: pino.LoggerOptions = {
    level,
    hooks: {
      ...hooks,
      logMethod(args, method, lineLevel) {
        const kept = (lineLevel >= INFO ? withoutPii(args) : args) as typeof args;
        if (hooks?.logMethod) hooks.logMethod.call(this, kept, method, lineLevel);
        else method.apply(this, kept);
      },
    },
    formatters: { log: (obj) => redact(obj) as Record<string, unknown> },
    serializers: {
      // Errors were already serialized (and redacted) by the log formatter, which runs first.
      err: (err: unknown) => err,
      // The message is formatted after the formatter runs, so it is masked here.
      msg: (msg: unknown) => (typeof msg === 'string' ? redactString(msg) : msg),
    },
  };
  const logger = pretty
    ? pino(options, prettyDestination(destination, colorize))
    : destination
      ? pino(options, destination)
      : pino(options);
  // pino applies `formatters.bindings` to the root's bindings only, not to a child's. Every child
  // is created from its parent by Object.create, so this override is inherited by all descendants.
  const child = logger.child;
  logger.child = function (this: Logger, bindings, childOptions) {
    return child.call(this, redact(bindings) as pino.Bindings, childOptions);
  } as Logger['child'];
  return logger;
}

/**
 * pino-pretty's formatter, called synchronously on each line in this thread (not a worker-thread
 * transport, not a stream pipeline): lines come out in order with the rest of the output and
 * none is lost when the process exits.
 */
function prettyDestination(target: DestinationStream | undefined, colorize: boolean | undefined) {
  const format = prettyFactory({
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'hostname',
    // Fields on the message's line (a config object would otherwise take 50); stacks stay multi-line.
    singleLine: true,
    ...(colorize === undefined ? {} : { colorize }),
  });
  const out = target ?? pino.destination({ dest: 1, sync: true });
  return { write: (line: string) => void out.write(format(line)) };
}

/**
 * The process's root logger: the one module-level singleton. Its level comes from LOG_LEVEL when
 * that is a valid level, else 'info'; after loadConfig, set `rootLogger.level = config.logLevel`
 * before creating child loggers (children copy the level when they are made).
 */
export const rootLogger: Logger = createRootLogger({
  level: isLogLevel(process.env.LOG_LEVEL) ? process.env.LOG_LEVEL : 'info',
});

export interface JobLogContext {
  clientId: string;
  /** The sidekick's slug (agents.slug). */
  agentSlug: string;
  jobId: string;
  roomName?: string;
}

/** A child logger whose every line names the client, the sidekick and the job. */
export function jobLogger(parent: Logger, job: JobLogContext): Logger {
  const bindings: Record<string, string> = {
    client_id: job.clientId,
    agent: job.agentSlug,
    job_id: job.jobId,
  };
  if (job.roomName !== undefined) bindings.room = job.roomName;
  return parent.child(bindings);
}
