import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PGlite } from '@electric-sql/pglite';
import pRetry, { AbortError } from 'p-retry';
import type { Pool } from 'pg';

/**
 * Direct superuser SQL access to one database of the local stack: PGlite in-process, or a real
 * PostgreSQL server. Used to apply migrations, seed, and let tests look behind PostgREST.
 * Session work never goes through here; it goes through PostgREST like production does.
 */
export interface SqlExecutor {
  /** Runs one or more statements (simple protocol, no parameters). */
  exec(sql: string): Promise<void>;
  /** Runs one statement with $1..$n parameters and returns its rows. */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

export class PgliteExecutor implements SqlExecutor {
  constructor(readonly db: PGlite) {}
  /**
   * PGlite is one backend, shared with the socket PostgREST talks to, and its exec() does not wait
   * for a socket client's transaction: a statement sent meanwhile lands inside it, and one that
   * fails there (CREATE/DROP INDEX CONCURRENTLY: 25001) also aborts that client's transaction. So
   * the statement waits while a transaction is open, and a 25001 that still slips in is retried.
   */
  async exec(sql: string): Promise<void> {
    await pRetry(
      async () => {
        while (this.db.isInTransaction()) await new Promise((r) => setTimeout(r, 2));
        try {
          await this.db.exec(sql);
        } catch (err) {
          if ((err as { code?: string }).code === '25001') throw err;
          throw new AbortError(err as Error);
        }
      },
      { retries: 20, minTimeout: 10, maxTimeout: 200 },
    );
  }
  async query<T>(sql: string, params: unknown[] = []): Promise<T[]> {
    return (await this.db.query<T>(sql, params)).rows;
  }
  async close(): Promise<void> {
    await this.db.close();
  }
}

/** Over a pg Pool (created by the caller, which loads the optional `pg` package: see packages.ts). */
export class PgExecutor implements SqlExecutor {
  constructor(private readonly pool: Pool) {
    // An idle connection the server ends (DROP DATABASE ... WITH (FORCE), a restart) must not
    // crash the process; the next query opens a new one.
    this.pool.on('error', () => {});
  }
  async exec(sql: string): Promise<void> {
    await this.pool.query(sql);
  }
  async query<T>(sql: string, params: unknown[] = []): Promise<T[]> {
    return (await this.pool.query(sql, params)).rows as T[];
  }
  async close(): Promise<void> {
    await this.pool.end();
  }
}

export type DatabaseKind = 'platform' | 'shared_pool' | 'dedicated';

export const MIGRATIONS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../migrations');

/** The SQL files of one migrations folder, in the order they apply (file name order). */
export async function migrationFiles(folder: DatabaseKind | 'local'): Promise<string[]> {
  const dir = join(MIGRATIONS_DIR, folder);
  const names = (await readdir(dir)).filter((n) => n.endsWith('.sql')).sort();
  return names.map((n) => join(dir, n));
}

/**
 * Applies every migration of `kind` in file order. Migrations are written to be idempotent, so
 * applying them again is safe (and tested); there is no bookkeeping table to drift.
 * With `bootstrap`, the local-only Supabase stand-ins (roles, auth.jwt()) are applied first:
 * hosted Supabase already has them, so they are never part of the real migrations.
 */
export async function applyMigrations(
  sql: SqlExecutor,
  kind: DatabaseKind,
  opts: { bootstrap?: boolean } = {},
): Promise<string[]> {
  const files = [...(opts.bootstrap ? await migrationFiles('local') : []), ...(await migrationFiles(kind))];
  for (const file of files) {
    try {
      await sql.exec(await readFile(file, 'utf8'));
    } catch (err) {
      throw new Error(`migration ${file} failed: ${(err as Error).message}`, { cause: err });
    }
  }
  return files;
}
