/**
 * Environment → typed, frozen configuration. Every bad or missing variable is reported at once in
 * one ConfigError, each with what to set, so an operator fixes the environment in one pass.
 */

import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseEnv } from 'node:util';
import { z } from 'zod';
import { LOG_LEVELS, type LogLevel, REDACTED, redactString } from './log.js';
import { Allowlist } from './outbound/addresses.js';
import { decodeKey } from './secrets/keyring.js';

/** What each variable is; shown next to every problem with it. Order = order of the report. */
const VARIABLE_HELP = {
  PLATFORM_SUPABASE_URL:
    'the platform Supabase project URL, e.g. https://abcd.supabase.co; unset = embedded stack',
  PLATFORM_SUPABASE_SERVICE_ROLE_KEY: "the platform project's service_role key",
  STACK_POSTGRES_URL:
    'a postgres:// superuser URL of a PostgreSQL server with pgvector for the embedded stack',
  LIVEKIT_URL: 'the LiveKit server URL, e.g. wss://my-project.livekit.cloud',
  LIVEKIT_API_KEY: 'the LiveKit API key',
  LIVEKIT_API_SECRET: 'the LiveKit API secret',
  AGENT_NAME: 'the agent name that dispatch requests name explicitly',
  OPENAI_API_KEY: 'an OpenAI (or compatible server) API key',
  OPENAI_BASE_URL: 'an OpenAI-compatible API base URL, e.g. http://localhost:11434/v1',
  LLM_MODEL: 'the chat model name',
  STT_MODEL: 'the speech-to-text model name',
  TTS_MODEL: 'the text-to-speech model name',
  TTS_VOICE: "the voice used when the client's tier has no custom voice",
  EMBEDDING_PROVIDER: "'openai' (any OpenAI-compatible server) or 'local' (built-in hashing embedder)",
  EMBEDDING_MODEL: 'the embedding model name',
  EMBEDDING_DIMENSIONS: 'the embedding size; must match the vector(N) columns of the databases',
  EMBEDDING_BASE_URL: 'an OpenAI-compatible base URL for embeddings; defaults to OPENAI_BASE_URL',
  EMBEDDING_API_KEY: 'an API key for embeddings; defaults to OPENAI_API_KEY',
  CLIENT_CACHE_TTL_MS: 'how long a client directory entry is trusted, in milliseconds',
  TENANT_TOKEN_TTL_S: 'lifetime of tenant-scoped database tokens, in seconds',
  MAX_CACHED_CONNECTIONS: 'how many database clients (per pool or project) are kept',
  CONTEXT_BUDGET_MS: 'time budget of each context lookup, in milliseconds',
  CONTEXT_MAX_CHARS: 'maximum characters of context injected per turn',
  RAG_MATCH_COUNT: 'document chunks retrieved per lookup',
  RAG_MATCH_THRESHOLD: 'minimum similarity of a retrieved chunk, 0..1',
  RECALL_MATCH_COUNT: 'past conversation turns recalled per lookup',
  TRANSCRIPT_BATCH_SIZE: 'transcript turns written per insert',
  TRANSCRIPT_MAX_BUFFERED: 'most transcript turns held in memory awaiting a write',
  TRANSCRIPT_GRACE_MS: 'how long after a session ends its buffered turns are still retried, in milliseconds',
  TRANSCRIPT_SPOOL_DIR:
    'where turns not written by session end are kept when the platform database is unreachable too (a local directory)',
  RETENTION_SWEEP_INTERVAL_S: 'how often the worker sweeps expired transcripts, in seconds; 0 = never',
  SESSION_LEASE_TTL_S:
    "lifetime of a running session's lease (max_concurrent_sessions), renewed every third of it; a dead worker's slot is free after it, in seconds",
  SESSION_LEASE_PENDING_S:
    'how long a job accepted by requestFunc may take to start before its slot is free again, in seconds',
  SECRETS_KEY:
    "the key clients' secrets are encrypted with: 32 random bytes, base64 (openssl rand -base64 32); unset = sessions get no client tools",
  SECRETS_OLD_KEYS:
    'earlier SECRETS_KEY values, comma-separated, still used to decrypt while a key is rotated (then `sidekick secrets rekey`)',
  OUTBOUND_ALLOWLIST:
    'hosts and CIDRs that tools may call although they are not public addresses (local work, tests), e.g. localhost,127.0.0.0/8',
  HEALTH_PORT:
    "port of the worker's health server: GET / is 200 while connected to LiveKit, /metrics is Prometheus'",
  LOG_LEVEL: `one of ${LOG_LEVELS.join(', ')}`,
  NODE_ENV: 'development, production or test',
} as const;

