/** Errors of the tenancy layer. Each carries what an operator needs to act, and a stable `code`. */
export abstract class TenancyError extends Error {
  abstract readonly code: string;
  constructor(
    message: string,
    readonly clientId: string | undefined,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** The platform database has no such client: a wrong id in job metadata or in a command. */
export class ClientNotFoundError extends TenancyError {
  readonly code = 'client_not_found';
  constructor(clientId: string) {
    super(
      `client ${clientId} is not in the platform database (clients table): check the client id`,
      clientId,
    );
  }
}

export class ClientNotReadyError extends TenancyError {
  readonly code = 'client_not_ready';
  constructor(
    clientId: string,
    readonly status: string,
  ) {
    const why: Record<string, string> = {
      pending: 'its provisioning has not started',
      provisioning: 'it is still being provisioned',
      failed: 'its provisioning failed: run `sidekick clients create` again to finish it',
      suspended: 'it is suspended',
      migrating: 'it is moving between tiers: retry in a minute',
    };
    super(`client ${clientId} is not ready (${status}): ${why[status] ?? 'unknown status'}`, clientId);
  }
}

export class PoolUnavailableError extends TenancyError {
  readonly code = 'pool_unavailable';
  constructor(clientId: string, poolId: string | null, reason: string) {
    super(`shared pool ${poolId ?? '(none)'} of client ${clientId} is unavailable: ${reason}`, clientId);
  }
}

export class MissingCredentialsError extends TenancyError {
  readonly code = 'missing_credentials';
  constructor(
    clientId: string,
    readonly missing: string[],
  ) {
    super(
      `dedicated client ${clientId} has no ${missing.join(', ')} in the platform clients table: finish its provisioning`,
      clientId,
    );
  }
}

/** A write or call that names another client's id: refused before anything is sent. */
export class CrossTenantAccessError extends TenancyError {
  readonly code = 'cross_tenant_access';
  constructor(clientId: string, target: string, otherClientId: unknown) {
    super(
      `refused: ${target} for client ${clientId} names client ${String(otherClientId)}; a tenant may only touch its own rows`,
      clientId,
    );
  }
}
