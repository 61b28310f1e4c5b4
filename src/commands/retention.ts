import type { Command } from 'commander';
import { OpsError } from '../ops/errors.js';
import { type ClientSweep, type SweepResult, sweepRetention } from '../ops/retention.js';
import { Leases } from '../work/leases.js';
import { workerIdentity } from '../work/queue.js';
import { type CommandContext, parseCount, parseUuid, plural } from './shared.js';

/** `sidekick retention run`: the retention sweep, now (the worker also runs it on a schedule). */
export function retentionCommands(program: Command, ctx: CommandContext): void {
  const retention = program
    .command('retention')
    .description("transcript retention: each tier's (or client's) transcript_retention_days");

  retention
    .command('run')
    .description(
      "delete turns (and their embeddings) older than each client's transcript_retention_days, then its conversations with no turn left, in pages; one sweep at a time across workers",
    )
    .option('--client <id>', 'only this client', parseUuid)
    .option('--dry-run', 'count what would be deleted, delete nothing')
    .option('--page-size <n>', 'rows per request (1 to 10000)', parseCount, 500)
    .option('--json', 'print the result as JSON')
    .action(async (o: { client?: string; dryRun?: boolean; pageSize: number; json?: boolean }) => {
      const ops = ctx.operations();
      const result = await sweepRetention(
        {
          platform: ops.platform,
          connections: ops.worker().connections,
          leases: new Leases(ops.platform.db),
          holder: `sidekick-cli:${workerIdentity()}`,
          log: ops.log,
        },
        {
          clientId: o.client,
          dryRun: o.dryRun,
          pageSize: o.pageSize,
          onClient: o.json ? undefined : (c) => ctx.err(formatClientSweep(c, o.dryRun === true)),
        },
      );
      if (o.json) ctx.json(result);
      else ctx.out(formatSweep(result));
      // The rest was swept; what failed is worth a retry (exit 1), as the contract says.
      const failed = result.clients.filter((c) => c.error).length;
      if (failed)
        throw new OpsError(
          `${plural(failed, 'client')} could not be swept: run \`sidekick retention run\` again`,
        );
    });
}

export function formatClientSweep(c: ClientSweep, dryRun: boolean): string {
  const what = dryRun ? 'would delete' : 'deleted';
  if (c.error) return `${c.clientId} ${c.name}: failed: ${c.error}`;
  if (c.skipped) return `${c.clientId} ${c.name}: ${c.tier}, ${c.skipped}`;
  return `${c.clientId} ${c.name}: ${c.tier}, ${plural(c.retentionDays ?? 0, 'day')} (before ${c.cutoff}): ${what} ${plural(c.transcripts, 'turn')}, ${plural(c.conversations, 'conversation')}`;
}

export function formatSweep(r: SweepResult): string {
  const failed = r.clients.filter((c) => c.error).length;
  return `${r.dryRun ? 'would delete' : 'deleted'} ${plural(r.transcripts, 'turn')} and ${plural(r.conversations, 'conversation')} of ${plural(r.clients.length, 'client')} in ${r.seconds.toFixed(2)} s (${Math.round(r.rowsPerSecond)} rows/s)${failed ? `; ${plural(failed, 'client')} failed (run again)` : ''}`;
}
