import { type Command, Option } from 'commander';
import { UsageError } from '../ops/errors.js';
import type { WorkItem } from '../work/queue.js';
import { redeliverWebhook, WEBHOOK } from '../work/webhook.js';
import { type CommandContext, oneOf, parseCount, parseUuid } from './shared.js';

const STATUSES = ['pending', 'running', 'done', 'failed'] as const;

/** `sidekick webhooks ...`: a client's end-of-session report deliveries. */
export function webhookCommands(program: Command, ctx: CommandContext): void {
  const hooks = program.command('webhooks').description("a client's end-of-session webhook deliveries");

  hooks
    .command('list')
    .description('deliveries, newest first: status, attempts, the answer or why it was given up')
    .requiredOption('--client <id>', 'client id', parseUuid)
    .addOption(
      new Option('--status <status>', 'only this status').choices(STATUSES).argParser(oneOf(STATUSES)),
    )
    .option('--limit <n>', 'at most this many', parseCount, 50)
    .option('--json', 'print as JSON')
    .action(async (o: { client: string; status?: WorkItem['status']; limit: number; json?: boolean }) => {
      const queue = ctx.operations().worker().work;
      const items = await queue.list({ clientId: o.client, kind: WEBHOOK, status: o.status, limit: o.limit });
      if (o.json) return ctx.json({ deliveries: items.map(delivery) });
      if (!items.length) return ctx.out('no webhook deliveries');
      for (const line of formatDeliveries(items)) ctx.out(line);
    });

  hooks
    .command('redeliver')
    .description(
      'queue a delivery again (a new event id; a worker sends it); the report is built anew from the database',
    )
    .requiredOption('--client <id>', 'client id', parseUuid)
    .requiredOption('--id <uuid>', 'the delivery to send again (from `webhooks list`)', parseUuid)
    .option('--json', 'print the result as JSON')
    .action(async (o: { client: string; id: string; json?: boolean }) => {
      const queue = ctx.operations().worker().work;
      const [item] = (await queue.list({ clientId: o.client, kind: WEBHOOK, limit: 1000 })).filter(
        (i) => i.id === o.id,
      );
      if (!item)
        throw new UsageError(
          `--id: client ${o.client} has no webhook delivery ${o.id} (see \`sidekick webhooks list\`)`,
        );
      const again = await redeliverWebhook(queue, item);
      if (o.json) return ctx.json({ queued: delivery(again), redelivery_of: item.id });
      ctx.out(
        `queued delivery ${again.id} (again of ${item.id}); a worker sends it, \`sidekick webhooks list\` shows how it went`,
      );
    });
}

function delivery(i: WorkItem) {
  const payload = i.payload as { conversation_id?: string; session_id?: string; redelivery_of?: string };
  return {
    id: i.id,
    status: i.status,
    attempts: i.attempts,
    max_attempts: i.max_attempts,
    conversation_id: payload.conversation_id ?? null,
    redelivery_of: payload.redelivery_of ?? null,
    created_at: i.created_at,
    finished_at: i.finished_at,
    next_attempt_at: i.status === 'pending' ? i.run_after : null,
    last_error: i.last_error,
    result: i.result,
  };
}

export function formatDeliveries(items: readonly WorkItem[]): string[] {
  return [
    `${'id'.padEnd(36)}  ${'status'.padEnd(7)} tries  ${'created (UTC)'.padEnd(19)}  outcome`,
    ...items.map((i) => {
      const d = delivery(i);
      const outcome =
        i.status === 'done'
          ? `delivered: HTTP ${(i.result as { status?: number } | null)?.status ?? '?'}`
          : i.status === 'failed'
            ? `given up: ${i.last_error ?? '?'}`
            : i.last_error
              ? `retrying at ${i.run_after}: ${i.last_error}`
              : 'waiting';
      return `${d.id}  ${i.status.padEnd(7)} ${`${i.attempts}/${i.max_attempts}`.padStart(5)}  ${new Date(i.created_at).toISOString().slice(0, 19).replace('T', ' ')}  ${outcome}`;
    }),
  ];
}
