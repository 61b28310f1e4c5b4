import { z } from 'zod';
import type { PlatformAdmin } from '../ops/platform.js';
import { request } from '../ops/requests.js';
import type { ClientConnectionManager } from '../tenancy/connections.js';
import { asClientId } from '../tenancy/types.js';
import { LATENCY_COMPONENTS, type LatencyComponent } from './latency.js';

/**
 * `sidekick usage`: what the usage ledger (platform database) and the stored per-turn latency (each
 * client's own database) say about a period. Sums and percentiles are computed in the databases
 * (usage_report, usage_top, turn_latency_report: migrations 008), so a busy month is one small
 * answer, never every row. A session counts in the period it started in.
 */

export interface Period {
  from: Date;
  /** Exclusive. */
  to: Date;
}

const num = z.coerce.number();

const usageRow = z.object({
  agent_slug: z.string(),
  sessions: num,
  minutes: num,
  audio_in_minutes: num,
  audio_out_minutes: num,
  llm_prompt_tokens: num,
  llm_completion_tokens: num,
  tts_characters: num,
  stt_minutes: num,
  embedding_tokens: num,
  tool_calls: num,
  recovered: num,
});
export type SidekickUsage = Omit<z.infer<typeof usageRow>, 'agent_slug'>;

const latencyRow = z.object({
  agent_slug: z.string(),
  component: z.enum(LATENCY_COMPONENTS),
  turns: num,
  p50_ms: num,
  p90_ms: num,
  p99_ms: num,
});
export interface Percentiles {
  turns: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
}

export interface ClientUsageReport {
  client_id: string;
  name: string;
  tier: string;
  from: string;
  to: string;
  sidekicks: Array<{
    agent_slug: string;
    usage: SidekickUsage;
    latency: Partial<Record<LatencyComponent, Percentiles>>;
  }>;
  totals: SidekickUsage;
  /** Why there are no latency figures (the client's database did not answer, or lacks the report). */
  latency_unavailable: string | null;
}

const ZERO: SidekickUsage = Object.freeze({
  sessions: 0,
  minutes: 0,
  audio_in_minutes: 0,
  audio_out_minutes: 0,
  llm_prompt_tokens: 0,
  llm_completion_tokens: 0,
  tts_characters: 0,
  stt_minutes: 0,
  embedding_tokens: 0,
  tool_calls: 0,
  recovered: 0,
});

const add = (a: SidekickUsage, b: SidekickUsage): SidekickUsage =>
  Object.fromEntries(
    (Object.keys(ZERO) as Array<keyof SidekickUsage>).map((k) => [k, Math.round((a[k] + b[k]) * 100) / 100]),
  ) as unknown as SidekickUsage;

export async function clientUsage(
  deps: { platform: PlatformAdmin; connections: ClientConnectionManager },
  clientId: string,
  period: Period,
): Promise<ClientUsageReport> {
  const client = await deps.platform.getClient(clientId);
  const { data } = await request(`reading the usage of client ${clientId}`, () =>
    deps.platform.db
      .rpc('usage_report', {
        p_client_id: clientId,
        p_from: period.from.toISOString(),
        p_to: period.to.toISOString(),
      })
      .retry(false),
  );
  const usage = z.array(usageRow).parse(data ?? []);

  let latency: z.infer<typeof latencyRow>[] = [];
  let unavailable: string | null = null;
  try {
    const { db } = await deps.connections.forClient(asClientId(clientId));
    const res = await db.rpc('turn_latency_report', {
      p_from: period.from.toISOString(),
      p_to: period.to.toISOString(),
      p_agent_slug: null,
    });
    if (res.error) throw new Error(res.error.message);
    latency = z.array(latencyRow).parse(res.data ?? []);
  } catch (err) {
    unavailable = `the client's database did not give its latency report (${(err as Error).message}); apply migrations 008 to it if it lacks turn_latency_report`;
  }

  const slugs = [...new Set([...usage.map((u) => u.agent_slug), ...latency.map((l) => l.agent_slug)])].sort();
  const sidekicks = slugs.map((slug) => {
    const { agent_slug: _, ...u } = usage.find((r) => r.agent_slug === slug) ?? { agent_slug: slug, ...ZERO };
    const parts = latency.filter((l) => l.agent_slug === slug);
    return {
      agent_slug: slug,
      usage: u,
      latency: Object.fromEntries(
        parts.map((l) => [
          l.component,
          { turns: l.turns, p50_ms: round1(l.p50_ms), p90_ms: round1(l.p90_ms), p99_ms: round1(l.p99_ms) },
        ]),
      ),
    };
  });
  return {
    client_id: client.id,
    name: client.name,
    tier: client.tier,
    from: period.from.toISOString(),
    to: period.to.toISOString(),
    sidekicks,
    totals: sidekicks.reduce((t, s) => add(t, s.usage), ZERO),
    latency_unavailable: unavailable,
  };
}

const round1 = (v: number) => Math.round(v * 10) / 10;

/** What `usage --top` can sort by: the cost drivers. */
export const COST_DRIVERS = [
  'minutes',
  'llm_tokens',
  'tts_characters',
  'stt_minutes',
  'embedding_tokens',
  'sessions',
] as const;
export type CostDriver = (typeof COST_DRIVERS)[number];

const topRow = z.object({
  client_id: z.string(),
  name: z.string().nullable(),
  tier: z.string(),
  sessions: num,
  minutes: num,
  llm_tokens: num,
  tts_characters: num,
  stt_minutes: num,
  embedding_tokens: num,
  tool_calls: num,
});
export type TopClient = z.infer<typeof topRow>;

/** The clients that used the most of `by` in the period, largest first. */
export async function topUsage(
  platform: PlatformAdmin,
  period: Period,
  opts: { by: CostDriver; limit: number },
): Promise<TopClient[]> {
  const { data } = await request('reading the usage of every client', () =>
    platform.db
      .rpc('usage_top', {
        p_from: period.from.toISOString(),
        p_to: period.to.toISOString(),
        p_order: opts.by,
        p_limit: opts.limit,
      })
      .retry(false),
  );
  return z.array(topRow).parse(data ?? []);
}

/** The calendar month (UTC) `now` is in, up to now: the quota's period, and the reports' default. */
export function thisMonth(now = new Date()): Period {
  return { from: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)), to: now };
}
