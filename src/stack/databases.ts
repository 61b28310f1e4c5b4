import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { PGlite } from '@electric-sql/pglite';
import { stackModule } from './packages.js';
import { discardTemplate, pgliteStartParams, pgliteTemplate } from './pglite-template.js';
import { applyMigrations, type DatabaseKind, PgExecutor, PgliteExecutor, type SqlExecutor } from './sql.js';

/**
 * One fresh database: a new PGlite instance (with pgvector), or, when `serverUrl` is given (a
 * superuser URL of a real PostgreSQL server with pgvector), a new database created on that server
 * for this caller alone and dropped by `drop()`. Empty, or with `schema`: the local bootstrap and
 * that kind's migrations applied (PGlite loads them ready-made: pglite-template.ts).
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
  opts: { serverUrl?: string; label?: string; schema?: DatabaseKind } = {},
): Promise<FreshDatabase> {
  if (!opts.serverUrl) return createPglite(opts.schema);
  const db = await createServerDatabase(opts.serverUrl, opts.label);
  if (opts.schema) {
    try {
      await applyMigrations(db.sql, opts.schema, { bootstrap: true });
    } catch (err) {
      await db.drop().catch(() => {});
      throw err;
    }
  }
  return db;
}

async function createPglite(schema: DatabaseKind | undefined): Promise<FreshDatabase> {
  const [{ PGlite }, { vector }] = await Promise.all([
    stackModule('@electric-sql/pglite'),
    stackModule('@electric-sql/pglite-pgvector'),
  ]);
  const startParams = await pgliteStartParams();
  const template = await pgliteTemplate(schema);
  let pglite: PGlite | undefined;
  if (template) {
    try {
      pglite = await PGlite.create({
        extensions: { vector },
        startParams,
        loadDataDir: new Blob([await readFile(template)]),
      });
    } catch {
      await discardTemplate(template); // unreadable: built again next time; initdb this time
    }
  }
  if (!pglite) {
    pglite = await PGlite.create({ extensions: { vector }, startParams });
    if (schema) await applyMigrations(new PgliteExecutor(pglite), schema, { bootstrap: true });
  }
  const sql = new PgliteExecutor(pglite);
  return { sql, pglite, drop: () => sql.close() };
}

async function createServerDatabase(serverUrl: string, label = 'db'): Promise<FreshDatabase> {
  const opts = { serverUrl, label };
  const { default: pg } = await stackModule('pg');
  const name = `sk_${opts.label.replace(/[^a-z0-9_]/gi, '').toLowerCase()}_${randomBytes(4).toString('hex')}`;
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
