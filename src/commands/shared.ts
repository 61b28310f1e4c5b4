import { InvalidArgumentError } from 'commander';
import type { Logger } from 'pino';
import { createRuntime, type WorkerRuntime } from '../agent/runtime.js';
import { type Config, loadConfig } from '../config.js';
import { createRootLogger, isLogLevel } from '../log.js';
import { UsageError } from '../ops/errors.js';
import { PlatformAdmin, PoolAdmins } from '../ops/platform.js';
import { isSidekickSlug, SIDEKICK_SLUG_RULE } from '../tenancy/sidekicks.js';
import { isUuid } from '../tenancy/types.js';

export interface CliIo {
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
  env: NodeJS.ProcessEnv;
  /** What `sidekick chat` reads the user's lines from (default: process.stdin). */
  stdin?: NodeJS.ReadableStream;
}

/**
 * What every command gets: where to print (results on stdout, progress and logs on stderr) and,
 * built on first use, the platform it works on. Commands never call process.exit.
 */
export class CommandContext {
  private ops: Operations | undefined;

  constructor(readonly io: CliIo) {}

  out(line: string): void {
    this.io.stdout.write(line.endsWith('\n') ? line : `${line}\n`);
  }

  err(line: string): void {
    this.io.stderr.write(line.endsWith('\n') ? line : `${line}\n`);
  }

  /** `--json` output: snake_case keys (snakeCaseKeys), free-form fields as they are. */
  json(value: unknown): void {
    this.out(JSON.stringify(snakeCaseKeys(value), null, 2));
  }

  /** Logs go to stderr (stdout carries results); quiet unless LOG_LEVEL asks for more. */
  logger(): Logger {
    const level = isLogLevel(this.io.env.LOG_LEVEL) ? this.io.env.LOG_LEVEL : 'warn';
    return createRootLogger({ level, destination: { write: (s: string) => this.io.stderr.write(s) } });
  }

  /** The configured platform: its admin clients, and the worker's own tenancy and embedder. */
  operations(): Operations {
    this.ops ??= connectOperations(this.io.env, this.logger());
    return this.ops;
  }
}

export interface Operations {
  config: Config;
  log: Logger;
  platform: PlatformAdmin;
  pools: PoolAdmins;
  /** The worker's runtime: documents are loaded and read exactly as sessions read them. */
  worker(): WorkerRuntime;
}

function connectOperations(env: NodeJS.ProcessEnv, log: Logger): Operations {
  const config = loadConfig(env);
  if (config.platform.mode !== 'remote') {
    throw new UsageError(
      'the sidekick CLI works on a platform project: set PLATFORM_SUPABASE_URL and PLATFORM_SUPABASE_SERVICE_ROLE_KEY (`npm run stack -- --seed` prints them for the local stack)',
    );
  }
  const platform = PlatformAdmin.connect(config.platform.url, config.platform.serviceRoleKey);
  let worker: WorkerRuntime | undefined;
  return {
    config,
    log,
    platform,
    pools: new PoolAdmins(platform),
    worker: () => {
      worker ??= createRuntime(config, log);
      return worker;
    },
  };
}

/**
 * Fields whose values are data someone else wrote, which `--json` prints as they are, keys and
 * all: a sidekick's stored `tools_config` and, wherever a tool entry shows, its `parameters` (JSON
 * Schema: `minLength`, `additionalProperties`) and `headers` (names as written); a TTS provider's
 * `voice_settings`; a client's `tier_features` overrides; a user overview's `sections` (what the
 * model wrote); a document's `metadata`; a work item's `result` (what its handler stored).
 */
export const FREE_FORM_FIELDS: ReadonlySet<string> = new Set([
  'tools_config',
  'parameters',
  'headers',
  'voice_settings',
  'tier_features',
  'sections',
  'metadata',
  'result',
]);

const CAMEL_KEY = /^[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)+$/;

/**
 * `--json` keys are snake_case, the style of the database's columns and the job metadata. The
 * commands' results are the ops modules' TypeScript shapes (camelCase, used as they are by the
 * human output and by tests); renaming here, in the one printer, instead of in a mapper per
 * command, holds every command, and every field added later, to the rule. Only our own keys
 * change: a key that is not a camelCase identifier stays (`p50_ms`, a table name, `X-Api-Key`),
 * and the value of a FREE_FORM_FIELDS key is copied untouched.
 */
export function snakeCaseKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(snakeCaseKeys);
  if (!isPlainObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    const snake = CAMEL_KEY.test(key) ? key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`) : key;
    out[snake] = FREE_FORM_FIELDS.has(snake) ? v : snakeCaseKeys(v);
  }
  return out;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** `1 chunk`, `3 chunks`: a count with its noun in the number it needs (`many` when not +s). */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * A destructive command run without `--yes` has printed what it would remove: nothing was done,
 * exit 2 (bad input: the flag is missing), the same for every such command.
 */
export function confirmationNeeded(what: string): never {
  throw new UsageError(`--yes: nothing was deleted; run again with --yes to delete ${what}`);
}

/** A whole number option (`--page-size 500`). */
export function parseCount(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a whole number');
  return Number(value);
}

/**
 * A uuid option (`--client`, `--user`, `--conversation`, `--id`): checked before anything is sent,
 * so a typo is named by its option instead of coming back as the database's syntax error.
 */
export function parseUuid(value: string): string {
  if (!isUuid(value)) throw new InvalidArgumentError('expected a uuid (8-4-4-4-12 hex digits)');
  return value.toLowerCase();
}

/** `--agent`: a sidekick's id (a uuid) or its slug, by the slug rule of the job metadata. */
export function parseSidekick(value: string): string {
  if (isUuid(value)) return value.toLowerCase();
  if (!isSidekickSlug(value)) {
    throw new InvalidArgumentError(`expected a sidekick's slug (${SIDEKICK_SLUG_RULE}) or its id`);
  }
  return value;
}

/** An option that is one of a domain's own constants (tiers, upgrade targets): typed by them. */
export function oneOf<const T extends readonly string[]>(values: T): (value: string) => T[number] {
  return (value) => {
    if (!(values as readonly string[]).includes(value)) {
      throw new InvalidArgumentError(`expected one of ${values.join(', ')}`);
    }
    return value as T[number];
  };
}

export function parseJsonObject(value: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new InvalidArgumentError('expected a JSON object');
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new InvalidArgumentError('expected a JSON object');
  return parsed as Record<string, unknown>;
}