export type ConfigVariable = keyof typeof VARIABLE_HELP;
export const CONFIG_VARIABLES = Object.freeze(Object.keys(VARIABLE_HELP) as ConfigVariable[]);

export const NODE_ENVS = ['development', 'production', 'test'] as const;
export type NodeEnv = (typeof NODE_ENVS)[number];

export const EMBEDDING_PROVIDERS = ['openai', 'local'] as const;
export type EmbeddingProvider = (typeof EMBEDDING_PROVIDERS)[number];

/** The defaults of `livekit-server --dev`. */
const LIVEKIT_DEV = Object.freeze({ url: 'ws://localhost:7880', apiKey: 'devkey', apiSecret: 'secret' });

export type PlatformConfig =
  /** No platform project: the worker starts the local stack with demo clients. */
  | { readonly mode: 'embedded' }
  | { readonly mode: 'remote'; readonly url: string; readonly serviceRoleKey: string };

export type EmbeddingConfig =
  | {
      readonly provider: 'openai';
      readonly model: string;
      readonly dimensions: number;
      readonly apiKey: string;
      /** null = api.openai.com */
      readonly baseUrl: string | null;
    }
  | { readonly provider: 'local'; readonly dimensions: number };

export interface Config {
  readonly platform: PlatformConfig;
  readonly stack: {
    /** null = PGlite in process. */
    readonly postgresUrl: string | null;
  };
  readonly livekit: {
    readonly url: string;
    readonly apiKey: string;
    readonly apiSecret: string;
    /** The key or the secret is `livekit-server --dev`'s: fine locally, wrong anywhere else. */
    readonly usingDevDefaults: boolean;
  };
  readonly agentName: string;
  readonly openai: { readonly apiKey: string | null; readonly baseUrl: string | null };
  readonly models: {
    readonly llm: string;
    readonly stt: string;
    readonly tts: string;
    readonly defaultVoice: string;
  };
  readonly embeddings: EmbeddingConfig;
  readonly tenancy: {
    readonly clientCacheTtlMs: number;
    readonly tenantTokenTtlS: number;
    readonly maxCachedConnections: number;
  };
  readonly context: {
    readonly budgetMs: number;
    readonly maxChars: number;
    readonly ragMatchCount: number;
    readonly ragMatchThreshold: number;
    readonly recallMatchCount: number;
  };
  readonly transcripts: {
    readonly batchSize: number;
    readonly maxBuffered: number;
    readonly graceMs: number;
    readonly spoolDir: string;
  };
  readonly leases: {
    readonly ttlS: number;
    readonly pendingS: number;
  };
  readonly retention: {
    /** 0: the worker never sweeps (run `sidekick retention run` instead). */
    readonly sweepIntervalS: number;
  };
  readonly secrets: {
    /** base64 of 32 bytes; null = no key (client tools are off). */
    readonly key: string | null;
    readonly oldKeys: readonly string[];
  };
  readonly outbound: {
    /** OUTBOUND_ALLOWLIST's entries (checked here; parsed again by Allowlist where it is used). */
    readonly allowlist: readonly string[];
  };
  readonly healthPort: number;
  readonly logLevel: LogLevel;
  readonly nodeEnv: NodeEnv;
}

