import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { createSupabase } from '../tenancy/supabase.js';
import { overridableFeatures, TIER_FEATURES, TIER_HOSTING, tierFeatureProblems } from '../tenancy/tiers.js';
import { isUuid, type Tier } from '../tenancy/types.js';
import { ensureDedicatedProject, projectOf } from './dedicated.js';
import { UsageError } from './errors.js';
import type { ClientRow, PlatformAdmin, PoolAdmins } from './platform.js';
import { claimProjectOwner } from './project-owner.js';
import type { DedicatedProvisioner } from './provisioner.js';
import { type Clock, type OpsBase, request, systemClock } from './requests.js';

export interface ProvisionDeps extends OpsBase {
  platform: PlatformAdmin;
  pools: PoolAdmins;
  /** Needed for champion and paragon clients only. */
  provisioner?: DedicatedProvisioner | undefined;
}

export interface ProvisionRequest {
  /** Given: the run is idempotent (a re-run finishes a failed provisioning). Absent: a new uuid. */
  clientId?: string | undefined;
  name: string;
  tier: Tier;
  /** Per-client overrides of the tier's features (clients.tier_features). */
  tierFeatures?: Record<string, unknown> | undefined;
  /** Register the client even when another one has the same name (refused otherwise). */
  allowDuplicateName?: boolean | undefined;
  /**
   * The dedicated project is this client's own existing one and already holds its data (no owner
   * recorded yet): claim it anyway. Without it, a project holding data and no owner is refused.
   */
  adoptExistingData?: boolean | undefined;
}

/** Refuses overrides the tier does not take, naming each and the keys it does take. */
export function checkFeatureOverrides(tier: Tier, overrides: unknown): void {
  const problems = tierFeatureProblems(tier, overrides);
  if (problems.length) {
    throw new UsageError(
      `--features: ${problems.join('; ')} (keys the ${tier} tier lets a client override: ${overridableFeatures(tier).join(', ')})`,
    );
  }
}

export interface ProvisionResult {
  client: ClientRow;
  /** The row was created by this run (false: an earlier run's row was finished or found ready). */
  created: boolean;
  /** Already ready before this run: nothing was done. */
  alreadyReady: boolean;
}

/**
 * Registers a client and makes it ready. Adventurer: a shared pool with room is chosen by the
 * platform's assign_shared_pool() (which counts capacity under a lock), then the client is registered
 * in that pool (pool_clients, max_sidekicks 1). Champion or paragon: a dedicated project through the
 * provisioner. The platform row says 'provisioning' throughout and records each step, so a failure
 * leaves 'failed' with the reason and running this again finishes the job.
 */
