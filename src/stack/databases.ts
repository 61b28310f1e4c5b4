import { randomBytes } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import pg from 'pg';
import { PgExecutor, PgliteExecutor, type SqlExecutor } from './sql.js';

/**
 * One fresh, empty database: a new PGlite instance (with pgvector), or, when `serverUrl` is given
 * (a superuser URL of a real PostgreSQL server with pgvector), a new database created on that
 * server for this caller alone and dropped by `drop()`.
 */
export interface FreshDatabase {
  sql: SqlExecutor;
  /** Set for PGlite: the instance, to be served over a socket. */
  pglite?: PGlite;
  /** Set for a real server: a URL of the new database (superuser). */
  url?: string;
  drop(): Promise<void>;
}

export async function createDatabase(
  opts: { serverUrl?: string; label?: string } = {},
): Promise<FreshDatabase> {
  if (!opts.serverUrl) {
    const pglite = await PGlite.create({ extensions: { vector } });
    const sql = new PgliteExecutor(pglite);
    return { sql, pglite, drop: () => sql.close() };
  }
  const name = `sk_${(opts.label ?? 'db').replace(/[^a-z0-9_]/gi, '').toLowerCase()}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: opts.serverUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(opts.serverUrl);
  url.pathname = `/${name}`;
  const sql = new PgExecutor(url.toString());
  return {
    sql,
    url: url.toString(),
    async drop() {
      await sql.close();
      const c = new pg.Client({ connectionString: opts.serverUrl });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}