export interface ConfigIssue {
  readonly variable: ConfigVariable;
  readonly problem: string;
  /** What the variable is, i.e. what to set. */
  readonly help: string;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly ConfigIssue[]) {
    const lines = issues.map((i) => `  ${i.variable}: ${i.problem} (${i.help})`);
    super(
      `invalid configuration, ${issues.length} problem(s); fix these environment variables or .env (see .env.example):\n${lines.join('\n')}`,
    );
    this.issues = issues;
  }
}

// Field parsers. Input is the trimmed value, or undefined when unset or empty.

const optionalText = () => z.string().optional();
const text = (fallback: string) =>
  z
    .string()
    .optional()
    .transform((v) => v ?? fallback);

/** Values of URL variables are never echoed: they may carry a password. */
const url = (schemes: readonly string[]) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return undefined;
      let parsed: URL;
      try {
        parsed = new URL(v);
      } catch {
        ctx.addIssue('is not a valid URL');
        return z.NEVER;
      }
      const scheme = parsed.protocol.replace(/:$/, '');
      if (!schemes.includes(scheme)) {
        ctx.addIssue(`must be a ${schemes.map((s) => `${s}://`).join(' or ')} URL, got ${scheme}://`);
        return z.NEVER;
      }
      return v;
    });

// Strict: "12abc", "1e3", "-1" and "1.5" are not whole numbers (Number() and parseInt accept some).
const int = (fallback: number, min: number, max: number = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return fallback;
      const n = /^\d+$/.test(v) ? Number(v) : Number.NaN;
      if (!Number.isSafeInteger(n) || n < min || n > max) {
        ctx.addIssue(`must be a whole number from ${min} to ${max}, got "${v}"`);
        return z.NEVER;
      }
      return n;
    });

const fraction = (fallback: number) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return fallback;
      const n = /^(?:\d+(?:\.\d*)?|\.\d+)$/.test(v) ? Number(v) : Number.NaN;
      if (!(n >= 0 && n <= 1)) {
        ctx.addIssue(`must be a number from 0 to 1, got "${v}"`);
        return z.NEVER;
      }
      return n;
    });

const oneOf = <const T extends readonly string[]>(values: T, fallback?: T[number]) =>
  z
    .string()
    .optional()
    .transform((v, ctx): T[number] | undefined => {
      if (v === undefined) return fallback;
      if (!values.includes(v)) {
        ctx.addIssue(`must be one of ${values.join(', ')}, got "${v}"`);
        return z.NEVER;
      }
      return v;
    });

const HOUR_MS = 3_600_000;

/** Secrets keys are never echoed. */
const keys = (many: boolean) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return [];
      const values = many
        ? v
            .split(',')
            .map((k) => k.trim())
            .filter(Boolean)
        : [v];
      for (const [i, value] of values.entries()) {
        const decoded = decodeKey(value);
        if ('problem' in decoded) {
          ctx.addIssue(many ? `key ${i + 1} ${decoded.problem}` : decoded.problem);
          return z.NEVER;
        }
      }
      return values;
    });

const allowlist = () =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      try {
        return Allowlist.parse(v).entries;
      } catch (err) {
        ctx.addIssue((err as Error).message);
        return z.NEVER;
      }
    });

