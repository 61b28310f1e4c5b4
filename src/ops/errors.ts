/**
 * Errors of the operations tooling, by what the operator should do about them: fix the command
 * (UsageError), stay within or raise a limit (LimitError), or run it again (any other OpsError).
 * The CLI's exit code for each is decided in one place, src/commands/exit-codes.ts.
 */

export class OpsError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A bad argument, a missing setting, a client in the wrong state for the command. */
export class UsageError extends OpsError {}

/** Refused by a limit: a tier limit (documents, size) or no capacity left in any shared pool. */
export class LimitError extends OpsError {
  constructor(
    readonly limit: string,
    message: string,
  ) {
    super(message);
  }
}

export class NoPoolCapacityError extends LimitError {
  constructor(clientId: string, detail: string) {
    super(
      'shared_pool_capacity',
      `no shared pool has room for client ${clientId}: ${detail}. Add a pool to shared_pool_config or raise max_clients of an active one, then run \`sidekick clients create\` again`,
    );
  }
}

/**
 * How the operator should read a database refusal: `input` (a value the command sent does not fit
 * its column, or a constraint on it: fix the input, exit 2), `conflict` (another row already holds
 * a unique value: choose another, exit 2), `fenced` (a tier move holds the client's writes: retry,
 * exit 1), `other` (worth retrying, or a fault to report: exit 1).
 */
export type DatabaseRefusal = 'input' | 'conflict' | 'fenced' | 'other';

/**
 * A request to a database API (PostgREST) failed; `code` is Postgres' SQLSTATE when there is one.
 * The message says what failed in words and, where the database names it, which field: the
 * SQLSTATE is kept in `code` (and in logs), not put in front of the operator for refusals it knows.
 */
export class DatabaseApiError extends OpsError {
  constructor(
    readonly what: string,
    readonly code: string | undefined,
    detail: string,
    readonly refusal: DatabaseRefusal = 'other',
    /** The column (or option) the refusal is about, when the database says. */
    readonly field?: string | undefined,
  ) {
    super(`${what}: ${detail}`);
  }
}

/**
 * Unique constraints of the migrations, by the field an operator knows them as. A conflict on one
 * of them names that field; any other constraint is named as the database names it.
 */
const UNIQUE_FIELDS: Readonly<Record<string, string>> = Object.freeze({
  unique_agent_slug_per_client: 'slug',
  agents_slug_key: 'slug',
  clients_pkey: 'id',
  clients_one_per_project: 'supabase_project_ref',
  unique_agent_document_per_client: 'document',
  unique_agent_document: 'document',
});

/** What a PostgREST error looks like in supabase-js results. */
export interface PostgrestErrorLike {
  message: string;
  code?: string | undefined;
  details?: string | null | undefined;
  hint?: string | null | undefined;
}

/** The database's refusal as the operator should read it (see DatabaseRefusal). */
export function dbError(what: string, error: PostgrestErrorLike): DatabaseApiError {
  const code = error.code || undefined;
  const message = error.message || 'request failed';
  if (code === '23505') {
    const constraint = /unique constraint "([^"]+)"/.exec(message)?.[1];
    const field = constraint ? (UNIQUE_FIELDS[constraint] ?? constraint) : undefined;
    const key = /^Key \(([^)]*)\)=/.exec(error.details ?? '')?.[1];
    return new DatabaseApiError(
      what,
      code,
      `another row already has this ${field ?? key ?? 'value'}: choose another${field ? ` ${field}` : ''}`,
      'conflict',
      field ?? key,
    );
  }
  if (code === '22P02' || code === '22007' || code === '22008' || code === '22003' || code === '22001') {
    // "invalid input syntax for type uuid: \"x\"", "value too long for type character varying(10)"...
    const type = /for type ([\w ]+?)(?::|$)/.exec(message)?.[1];
    return new DatabaseApiError(
      what,
      code,
      type ? `a value is not a valid ${type}` : 'a value does not fit its column',
      'input',
      type,
    );
  }
  if (code?.startsWith('23')) {
    // A constraint violation's details are "Failing row contains (...)": every column, keys included.
    const constraint = /constraint "([^"]+)"/.exec(message)?.[1];
    const column = /column "([^"]+)"/.exec(message)?.[1];
    const hint = error.hint ? `; ${error.hint}` : '';
    return new DatabaseApiError(
      what,
      code,
      `${message.replace(/ \(SQLSTATE \w+\)$/, '')}${hint}`,
      'input',
      column ?? constraint,
    );
  }
  if (code === '55000') {
    return new DatabaseApiError(
      what,
      code,
      `${message}: a tier move holds (or has moved) the client's rows; run the command again in a minute (\`sidekick clients show\` tells the state)`,
      'fenced',
    );
  }
  const detail = [message, error.details, error.hint].filter(Boolean).join('; ');
  return new DatabaseApiError(what, code, `${detail}${code ? ` (${code})` : ''}`);
}

/** Thrown by the `failAfterPages` hook of an upgrade: a stand-in for a crash half-way. */
export class InjectedFailure extends OpsError {}

/** The copied rows differ from the source and could not be reconciled. */
export class VerificationError extends OpsError {}

/** Throws a DatabaseApiError when a supabase-js result carries an error; returns the data otherwise. */
export function must<T>(what: string, result: { data: T; error: PostgrestErrorLike | null }): T {
  if (result.error) throw dbError(what, result.error);
  return result.data;
}
