import { type Command, Option } from 'commander';
import { UsageError } from '../ops/errors.js';
import type { ClientRow } from '../ops/platform.js';
import { provisionClient, type VerifyResult, verifyClient } from '../ops/provision.js';
import { type DedicatedProjectSource, MANAGEMENT_API_URL, selectProvisioner } from '../ops/provisioners.js';
import { type ClientDescription, describeClient } from '../ops/show.js';
import { abortUpgrade, cleanupClient, type UpgradeResult, upgradeClient } from '../ops/upgrade.js';
import { DEDICATED_TIERS, type DedicatedTier } from '../tenancy/tiers.js';
import { TIERS, type Tier } from '../tenancy/types.js';
import { type CommandContext, oneOf, parseCount, parseJsonObject } from './shared.js';

/** `sidekick clients ...`: register, inspect and move clients. */
export function clientCommands(program: Command, ctx: CommandContext): void {
  const clients = program.command('clients').description('register, inspect and move clients');

  dedicatedOptions(
    clients
      .command('create')
      .description('register a client and provision where its data lives (re-run to finish a failed one)')
      .requiredOption('--name <name>', "the client's name")
      .addOption(
        new Option('--tier <tier>', 'tier').choices(TIERS).argParser(oneOf(TIERS)).default('adventurer'),
      )
      .option('--id <uuid>', 'client id (default: a new uuid); give it to re-run a failed provisioning')
      .option('--features <json>', 'per-client feature overrides (clients.tier_features)', parseJsonObject)
      .option(
        '--adopt-existing-data',
        "the existing project already holds this client's own data and records no owner yet: claim it",
      )
      .option('--json', 'print the result as JSON'),
  ).action(
    async (
      o: DedicatedProjectSource & {
        name: string;
        tier: Tier;
        id?: string;
        features?: Record<string, unknown>;
        adoptExistingData?: boolean;
        json?: boolean;
      },
    ) => {
      const ops = ctx.operations();
      const result = await provisionClient(
        {
          platform: ops.platform,
          pools: ops.pools,
          provisioner: o.tier === 'adventurer' ? undefined : selectProvisioner(o, ctx.io.env, ops.log),
          log: ops.log,
        },
        {
          clientId: o.id,
          name: o.name,
          tier: o.tier,
          tierFeatures: o.features,
          adoptExistingData: o.adoptExistingData,
        },
      );
      if (o.json) {
        ctx.json({
          client: publicClient(result.client),
          created: result.created,
          already_ready: result.alreadyReady,
        });
      } else {
        ctx.out(formatProvisioned(result.client, result.alreadyReady));
      }
    },
  );

  clients
    .command('verify')
    .description(
      "check that a dedicated client's project records this client as its owner; records it for projects from before the record",
    )
    .requiredOption('--client <id>', 'client id')
    .option('--json', 'print the result as JSON')
    .action(async (o: { client: string; json?: boolean }) => {
      const ops = ctx.operations();
      const result = await verifyClient({ platform: ops.platform, log: ops.log }, o.client);
      if (o.json) return ctx.json(result);
      ctx.out(formatVerified(result));
    });

  clients
    .command('show')
    .description("a client's platform record, where its data lives and how many rows it has")
    .requiredOption('--client <id>', 'client id')
    .option('--json', 'print as JSON')
    .action(async (o: { client: string; json?: boolean }) => {
      const ops = ctx.operations();
      const d = await describeClient({ platform: ops.platform, pools: ops.pools, log: ops.log }, o.client);
      if (o.json) return ctx.json(d);
      for (const line of formatClientDescription(d)) ctx.out(line);
    });

  dedicatedOptions(
    clients
      .command('upgrade')
      .description('move an adventurer into its own project (champion or paragon); re-run to resume')
      .requiredOption('--client <id>', 'client id')
      .addOption(
        new Option('--tier <tier>', 'target tier (default: champion; a resumed move keeps its own)')
          .choices(DEDICATED_TIERS)
          .argParser(oneOf(DEDICATED_TIERS)),
      )
      .option('--keep-source', 'keep the rows in the pool until `sidekick clients cleanup`')
      .option('--abort', 'back out of an upgrade that has not switched yet (opens the fence again)')
      .option('--page-size <n>', 'rows per request (at most 1000, the API row cap)', parseCount, 500)
      .option('--fence-settle-ms <ms>', 'wait after fencing for in-flight writes', parseCount, 2000)
      .option('--json', 'print the result as JSON'),
  ).action(
    async (
      o: DedicatedProjectSource & {
        client: string;
        tier?: DedicatedTier;
        abort?: boolean;
        keepSource?: boolean;
        pageSize: number;
        fenceSettleMs: number;
        json?: boolean;
      },
    ) => {
      const ops = ctx.operations();
      if (o.abort) {
        const aborted = await abortUpgrade(
          { platform: ops.platform, pools: ops.pools, log: ops.log },
          { clientId: o.client },
        );
        if (o.json) return ctx.json(aborted);
        ctx.out(`upgrade of ${aborted.clientId} aborted: its pool writes are open again`);
        const p = aborted.abandonedProject;
        if (p && aborted.partialCopy)
          ctx.out(`project ${p.ref} holds a partial copy of the client's rows: delete them or the project`);
        else if (p) ctx.out(`project ${p.ref} is no longer referenced by the client`);
        return;
      }
      const provisioner = selectProvisioner(o, ctx.io.env, ops.log);
      if (!provisioner) {
        throw new UsageError(
          'an upgrade needs the target project: set SUPABASE_ACCESS_TOKEN and --organization (Management API), or pass --existing-project-url',
        );
      }
      let lastTable = '';
      const result = await upgradeClient(
        { platform: ops.platform, pools: ops.pools, provisioner, log: ops.log },
        {
          clientId: o.client,
          tier: o.tier,
          keepSource: o.keepSource,
          pageSize: o.pageSize,
          fenceSettleMs: o.fenceSettleMs,
          onProgress: (p) => {
            if (p.table !== lastTable || p.copied > 0)
              ctx.err(`${p.table}: ${p.copied}/${p.total} rows copied`);
            lastTable = p.table;
          },
          hooks: { onPhase: (phase) => void ctx.err(`phase: ${phase}`) },
        },
      );
      if (o.json) return ctx.json(result);
      for (const line of formatUpgradeResult(result)) ctx.out(line);
    },
  );

  clients
    .command('cleanup')
    .description("delete a moved client's rows from its old shared pool")
    .requiredOption('--client <id>', 'client id')
    .option('--json', 'print the result as JSON')
    .action(async (o: { client: string; json?: boolean }) => {
      const ops = ctx.operations();
      const result = await cleanupClient(
        { platform: ops.platform, pools: ops.pools, log: ops.log },
        { clientId: o.client },
      );
      if (o.json) return ctx.json(result);
      ctx.out(
        `old pool rows of ${result.clientId} deleted: ${Object.entries(result.deleted)
          .map(([t, n]) => `${t} ${n}`)
          .join(', ')}`,
      );
    });
}