const schema = z.object({
  PLATFORM_SUPABASE_URL: url(['http', 'https']),
  PLATFORM_SUPABASE_SERVICE_ROLE_KEY: optionalText(),
  STACK_POSTGRES_URL: url(['postgres', 'postgresql']),
  LIVEKIT_URL: url(['ws', 'wss', 'http', 'https']).transform((v) => v ?? LIVEKIT_DEV.url),
  LIVEKIT_API_KEY: text(LIVEKIT_DEV.apiKey),
  LIVEKIT_API_SECRET: text(LIVEKIT_DEV.apiSecret),
  AGENT_NAME: text('sidekick'),
  OPENAI_API_KEY: optionalText(),
  OPENAI_BASE_URL: url(['http', 'https']),
  LLM_MODEL: text('gpt-4o-mini'),
  STT_MODEL: text('gpt-4o-mini-transcribe'),
  TTS_MODEL: text('gpt-4o-mini-tts'),
  TTS_VOICE: text('alloy'),
  EMBEDDING_PROVIDER: oneOf(EMBEDDING_PROVIDERS),
  EMBEDDING_MODEL: text('text-embedding-3-small'),
  // pgvector's vector type holds at most 16000 dimensions.
  EMBEDDING_DIMENSIONS: int(1024, 1, 16_000),
  EMBEDDING_BASE_URL: url(['http', 'https']),
  EMBEDDING_API_KEY: optionalText(),
  // Bounded above so that a tier upgrade is noticed by every worker within the hour.
  CLIENT_CACHE_TTL_MS: int(30_000, 1, HOUR_MS),
  // Tenant tokens are meant to be short-lived.
  TENANT_TOKEN_TTL_S: int(300, 10, 3600),
  MAX_CACHED_CONNECTIONS: int(500, 1),
  CONTEXT_BUDGET_MS: int(350, 1, 60_000),
  CONTEXT_MAX_CHARS: int(6000, 1),
  RAG_MATCH_COUNT: int(5, 1, 100),
  RAG_MATCH_THRESHOLD: fraction(0.2),
  RECALL_MATCH_COUNT: int(3, 1, 100),
  TRANSCRIPT_BATCH_SIZE: int(50, 1, 1000),
  TRANSCRIPT_MAX_BUFFERED: int(5000, 1),
  TRANSCRIPT_GRACE_MS: int(30_000, 0, HOUR_MS),
  TRANSCRIPT_SPOOL_DIR: text(join(tmpdir(), 'sidekick-transcript-spool')),
  RETENTION_SWEEP_INTERVAL_S: int(3600, 0, 7 * 24 * 3600),
  // At least 3 s: renewed every third, a second apart at the least.
  SESSION_LEASE_TTL_S: int(60, 3, 3600),
  SESSION_LEASE_PENDING_S: int(30, 1, 600),
  SECRETS_KEY: keys(false),
  SECRETS_OLD_KEYS: keys(true),
  OUTBOUND_ALLOWLIST: allowlist(),
  // 0 = any free port (tests).
  HEALTH_PORT: int(8081, 0, 65_535),
  LOG_LEVEL: oneOf(LOG_LEVELS, 'info'),
  NODE_ENV: oneOf(NODE_ENVS, 'development'),
});

type Raw = Partial<Record<ConfigVariable, string>>;

/** Only our variables, trimmed; empty and blank values count as unset. */
function readRaw(env: NodeJS.ProcessEnv): Raw {
  const raw: Raw = {};
  for (const name of CONFIG_VARIABLES) {
    const value = env[name]?.trim();
    if (value) raw[name] = value;
  }
  return raw;
}

/** Rules that involve more than one variable; they look only at presence, so they always run. */
function crossIssues(raw: Raw): Array<Omit<ConfigIssue, 'help'>> {
  const issues: Array<Omit<ConfigIssue, 'help'>> = [];
  if (raw.PLATFORM_SUPABASE_URL && !raw.PLATFORM_SUPABASE_SERVICE_ROLE_KEY) {
    issues.push({
      variable: 'PLATFORM_SUPABASE_SERVICE_ROLE_KEY',
      problem: 'required when PLATFORM_SUPABASE_URL is set',
    });
  }
  if (raw.PLATFORM_SUPABASE_SERVICE_ROLE_KEY && !raw.PLATFORM_SUPABASE_URL) {
    issues.push({
      variable: 'PLATFORM_SUPABASE_URL',
      problem:
        'required when PLATFORM_SUPABASE_SERVICE_ROLE_KEY is set (or unset both to use the embedded stack)',
    });
  }
  if (raw.EMBEDDING_PROVIDER === 'openai' && !raw.EMBEDDING_API_KEY && !raw.OPENAI_API_KEY) {
    issues.push({
      variable: 'EMBEDDING_PROVIDER',
      problem:
        "'openai' needs an API key: set EMBEDDING_API_KEY or OPENAI_API_KEY, or set EMBEDDING_PROVIDER=local",
    });
  }
  const batch = Number(raw.TRANSCRIPT_BATCH_SIZE ?? 50);
  const buffered = Number(raw.TRANSCRIPT_MAX_BUFFERED ?? 5000);
  if (batch > buffered) {
    issues.push({
      variable: 'TRANSCRIPT_MAX_BUFFERED',
      problem: `must be at least TRANSCRIPT_BATCH_SIZE (${batch})`,
    });
  }
  return issues;
}

