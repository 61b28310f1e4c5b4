import { z } from 'zod';
import type { SupabaseClient } from '../tenancy/supabase.js';
import { isUuid } from '../tenancy/types.js';
import { DatabaseApiError, OpsError, UsageError } from './errors.js';
import { DEFAULT_RETRY, type RetryPolicy, request } from './requests.js';

/**
 * The one client a dedicated project belongs to, as the project itself records it
 * (migrations/dedicated/003_project_owner.sql: a one-row table, written once by
 * claim_project_owner()). The platform's refs and URLs can name one project in many ways; the
 * record inside the project cannot be named differently.
 */

/** How the claim reaches the project: SQL as its owner, or its API with the service-role key. */
export type ProjectChannel =
  | { kind: 'sql'; query: (sql: string) => Promise<Array<Record<string, unknown>>> }
  | { kind: 'api'; db: SupabaseClient };

const claimAnswer = z.object({
  owner: z.string().nullable(),
  claimed: z.boolean(),
  holds_data: z.boolean(),
  sidekicks: z.coerce.number(),
});

export interface OwnerRecord {
  /** The project's owner after the call (this client, unless refused). */
  owner: string;
  /** Recorded by this call (false: it was recorded before). */
  claimed: boolean;
  /** Sidekicks (agents rows) the project holds. */
  sidekicks: number;
}

/** The project records another client as its owner. */
export class ProjectOwnerConflictError extends UsageError {
  constructor(
    readonly ref: string,
    readonly clientId: string,
    readonly owner: string,
  ) {
    super(
      `project ${ref} belongs to client ${owner} (its project_owner record): a dedicated project holds one client, however its URL or ref is written; give client ${clientId} its own project`,
    );
  }
}

/** The project records no owner yet and already holds data: it may be another client's. */
export class UnownedProjectHoldsDataError extends UsageError {
  constructor(
    readonly ref: string,
    readonly clientId: string,
    readonly sidekicks: number,
  ) {
    super(
      `project ${ref} records no owner but already holds data (${sidekicks} sidekick(s)): it may be another client's project from before owner records. If it is that client's, record it with \`sidekick clients verify --client <that client>\`; if it is client ${clientId}'s own existing project, run \`sidekick clients create\` again with --adopt-existing-data`,
    );
  }
}

export interface ClaimOptions {
  /** The project's ref, for messages. */
  ref: string;
  clientId: string;
  /**
   * Claim an unowned project that already holds data (a client's own existing project, or one the
   * platform already serves to this client); otherwise such a project is refused.
   */
  adoptData: boolean;
  retry?: RetryPolicy;
}

/**
 * Records the client as the project's owner unless the project has one, and checks the owner is
 * this client: throws ProjectOwnerConflictError or UnownedProjectHoldsDataError otherwise.
 * Safe to repeat (a second call for the same client changes nothing).
 */
export async function claimProjectOwner(channel: ProjectChannel, opts: ClaimOptions): Promise<OwnerRecord> {
  const { ref, clientId } = opts;
  if (!isUuid(clientId)) throw new UsageError(`client id "${clientId}" is not a uuid`);
  const answer = claimAnswer.safeParse(await callClaim(channel, opts));
  if (!answer.success) {
    throw new OpsError(`project ${ref}: unexpected claim_project_owner answer: ${answer.error.message}`);
  }
  const { owner, claimed, sidekicks } = answer.data;
  if (owner === null) throw new UnownedProjectHoldsDataError(ref, clientId, sidekicks);
  if (owner.toLowerCase() !== clientId.toLowerCase()) {
    throw new ProjectOwnerConflictError(ref, clientId, owner);
  }
  return { owner, claimed, sidekicks };
}

async function callClaim(channel: ProjectChannel, opts: ClaimOptions): Promise<unknown> {
  const what = `recording the owner of project ${opts.ref}`;
  const missing = () =>
    new UsageError(
      `project ${opts.ref} has no claim_project_owner function: apply migrations/dedicated (003_project_owner.sql) to it, then run the command again`,
    );
  if (channel.kind === 'sql') {
    // The id is a checked uuid and the flag a boolean: nothing here comes from outside unchecked.
    const rows = await channel
      .query(`SELECT claim_project_owner('${opts.clientId}'::uuid, ${opts.adoptData}) AS answer`)
      .catch((err: Error) => {
        if (/claim_project_owner.*does not exist/.test(err.message)) throw missing();
        throw err;
      });
    return rows[0]?.answer;
  }
  try {
    const { data } = await request(
      what,
      () =>
        channel.db
          .rpc('claim_project_owner', { p_client_id: opts.clientId, p_adopt_data: opts.adoptData })
          .retry(false),
      opts.retry ?? DEFAULT_RETRY,
    );
    return data;
  } catch (err) {
    if (err instanceof DatabaseApiError && (err.code === 'PGRST202' || err.code === '42883')) throw missing();
    throw err;
  }
}