export async function provisionClient(deps: ProvisionDeps, req: ProvisionRequest): Promise<ProvisionResult> {
  const clock: Clock = deps.clock ?? systemClock;
  const id = (req.clientId ?? randomUUID()).toLowerCase();
  if (!isUuid(id)) throw new UsageError(`--id: expected a uuid, got "${req.clientId}"`);
  if (!req.name.trim()) throw new UsageError('--name: the client needs a name');
  const hosting = TIER_HOSTING[req.tier];
  checkFeatureOverrides(req.tier, req.tierFeatures ?? {});
  const log = deps.log.child({ client_id: id, tier: req.tier });

  let row = await deps.platform.findClient(id);
  let created = false;
  if (row) {
    if (row.tier !== req.tier) {
      throw new UsageError(
        `client ${id} already exists as ${row.tier}; to change its tier use \`sidekick clients upgrade\``,
      );
    }
    // A re-run that asks for other overrides would be "already ready" with them silently ignored.
    if (req.tierFeatures && !isDeepStrictEqual(req.tierFeatures, row.tier_features ?? {})) {
      throw new UsageError(
        `--features: client ${id} already exists with other overrides (${JSON.stringify(row.tier_features ?? {})}); change them with \`sidekick clients update --client ${id} --features …\``,
      );
    }
    if (row.provisioning_status === 'ready') return { client: row, created: false, alreadyReady: true };
    if (row.provisioning_status === 'suspended') throw new UsageError(`client ${id} is suspended`);
    log.info({ status: row.provisioning_status }, 'continuing an earlier provisioning');
    row = await deps.platform.updateClient(id, {
      provisioning_status: 'provisioning',
      provisioning_error: null,
    });
  } else {
    if (hosting === 'dedicated' && !deps.provisioner) throw missingProvisioner(req.tier);
    // Operators find clients by name: a second one of the same name is most often a re-run without
    // --id (which would provision a second pool slot or project). Checked, not enforced by the
    // database: platforms that already hold duplicates must keep working.
    const twins = req.allowDuplicateName ? [] : await deps.platform.findClientsByName(req.name);
    if (twins.length) {
      const t = twins[0]!;
      throw new UsageError(
        `--name: client ${t.id} is already called "${t.name}" (${t.tier}, ${t.provisioning_status}); to finish that one run again with --id ${t.id}${t.provisioning_status === 'ready' ? '' : ` (or remove it: \`sidekick clients delete --client ${t.id}\`)`}, or choose another name, or pass --allow-duplicate-name`,
      );
    }
    const inserted = await deps.platform.insertClient({
      id,
      name: req.name.trim(),
      tier: req.tier,
      hosting_type: hosting,
      max_sidekicks: TIER_FEATURES[req.tier].max_sidekicks,
      tier_features: req.tierFeatures ?? {},
      provisioning_status: 'provisioning',
    });
    row = inserted.row;
    created = inserted.created;
  }

  try {
    row =
      hosting === 'shared'
        ? await provisionShared(deps, row)
        : await provisionDedicated(deps, row, req.adoptExistingData ?? false);
    row = await deps.platform.updateClient(id, {
      provisioning_status: 'ready',
      provisioning_error: null,
      provisioning_completed_at: clock.now().toISOString(),
    });
    log.info({ pool_id: row.shared_pool_id, project_ref: row.supabase_project_ref }, 'client provisioned');
    return { client: row, created, alreadyReady: false };
  } catch (err) {
    // Without the id a re-run would register a second client (and maybe a second project).
    // The failed record stays (status failed) so that either is possible.
    if (!req.clientId && err instanceof Error)
      err.message += ` (run again with --id ${id} to finish, or remove the failed record: \`sidekick clients delete --client ${id}\`)`;
    const reason = (err as Error).message;
    await deps.platform
      .updateClient(id, { provisioning_status: 'failed', provisioning_error: reason.slice(0, 2000) })
      .catch((e: Error) => log.error({ err: e }, 'could not record the provisioning failure'));
    log.warn({ reason }, 'provisioning failed; run it again to finish');
    throw err;
  }
}

async function provisionShared(deps: ProvisionDeps, client: ClientRow): Promise<ClientRow> {
  const poolId = client.shared_pool_id ?? (await deps.platform.assignSharedPool(client.id));
  const { db } = await deps.pools.forPool(poolId);
  // The pool's own record of the client: the sidekick limit and the write fence it enforces.
  await request(
    `registering client ${client.id} in pool ${poolId}`,
    () =>
      db
        .from('pool_clients')
        .upsert(
          { client_id: client.id, max_sidekicks: TIER_FEATURES.adventurer.max_sidekicks },
          { onConflict: 'client_id', ignoreDuplicates: true },
        )
        .retry(false),
    deps.retry,
  );
  return client.shared_pool_id ? client : deps.platform.getClient(client.id);
}

async function provisionDedicated(
  deps: ProvisionDeps,
  client: ClientRow,
  adoptData: boolean,
): Promise<ClientRow> {
  if (!deps.provisioner) throw missingProvisioner(client.tier);
  const { client: row } = await ensureDedicatedProject(
    { platform: deps.platform, provisioner: deps.provisioner, log: deps.log },
    client,
    { migrate: true, adoptData },
  );
  return row;
}

export type VerifyResult =
  | { clientId: string; hosting: 'shared'; poolId: string | null }
  | {
      clientId: string;
      hosting: 'dedicated';
      projectRef: string;
      /** 'recorded': this run wrote the owner record (the project predates it); 'already': it was there. */
      owner: 'recorded' | 'already';
      sidekicks: number;
    };

/**
 * `sidekick clients verify`: a dedicated client's project must record this client as its owner.
 * Projects from before the record get it here (the platform already serves them to this client,
 * so a project holding data is claimed); one that records another client is refused, exit 2. A
 * shared client has nothing to record: the pool tells its clients apart by client_id.
 */
export async function verifyClient(
  deps: Pick<ProvisionDeps, 'platform' | 'log' | 'retry'>,
  clientId: string,
): Promise<VerifyResult> {
  const row = await deps.platform.getClient(clientId);
  if (row.hosting_type === 'shared')
    return { clientId: row.id, hosting: 'shared', poolId: row.shared_pool_id };
  const project = projectOf(row);
  if (!project) {
    throw new UsageError(
      `client ${row.id} has no complete project record (URL and keys): finish its provisioning with \`sidekick clients create --id ${row.id}\``,
    );
  }
  const owner = await claimProjectOwner(
    { kind: 'api', db: createSupabase(project.url, project.serviceRoleKey) },
    { ref: project.ref, clientId: row.id, adoptData: true, retry: deps.retry },
  );
  if (owner.claimed) {
    deps.log.warn(
      { client_id: row.id, ref: project.ref, sidekicks: owner.sidekicks },
      'the project had no owner record: this client is now recorded as its owner',
    );
  }
  return {
    clientId: row.id,
    hosting: 'dedicated',
    projectRef: project.ref,
    owner: owner.claimed ? 'recorded' : 'already',
    sidekicks: owner.sidekicks,
  };
}

function missingProvisioner(tier: string): UsageError {
  return new UsageError(
    `a ${tier} client needs its own Supabase project: set SUPABASE_ACCESS_TOKEN and --organization (Supabase Management API), or pass --existing-project-url for a project that already has the dedicated schema, or (local stack) set LOCAL_STACK_CONTROL_URL and LOCAL_STACK_CONTROL_TOKEN from \`npm run stack\``,
  );
}