/** `.env` could not be read, or is not lines of NAME=value. Never quotes a line (it may hold a secret). */
export class EnvFileError extends Error {
  override readonly name = 'EnvFileError';
  constructor(
    readonly path: string,
    readonly problems: readonly string[],
  ) {
    super(
      `${path} is malformed: ${problems.join('; ')}. Fix it (each line NAME=value, comments start with #) or remove it; see .env.example`,
    );
  }
}

/** Lines Node's parser would silently skip or misread: not NAME=value, or a quote never closed. */
function envFileProblems(text: string): string[] {
  const lines = text.split(/\r?\n/);
  const problems: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^\s*(?:#|$)/.test(line)) continue;
    const m = /^\s*(?:export\s+)?([A-Za-z_][\w.-]*)\s*=\s*(.*)$/.exec(line);
    if (!m) {
      problems.push(`line ${i + 1} is not NAME=value`);
      continue;
    }
    const quote = m[2]![0];
    if ((quote === '"' || quote === "'" || quote === '`') && !m[2]!.includes(quote, 1)) {
      // A quoted value may span lines up to its closing quote.
      let end = i + 1;
      while (end < lines.length && !lines[end]!.includes(quote)) end++;
      if (end === lines.length) problems.push(`line ${i + 1}: the quoted value of ${m[1]} is never closed`);
      i = end;
    }
  }
  return problems;
}

/**
 * Reads `.env` (in the working directory, by default) into `env`, with Node's own parser
 * (util.parseEnv): only variables that `env` does not define, so the environment takes precedence.
 * A missing file is fine (returns null); a malformed or unreadable one is an EnvFileError. Called
 * once by each entry point (worker, job process, CLI, stack) before loadConfig.
 */
