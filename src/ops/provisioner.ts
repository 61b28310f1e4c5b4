import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { migrationFiles } from '../stack/sql.js';

/** A dedicated Supabase project as provisioning knows it. */
export interface ProjectHandle {
  /** Supabase's project ref (20 lower-case letters on hosted Supabase). */
  ref: string;
  /** The project URL supabase-js takes, e.g. https://<ref>.supabase.co */
  url: string;
}

export interface ProjectKeys {
  anonKey: string;
  serviceRoleKey: string;
}

export interface MigrationFile {
  name: string;
  sql: string;
}

/**
 * Creates and prepares the dedicated project of a champion or paragon client. Each step is its own
 * call so that provisioning can record progress in the platform row between steps and a re-run can
 * pick up where a failure left off (reusing the project instead of creating a second one).
 */
export interface DedicatedProvisioner {
  /** For messages and the platform record, e.g. 'management-api'. */
  readonly kind: string;
  /** A project created earlier under this name (a crash may have hit before its ref was stored). */
  findProject(name: string): Promise<ProjectHandle | null>;
  createProject(req: { name: string; clientId: string }): Promise<ProjectHandle>;
  /** Resolves once the project's database and API answer; throws if it cannot come up. */
  waitUntilReady(ref: string): Promise<void>;
  getKeys(ref: string): Promise<ProjectKeys>;
  /**
   * Runs SQL in the project's database as its owner (migrations, index maintenance during a bulk
   * copy). Absent when the provisioner has no SQL access (an existing project reached through its API).
   */
  runSql?(ref: string, sql: string): Promise<void>;
  /** One statement as the project's owner, returning its rows (with runSql: the owner record). */
  querySql?(ref: string, sql: string): Promise<Array<Record<string, unknown>>>;
  /** Without runSql: checks through the API that the dedicated schema is in place. */
  checkSchema?(project: ProjectHandle & ProjectKeys): Promise<void>;
}

/** The name a client's dedicated project gets: stable, so a re-run can find it again. */
export function projectNameFor(clientId: string): string {
  return `sidekick-${clientId}`;
}

/** migrations/dedicated, in the order they apply. */
export async function dedicatedMigrations(): Promise<MigrationFile[]> {
  const files = await migrationFiles('dedicated');
  return Promise.all(files.map(async (f) => ({ name: basename(f), sql: await readFile(f, 'utf8') })));
}

/** Applies migrations/dedicated through the provisioner (they are idempotent: safe to apply again). */
export async function applyDedicatedMigrations(
  provisioner: DedicatedProvisioner,
  ref: string,
): Promise<void> {
  if (!provisioner.runSql) return;
  for (const m of await dedicatedMigrations()) {
    try {
      await provisioner.runSql(ref, m.sql);
    } catch (err) {
      throw new Error(`applying migration ${m.name} to project ${ref}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
}

export interface VectorIndex {
  name: string;
  /** The migration's CREATE INDEX statement, made CONCURRENTLY (writes go on while it builds). */
  createConcurrently: string;
}

/**
 * The approximate (HNSW) vector indexes that migrations/dedicated creates, read from the migration
 * files themselves so there is one definition. A bulk copy drops them (inserting row by row into
 * an HNSW graph is several times slower than building it once) and rebuilds them afterwards.
 */
export async function vectorIndexes(): Promise<VectorIndex[]> {
  const found: VectorIndex[] = [];
  const pattern = /CREATE INDEX IF NOT EXISTS (\w+)\s+ON\s+[^;]*?USING hnsw[^;]*;/gi;
  for (const m of await dedicatedMigrations()) {
    for (const match of m.sql.matchAll(pattern)) {
      found.push({
        name: match[1]!,
        createConcurrently: match[0].replace(
          /^CREATE INDEX IF NOT EXISTS/i,
          'CREATE INDEX CONCURRENTLY IF NOT EXISTS',
        ),
      });
    }
  }
  return found;
}
