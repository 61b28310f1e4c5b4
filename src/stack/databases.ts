import { randomBytes } from 'node:crypto';
import type { PGlite } from '@electric-sql/pglite';
import { stackModule } from './packages.js';
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
    const [{ PGlite }, { vector }] = await Promise.all([
      stackModule('@electric-sql/pglite'),
      stackModule('@electric-sql/pglite-pgvector'),
    ]);
    const pglite = await PGlite.create({ extensions: { vector } });
    const sql = new PgliteExecutor(pglite);
    return { sql, pglite, drop: () => sql.close() };
  }
  const { default: pg } = await stackModule('pg');
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
  const sql = new PgExecutor(new pg.Pool({ connectionString: url.toString(), max: 4 }));
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
