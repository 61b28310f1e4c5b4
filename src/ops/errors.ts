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

/** A request to a database API (PostgREST) failed; `code` is Postgres' SQLSTATE when there is one. */
export class DatabaseApiError extends OpsError {
  constructor(
    readonly what: string,
    readonly code: string | undefined,
    detail: string,
  ) {
    super(`${what}: ${detail}${code ? ` (${code})` : ''}`);
  }
}

/** Thrown by the `failAfterPages` hook of an upgrade: a stand-in for a crash half-way. */
export class InjectedFailure extends OpsError {}

/** The copied rows differ from the source and could not be reconciled. */
export class VerificationError extends OpsError {}

/** What a PostgREST error looks like in supabase-js results. */
export interface PostgrestErrorLike {
  message: string;
  code?: string | undefined;
  details?: string | null | undefined;
  hint?: string | null | undefined;
}

export function dbError(what: string, error: PostgrestErrorLike): DatabaseApiError {
  // A constraint violation's details are "Failing row contains (...)": every column, keys included.
  const details = error.code?.startsWith('23') ? null : error.details;
  const detail = [error.message || 'request failed', details, error.hint].filter(Boolean).join('; ');
  return new DatabaseApiError(what, error.code || undefined, detail);
}

/** Throws a DatabaseApiError when a supabase-js result carries an error; returns the data otherwise. */
export function must<T>(what: string, result: { data: T; error: PostgrestErrorLike | null }): T {
  if (result.error) throw dbError(what, result.error);
  return result.data;
}