function dedicatedOptions(cmd: Command): Command {
  return cmd
    .option('--management-api-url <url>', 'Supabase Management API base URL', MANAGEMENT_API_URL)
    .option('--organization <slug>', 'organization for new projects (default: SUPABASE_ORGANIZATION_SLUG)')
    .option('--region <code>', 'region of new projects', 'us-east-1')
    .option('--instance-size <size>', 'compute size of new projects (default: the smallest)')
    .option(
      '--existing-project-url <url>',
      'use this project, which already has the dedicated schema (keys from DEDICATED_SUPABASE_SERVICE_ROLE_KEY and DEDICATED_SUPABASE_ANON_KEY)',
    )
    .option(
      '--existing-project-ref <ref>',
      'the ref of --existing-project-url (default: from its host name)',
    );
}

/** A client row without its credentials: what `--json` output may show. */
export function publicClient(c: ClientRow) {
  return {
    id: c.id,
    name: c.name,
    tier: c.tier,
    hosting_type: c.hosting_type,
    max_sidekicks: c.max_sidekicks,
    provisioning_status: c.provisioning_status,
    shared_pool_id: c.shared_pool_id,
    supabase_project_ref: c.supabase_project_ref,
    supabase_url: c.supabase_url,
  };
}

export function formatProvisioned(c: ClientRow, alreadyReady: boolean): string {
  const where =
    c.hosting_type === 'shared'
      ? `shared pool ${c.shared_pool_id}`
      : `project ${c.supabase_project_ref} (${c.supabase_url})`;
  return `${alreadyReady ? 'already ready' : 'ready'}: client ${c.id} "${c.name}", ${c.tier}, data in ${where}`;
}

export function formatVerified(r: VerifyResult): string {
  if (r.hosting === 'shared') {
    return `client ${r.clientId} lives in shared pool ${r.poolId}: the pool tells its clients apart by client_id; no owner record to verify`;
  }
  return r.owner === 'recorded'
    ? `client ${r.clientId} is now recorded as the owner of project ${r.projectRef} (it had no owner record; ${r.sidekicks} sidekick(s))`
    : `client ${r.clientId} is the recorded owner of project ${r.projectRef}`;
}

export function formatClientDescription(d: ClientDescription): string[] {
  const lines = [
    `client      ${d.id} "${d.name}"`,
    `tier        ${d.tier} (${d.hostingType}), max_sidekicks ${d.maxSidekicks ?? 'unlimited'}`,
    `provisioned ${d.provisioning.status}${d.provisioning.error ? `: ${d.provisioning.error}` : ''}`,
    `migration   ${d.migration.status}${d.migration.state?.phase ? ` (last phase: ${d.migration.state.phase})` : ''}`,
  ];
  if (d.pool) {
    lines.push(
      `pool        ${d.pool.name} (${d.pool.id}), write fence ${d.pool.writeFence ?? '(not registered)'}`,
    );
  }
  if (d.project) {
    lines.push(
      `project     ${d.project.ref ?? '?'} ${d.project.url ?? ''} (keys: ${d.project.hasServiceRoleKey ? 'stored' : 'missing'})`,
    );
  }
  if (d.rows) {
    lines.push(
      `rows        ${Object.entries(d.rows)
        .map(([t, n]) => `${t} ${n}`)
        .join(', ')}`,
    );
  }
  if (d.rowsError) lines.push(`rows        unavailable: ${d.rowsError}`);
  return lines;
}

export function formatUpgradeResult(result: UpgradeResult): string[] {
  if (result.outcome === 'already_upgraded') {
    return [`client ${result.clientId} is already ${result.tier}: nothing to do`];
  }
  const lines = result.tables.map(
    (t) =>
      `${t.table.padEnd(25)} ${String(t.rows).padStart(8)} rows verified${t.reconciled ? ` (${t.reconciled} copied again)` : ''}`,
  );
  lines.push(
    `client ${result.clientId} is now ${result.tier} in project ${result.project?.ref}: ${result.rowsCopied} rows copied at ${Math.round(result.rowsPerSecond)} rows/s, ${result.totalSeconds.toFixed(1)} s in all`,
  );
  if (result.outcome === 'cleanup_pending') {
    lines.push('the pool still holds its rows: run `sidekick clients cleanup` when ready');
  }
  lines.push(
    'workers switch on their next lookup (CLIENT_CACHE_TTL_MS at most); stale writes are refused by the pool and retried',
  );
  return lines;
}