export function loadEnvFile(
  env: NodeJS.ProcessEnv = process.env,
  file = '.env',
): { path: string; fromFile: string[] } | null {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new EnvFileError(path, [
      `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    ]);
  }
  const problems = envFileProblems(text);
  if (problems.length) throw new EnvFileError(path, problems);
  const fromFile: string[] = [];
  for (const [name, value] of Object.entries(parseEnv(text))) {
    if (env[name] !== undefined) continue;
    env[name] = value;
    fromFile.push(name);
  }
  return { path, fromFile };
}

/** Reads the configuration from `env`; throws one ConfigError naming every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const raw = readRaw(env);
  const parsed = schema.safeParse(raw);

  const problems: Array<Omit<ConfigIssue, 'help'>> = crossIssues(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      problems.push({ variable: issue.path[0] as ConfigVariable, problem: issue.message });
    }
  }
  if (problems.length > 0 || !parsed.success) {
    const order = (v: ConfigVariable) => CONFIG_VARIABLES.indexOf(v);
    problems.sort((a, b) => order(a.variable) - order(b.variable));
    throw new ConfigError(problems.map((p) => ({ ...p, help: VARIABLE_HELP[p.variable] })));
  }

  const v = parsed.data;
  const platform: PlatformConfig =
    v.PLATFORM_SUPABASE_URL && v.PLATFORM_SUPABASE_SERVICE_ROLE_KEY
      ? { mode: 'remote', url: v.PLATFORM_SUPABASE_URL, serviceRoleKey: v.PLATFORM_SUPABASE_SERVICE_ROLE_KEY }
      : { mode: 'embedded' };

  const embeddingKey = v.EMBEDDING_API_KEY ?? v.OPENAI_API_KEY;
  const provider: EmbeddingProvider = v.EMBEDDING_PROVIDER ?? (embeddingKey ? 'openai' : 'local');
  const embeddings: EmbeddingConfig =
    provider === 'openai' && embeddingKey
      ? {
          provider,
          model: v.EMBEDDING_MODEL,
          dimensions: v.EMBEDDING_DIMENSIONS,
          apiKey: embeddingKey,
          baseUrl: v.EMBEDDING_BASE_URL ?? v.OPENAI_BASE_URL ?? null,
        }
      : { provider: 'local', dimensions: v.EMBEDDING_DIMENSIONS };

  const config: Config = {
    platform,
    stack: { postgresUrl: v.STACK_POSTGRES_URL ?? null },
    livekit: {
      url: v.LIVEKIT_URL,
      apiKey: v.LIVEKIT_API_KEY,
      apiSecret: v.LIVEKIT_API_SECRET,
      usingDevDefaults:
        v.LIVEKIT_API_KEY === LIVEKIT_DEV.apiKey || v.LIVEKIT_API_SECRET === LIVEKIT_DEV.apiSecret,
    },
    agentName: v.AGENT_NAME,
    openai: { apiKey: v.OPENAI_API_KEY ?? null, baseUrl: v.OPENAI_BASE_URL ?? null },
    models: { llm: v.LLM_MODEL, stt: v.STT_MODEL, tts: v.TTS_MODEL, defaultVoice: v.TTS_VOICE },
    embeddings,
    tenancy: {
      clientCacheTtlMs: v.CLIENT_CACHE_TTL_MS,
      tenantTokenTtlS: v.TENANT_TOKEN_TTL_S,
      maxCachedConnections: v.MAX_CACHED_CONNECTIONS,
    },
    context: {
      budgetMs: v.CONTEXT_BUDGET_MS,
      maxChars: v.CONTEXT_MAX_CHARS,
      ragMatchCount: v.RAG_MATCH_COUNT,
      ragMatchThreshold: v.RAG_MATCH_THRESHOLD,
      recallMatchCount: v.RECALL_MATCH_COUNT,
    },
    transcripts: {
      batchSize: v.TRANSCRIPT_BATCH_SIZE,
      maxBuffered: v.TRANSCRIPT_MAX_BUFFERED,
      graceMs: v.TRANSCRIPT_GRACE_MS,
      spoolDir: v.TRANSCRIPT_SPOOL_DIR,
    },
    leases: { ttlS: v.SESSION_LEASE_TTL_S, pendingS: v.SESSION_LEASE_PENDING_S },
    retention: { sweepIntervalS: v.RETENTION_SWEEP_INTERVAL_S },
    secrets: { key: v.SECRETS_KEY[0] ?? null, oldKeys: v.SECRETS_OLD_KEYS },
    outbound: { allowlist: v.OUTBOUND_ALLOWLIST },
    healthPort: v.HEALTH_PORT,
    logLevel: v.LOG_LEVEL ?? 'info',
    nodeEnv: v.NODE_ENV ?? 'development',
  };
  return deepFreeze(config);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

const secret = (value: string | null): string | null => (value === null ? null : REDACTED);
/** postgres://user:pw@host → postgres://user:[redacted]@host, ?password=... likewise (log.ts's rules). */
const withoutPassword = (value: string | null): string | null =>
  value === null ? null : redactString(value);

/** The config with every secret replaced by '[redacted]', for the startup log line. */
export function describeConfig(config: Config): Config {
  const { platform, embeddings } = config;
  return deepFreeze({
    ...config,
    platform: platform.mode === 'remote' ? { ...platform, serviceRoleKey: REDACTED } : platform,
    stack: { postgresUrl: withoutPassword(config.stack.postgresUrl) },
    livekit: { ...config.livekit, apiKey: REDACTED, apiSecret: REDACTED },
    secrets: { key: secret(config.secrets.key), oldKeys: config.secrets.oldKeys.map(() => REDACTED) },
    openai: { apiKey: secret(config.openai.apiKey), baseUrl: withoutPassword(config.openai.baseUrl) },
    embeddings:
      embeddings.provider === 'openai'
        ? { ...embeddings, apiKey: REDACTED, baseUrl: withoutPassword(embeddings.baseUrl) }
        : embeddings,
  });
}
