/**
 * Why a job is refused before or while its session is planned. Each carries a stable `code` (for
 * the dispatcher's logs) and a message that names the field or record to fix.
 */
export abstract class SessionRefusedError extends Error {
  abstract readonly code: string;
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

export interface MetadataIssue {
  /** The metadata field, e.g. `client_id`, or `metadata` for the document as a whole. */
  field: string;
  problem: string;
}

export class InvalidJobMetadataError extends SessionRefusedError {
  readonly code = 'invalid_job_metadata';
  constructor(readonly issues: MetadataIssue[]) {
    super(`invalid job metadata: ${issues.map((i) => `${i.field}: ${i.problem}`).join('; ')}`);
  }
}

export class SidekickNotFoundError extends SessionRefusedError {
  readonly code = 'sidekick_not_found';
  constructor(clientId: string, agentSlug: string) {
    super(`client ${clientId} has no sidekick with agent_slug "${agentSlug}": check the job's agent_slug`);
  }
}

export class SidekickLimitError extends SessionRefusedError {
  readonly code = 'sidekick_over_limit';
  constructor(clientId: string, agentSlug: string, max: number) {
    super(
      `sidekick "${agentSlug}" of client ${clientId} is beyond the client's limit of ${max} sidekick(s) (its oldest ${max} stay usable): remove sidekicks or upgrade the tier`,
    );
  }
}

export class NoChannelAllowedError extends SessionRefusedError {
  readonly code = 'no_channel_allowed';
  constructor(clientId: string, agentSlug: string, reasons: string) {
    super(`sidekick "${agentSlug}" of client ${clientId} may use neither voice nor text: ${reasons}`);
  }
}

/**
 * The platform points this client at a dedicated project that records another client as its owner
 * (migrations/dedicated/003): nothing of it is read or written for this session.
 */
export class ProjectOwnedByAnotherClientError extends SessionRefusedError {
  readonly code = 'project_owned_by_another_client';
  constructor(
    readonly clientId: string,
    readonly owner: string,
  ) {
    super(
      `the dedicated project of client ${clientId} belongs to client ${owner} (its project_owner record): the platform record of ${clientId} points at another client's project; give ${clientId} its own project (\`sidekick clients verify --client ${clientId}\` says the same)`,
    );
  }
}

/** The job names a conversation that this client's sidekick may not continue for this user. */
export class InvalidConversationError extends SessionRefusedError {
  readonly code = 'invalid_conversation';
  constructor(conversationId: string, why: 'other_sidekick' | 'other_user' | 'unknown') {
    const what = {
      other_sidekick: "belongs to another of the client's sidekicks",
      other_user: 'belongs to another user',
      unknown: "is not one of this client's conversations",
    }[why];
    super(
      `conversation_id ${conversationId} ${what}: send the id of a conversation of this sidekick and user, or omit conversation_id to start a new one`,
    );
  }
}

/** Where a limit came from, for the refusal's message. */
export type LimitSource = { tier: string; overridden: boolean };
const limitSource = (s: LimitSource) =>
  s.overridden ? "this client's tier_features override" : `the ${s.tier} tier`;

/** The client has as many sessions running, across every worker, as max_concurrent_sessions allows. */
export class ConcurrentSessionLimitError extends SessionRefusedError {
  readonly code = 'max_concurrent_sessions';
  constructor(
    readonly clientId: string,
    readonly max: number,
    readonly live: number,
    source: LimitSource,
  ) {
    super(
      `client ${clientId} has ${live} session(s) running, its limit of max_concurrent_sessions = ${max} (from ${limitSource(source)}): a new one can start when one ends, or raise the limit (a tier upgrade or a tier_features override)`,
    );
  }
}

/** The client's sessions this calendar month (UTC) used the minutes max_session_minutes allows. */
export class SessionMinutesQuotaError extends SessionRefusedError {
  readonly code = 'max_session_minutes';
  constructor(
    readonly clientId: string,
    readonly max: number,
    readonly usedMinutes: number,
    source: LimitSource,
  ) {
    super(
      `client ${clientId} has used ${usedMinutes} of its ${max} session minutes this month, the quota of max_session_minutes = ${max} (from ${limitSource(source)}): it renews on the 1st (UTC), or raise it (a tier upgrade or a tier_features override)`,
    );
  }
}
