import { type Command, Option } from 'commander';
import { POST_SESSION } from '../work/post-session.js';
import type { WorkItem } from '../work/queue.js';
import { TRANSCRIPT_SPOOL } from '../work/spool.js';
import { WEBHOOK } from '../work/webhook.js';
import { type CommandContext, oneOf, parseCount, parseUuid } from './shared.js';

const STATUSES = ['pending', 'running', 'done', 'failed'] as const;
/** Every kind a worker has a handler for. */
const KINDS = [POST_SESSION, WEBHOOK, TRANSCRIPT_SPOOL] as const;

/** `sidekick work list`: the platform's durable work queue (post-session jobs, deliveries, spooled turns). */
export function workCommands(program: Command, ctx: CommandContext): void {
  const work = program
    .command('work')
    .description("the platform's durable work: post-session jobs, webhook deliveries, spooled turns");
  work
    .command('list')
    .description('items, newest first: kind, status, attempts, the last error (never their payload)')
    .option('--client <id>', 'only this client', parseUuid)
    .addOption(new Option('--kind <kind>', 'only this kind').choices(KINDS).argParser(oneOf(KINDS)))
    .addOption(
      new Option('--status <status>', 'only this status').choices(STATUSES).argParser(oneOf(STATUSES)),
    )
    .option('--limit <n>', 'at most this many', parseCount, 50)
    .option('--json', 'print as JSON')
    .action(
      async (o: {
        client?: string;
        kind?: string;
        status?: WorkItem['status'];
        limit: number;
        json?: boolean;
      }) => {
        const items = await ctx
          .operations()
          .worker()
          .work.list({ clientId: o.client, kind: o.kind, status: o.status, limit: o.limit });
        // Payloads may hold transcript text (spooled turns): only what an operator needs is shown.
        const rows = items.map(({ payload: _, ...i }) => i);
        if (o.json) return ctx.json({ items: rows });
        if (!rows.length) return ctx.out('no work items');
        ctx.out(
          `${'id'.padEnd(36)}  ${'kind'.padEnd(16)} ${'status'.padEnd(7)} tries  ${'client'.padEnd(36)}  ${'created (UTC)'.padEnd(19)}  last error`,
        );
        for (const i of rows) {
          ctx.out(
            `${i.id}  ${i.kind.padEnd(16)} ${i.status.padEnd(7)} ${`${i.attempts}/${i.max_attempts}`.padStart(5)}  ${(i.client_id ?? '-').padEnd(36)}  ${new Date(i.created_at).toISOString().slice(0, 19).replace('T', ' ')}  ${i.last_error ?? ''}`,
          );
        }
        if (rows.some((i) => i.status === 'pending')) {
          ctx.err(
            'pending items are done by a running worker (`npm start`, or the container): none runs them here',
          );
        }
      },
    );
}
