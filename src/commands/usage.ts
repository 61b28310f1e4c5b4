import { type Command, InvalidArgumentError, Option } from 'commander';
import { UsageError } from '../ops/errors.js';
import { LATENCY_COMPONENTS } from '../usage/latency.js';
import {
  type ClientUsageReport,
  COST_DRIVERS,
  type CostDriver,
  clientUsage,
  type Period,
  type SidekickUsage,
  type TopClient,
  thisMonth,
  topUsage,
} from '../usage/reports.js';
import { type CommandContext, oneOf, parseCount, parseUuid, plural } from './shared.js';

/**
 * `sidekick usage`: what sessions used (the usage ledger) and how fast their replies were (the
 * stored per-turn latency), for one client per sidekick, or across clients by a cost driver.
 */
export function usageCommand(program: Command, ctx: CommandContext): void {
  program
    .command('usage')
    .description(
      'sessions, minutes, tokens and reply latency (p50/p90/p99) of one client per sidekick (--client), or the clients that used the most (--top); sessions count in the period they started in',
    )
    .option('--client <id>', 'the client', parseUuid)
    .option('--top', 'every client, largest first by --by')
    .addOption(
      new Option('--by <driver>', 'what --top sorts by')
        .choices(COST_DRIVERS)
        .argParser(oneOf(COST_DRIVERS))
        .default('minutes'),
    )
    .option('--limit <n>', 'clients --top shows', parseCount, 20)
    .option(
      '--from <date>',
      'start, inclusive: YYYY-MM-DD (UTC) or an ISO time (default: the 1st of this month, UTC)',
      parseWhen,
    )
    .option('--to <date>', 'end, exclusive: YYYY-MM-DD (UTC) or an ISO time (default: now)', parseWhen)
    .option('--json', 'print as JSON')
    .action(
      async (o: {
        client?: string;
        top?: boolean;
        by: CostDriver;
        limit: number;
        from?: Date;
        to?: Date;
        json?: boolean;
      }) => {
        if (!o.client === !o.top) throw new UsageError('give either --client <id> or --top');
        const month = thisMonth();
        const period: Period = { from: o.from ?? month.from, to: o.to ?? month.to };
        if (period.from >= period.to) throw new UsageError('--from: must be before --to');
        const ops = ctx.operations();
        if (o.top) {
          if (o.limit < 1) throw new UsageError('--limit: must be at least 1');
          const top = await topUsage(ops.platform, period, { by: o.by, limit: o.limit });
          if (o.json)
            return ctx.json({
              from: period.from.toISOString(),
              to: period.to.toISOString(),
              by: o.by,
              clients: top,
            });
          for (const line of formatTop(top, period, o.by)) ctx.out(line);
          return;
        }
        const report = await clientUsage(
          { platform: ops.platform, connections: ops.worker().connections },
          o.client!,
          period,
        );
        if (o.json) return ctx.json(report);
        for (const line of formatClientUsage(report)) ctx.out(line);
      },
    );
}

/** `2026-05-01` (midnight UTC) or an ISO 8601 time with its zone. */
export function parseWhen(value: string): Date {
  const day = /^\d{4}-\d{2}-\d{2}$/.test(value);
  const when = new Date(day ? `${value}T00:00:00Z` : value);
  if (Number.isNaN(when.getTime()) || (!day && !/[zZ]|[+-]\d{2}:?\d{2}$/.test(value))) {
    throw new InvalidArgumentError(
      'expected YYYY-MM-DD (UTC) or an ISO time with its zone, e.g. 2026-05-01T12:00:00Z',
    );
  }
  return when;
}

const describeUsage = (u: SidekickUsage) =>
  `${plural(u.sessions, 'session')}, ${u.minutes} min (audio in ${u.audio_in_minutes}, out ${u.audio_out_minutes}), ` +
  `LLM ${plural(u.llm_prompt_tokens, 'prompt token')} + ${plural(u.llm_completion_tokens, 'completion token')}, TTS ${plural(u.tts_characters, 'character')}, ` +
  `STT ${u.stt_minutes} min, embeddings ${plural(u.embedding_tokens, 'token')}, ${plural(u.tool_calls, 'tool call')}` +
  (u.recovered ? `; ${u.recovered} recovered from a worker that died` : '');

export function formatClientUsage(r: ClientUsageReport): string[] {
  const lines = [`client ${r.client_id} (${r.name}, ${r.tier}), sessions started ${r.from} to ${r.to}`];
  if (!r.sidekicks.length) lines.push('  no sessions in this period');
  for (const s of r.sidekicks) {
    lines.push(`  sidekick ${s.agent_slug}: ${describeUsage(s.usage)}`);
    const parts = LATENCY_COMPONENTS.filter((c) => s.latency[c]);
    if (!parts.length) continue;
    lines.push(
      `    ${'latency (ms)'.padEnd(14)}${'turns'.padStart(7)}${'p50'.padStart(9)}${'p90'.padStart(9)}${'p99'.padStart(9)}`,
    );
    for (const c of parts) {
      const p = s.latency[c]!;
      lines.push(
        `    ${c.padEnd(14)}${String(p.turns).padStart(7)}${p.p50_ms.toFixed(1).padStart(9)}${p.p90_ms.toFixed(1).padStart(9)}${p.p99_ms.toFixed(1).padStart(9)}`,
      );
    }
  }
  if (r.sidekicks.length > 1) lines.push(`  total: ${describeUsage(r.totals)}`);
  if (r.latency_unavailable) lines.push(`  latency: ${r.latency_unavailable}`);
  return lines;
}

export function formatTop(top: TopClient[], period: Period, by: CostDriver): string[] {
  const lines = [
    `clients by ${by}, sessions started ${period.from.toISOString()} to ${period.to.toISOString()}`,
  ];
  if (!top.length) return [...lines, '  no sessions in this period'];
  for (const [i, c] of top.entries()) {
    lines.push(
      `  ${i + 1}. ${c.client_id} (${c.name ?? 'deleted client'}, ${c.tier}): ${plural(c.sessions, 'session')}, ${c.minutes} min, ` +
        `LLM ${plural(c.llm_tokens, 'token')}, TTS ${plural(c.tts_characters, 'character')}, STT ${c.stt_minutes} min, embeddings ${plural(c.embedding_tokens, 'token')}, ${plural(c.tool_calls, 'tool call')}`,
    );
  }
  return lines;
}
