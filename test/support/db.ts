import { createDatabase, type FreshDatabase } from '../../src/stack/databases.js';
import { applyMigrations, type DatabaseKind } from '../../src/stack/sql.js';

/**
 * Tests run on PGlite by default. With STACK_POSTGRES_URL set (a superuser URL of the real
 * PostgreSQL server started by scripts/real-postgres.sh), the same tests run on that server.
 */
export const REAL_SERVER_URL = process.env.STACK_POSTGRES_URL || undefined;
export const ON_REAL_SERVER = REAL_SERVER_URL !== undefined;

/** A new database with the local bootstrap and the migrations of `kind` applied. */
export async function migratedDatabase(kind: DatabaseKind): Promise<FreshDatabase> {
  const db = await createDatabase({ serverUrl: REAL_SERVER_URL, label: kind });
  await applyMigrations(db.sql, kind, { bootstrap: true });
  return db;
}
