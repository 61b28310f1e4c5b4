import type { Command } from 'commander';
import { describeUser, type Erasure, forgetUser, type UserRecord } from '../ops/erasure.js';
import { type CommandContext, confirmationNeeded, parseUuid, plural } from './shared.js';

/** `sidekick users ...`: what is kept about one end user of a client, and erasing it. */
export function userCommands(program: Command, ctx: CommandContext): void {
  const users = program
    .command('users')
    .description('what a client keeps about one of its end users; erasure');

  users
    .command('show')
    .description(
      'what is kept about the user: the overview(s) its sidekicks read, conversations and turns (counts, dates), pending work',
    )
    .requiredOption('--client <id>', 'client id', parseUuid)
    .requiredOption('--user <id>', 'the end user (user_id of the job metadata)', parseUuid)
    .option('--json', 'print as JSON')
    .action(async (o: { client: string; user: string; json?: boolean }) => {
      const ops = ctx.operations();
      const record = await describeUser(
        { connections: ops.worker().connections, platform: ops.platform.db },
        { clientId: o.client, userId: o.user },
      );
      if (o.json) return ctx.json(record);
      for (const line of formatUserRecord(record)) ctx.out(line);
    });

  users
    .command('forget')
    .description(
      "erase the user: their conversations, turns (and embeddings), overviews and the platform's pending work about them, in the client's own database (pool or dedicated project); prints what went (without --yes: only what would go)",
    )
    .requiredOption('--client <id>', 'client id', parseUuid)
    .requiredOption('--user <id>', 'the end user (user_id of the job metadata)', parseUuid)
    .option('--yes', "really erase the user's data")
    .option('--json', 'print the result as JSON')
    .action(async (o: { client: string; user: string; yes?: boolean; json?: boolean }) => {
      const ops = ctx.operations();
      const erased = await forgetUser(
        { connections: ops.worker().connections, platform: ops.platform.db },
        { clientId: o.client, userId: o.user, yes: o.yes === true },
      );
      if (o.json) ctx.json(erased);
      else ctx.out(formatErasure(erased));
      if (!erased.deleted) confirmationNeeded(`the data of user ${erased.userId}`);
    });
}

export function formatUserRecord(r: UserRecord): string[] {
  const when = (s: { count: number; first: string | null; last: string | null }) =>
    s.count ? `${s.count} (first ${s.first}, last ${s.last})` : '0';
  const lines = [
    `user          ${r.userId} of client ${r.clientId}`,
    `conversations ${when(r.conversations)}`,
    `turns         ${when(r.transcripts)}`,
  ];
  if (!r.overviews.length) lines.push('overview      (none)');
  for (const o of r.overviews) {
    lines.push(
      `overview      ${o.sidekick ? `of sidekick ${o.sidekick}` : 'client-wide'}, updated ${o.updatedAt ?? '?'}`,
    );
    for (const [k, v] of Object.entries(o.sections))
      lines.push(`  ${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`);
  }
  lines.push(
    `work items    ${r.work.length ? r.work.map((w) => `${w.kind} ${w.status} ${w.count}`).join(', ') : '(none)'}`,
  );
  return lines;
}

export function formatErasure(e: Erasure): string {
  const d = e.removes;
  const what = [
    plural(d.conversations, 'conversation'),
    plural(d.transcripts, 'turn'),
    plural(d.overviews, 'overview'),
    plural(d.work_items, 'work item'),
  ].join(', ');
  return e.deleted
    ? `forgot user ${e.userId} of client ${e.clientId}: ${what} deleted`
    : `would forget user ${e.userId} of client ${e.clientId}: ${what}`;
}
