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

  json(value: unknown): void {
    this.out(JSON.stringify(value, null, 2));
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
