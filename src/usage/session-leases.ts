import { z } from 'zod';
import { ConcurrentSessionLimitError, type LimitSource, SessionMinutesQuotaError } from '../agent/errors.js';
import type { SupabaseClient } from '../tenancy/supabase.js';
import type { FeatureName, Limit, TierFeatures } from '../tenancy/tiers.js';
import type { Tier } from '../tenancy/types.js';
import type { UsageSnapshot } from './meter.js';

/**
 * A session's lease in the platform database (migrations/platform/008): what the concurrency cap
 * counts across every worker, and what carries the session's usage into the ledger even when its
 * process dies. requestFunc takes it `pending` (short), the job makes it `live` and renews it with
 * the usage so far, and finishes it into the ledger; a lease nobody renews expires, and a sweep
 * (any worker's main process, or the next acquire for that client) moves it into the ledger once.
 */

export interface LeaseSession {
  jobId: string;
  clientId: string;
  tier: Tier;
  agentSlug: string;
  agentId?: string | null | undefined;
  conversationId?: string | null | undefined;
}

export interface LeaseLimits {
  maxConcurrent: Limit;
  maxMinutes: Limit;
  /** Where the limits came from, for the refusal's message: the tier, unless an override set them. */
  tier: Tier;
  overridden: ReadonlySet<FeatureName>;
}

export interface LeaseTimes {
  /** A live lease's lifetime; renewed every third of it. */
  ttlSeconds: number;
  /** A pending lease's lifetime: how long an accepted job may take to start before its slot is free again. */
  pendingSeconds: number;
}

export type LeaseOperation = 'acquire' | 'start' | 'renew' | 'finish' | 'release' | 'settle';

/** The platform database did not answer a lease request, or refused it for a reason that is not a limit. */
export class SessionLeaseError extends Error {
  constructor(
    readonly operation: LeaseOperation,
    detail: string,
  ) {
    super(`session lease (${operation}): ${detail}`);
    this.name = 'SessionLeaseError';
  }
}

const grantSchema = z.union([
  z.object({
    granted: z.literal(true),
    status: z.enum(['pending', 'live', 'ended']),
    started_at: z.string().nullable(),
    live: z.number().int(),
  }),
  z.object({
    granted: z.literal(false),
    limit: z.enum(['max_concurrent_sessions', 'max_session_minutes']),
    max: z.number().int(),
    live: z.number().int().optional(),
    used_minutes: z.number().optional(),
  }),
]);

export interface LeaseGrant {
  status: 'pending' | 'live' | 'ended';
  /** When the session started (the platform database's clock); null while pending. */
  startedAt: string | null;
  /** The client's sessions holding a slot now, this one included. */
  live: number;
}

export class SessionLeases {
  constructor(
    /** The platform project with its service-role key. */
    private readonly platform: SupabaseClient,
    /** Who renews the leases this process takes: unique per process (workerIdentity()). */
    readonly holder: string,
    readonly times: LeaseTimes,
    /** Told how long each request took (the lease's overhead, in /metrics). */
    private readonly observe?: (operation: LeaseOperation, seconds: number) => void,
  ) {}

  /**
   * Takes the session's slot: pending (requestFunc, before the room is joined) or started (the job).
   * The same job again keeps the slot it has. Throws ConcurrentSessionLimitError or
   * SessionMinutesQuotaError when a limit refuses it, SessionLeaseError when the database cannot say.
   */
  async acquire(session: LeaseSession, limits: LeaseLimits, opts: { start: boolean }): Promise<LeaseGrant> {
    const operation = opts.start ? 'start' : 'acquire';
    const data = await this.call(operation, 'acquire_session_lease', {
      p_job_id: session.jobId,
      p_client_id: session.clientId,
      p_holder: this.holder,
      p_tier: session.tier,
      p_agent_slug: session.agentSlug,
      p_max_concurrent: limits.maxConcurrent,
      p_max_minutes: limits.maxMinutes,
      p_seconds: opts.start ? this.times.ttlSeconds : this.times.pendingSeconds,
      p_start: opts.start,
      p_agent_id: session.agentId ?? null,
      p_conversation_id: session.conversationId ?? null,
    });
    const parsed = grantSchema.safeParse(data);
    if (!parsed.success) throw new SessionLeaseError(operation, `unexpected answer ${JSON.stringify(data)}`);
    const grant = parsed.data;
    if (!grant.granted) {
      const source: LimitSource = { tier: limits.tier, overridden: limits.overridden.has(grant.limit) };
      if (grant.limit === 'max_concurrent_sessions') {
        throw new ConcurrentSessionLimitError(session.clientId, grant.max, grant.live ?? grant.max, source);
      }
      throw new SessionMinutesQuotaError(
        session.clientId,
        grant.max,
        grant.used_minutes ?? grant.max,
        source,
      );
    }
    return { status: grant.status, startedAt: grant.started_at, live: grant.live };
  }

  /** Another lifetime, with the usage so far; `ended` frees the slot. false: the lease is no longer this process's. */
  async renew(jobId: string, usage: UsageSnapshot, opts: { ended?: boolean } = {}): Promise<boolean> {
    const data = await this.call('renew', 'renew_session_lease', {
      p_job_id: jobId,
      p_holder: this.holder,
      p_seconds: this.times.ttlSeconds,
      p_usage: usage,
      p_ended: opts.ended ?? false,
    });
    return data === true;
  }

  /** The ledger row, from the final usage. false: it was written already (recovered by a sweep, or finished before). */
  async finish(jobId: string, usage: UsageSnapshot): Promise<boolean> {
    const data = await this.call('finish', 'finish_session_lease', {
      p_job_id: jobId,
      p_holder: this.holder,
      p_usage: usage,
    });
    return data === true;
  }

  /** Gives back a pending slot this process took (the job was not accepted after all). */
  async release(jobId: string): Promise<void> {
    const started = performance.now();
    const { error } = await this.platform
      .from('session_leases')
      .delete()
      .eq('job_id', jobId)
      .eq('holder', this.holder)
      .eq('status', 'pending')
      .retry(false);
    this.observe?.('release', (performance.now() - started) / 1000);
    if (error) throw new SessionLeaseError('release', error.message);
  }

  /** Moves expired leases (their process died) into the ledger; returns the rows written. */
  async settleExpired(limit = 100): Promise<number> {
    const data = await this.call('settle', 'settle_session_leases', {
      p_job_id: null,
      p_client_id: null,
      p_recorded_by: this.holder,
      p_limit: limit,
    });
    return typeof data === 'number' ? data : 0;
  }

  private async call(operation: LeaseOperation, fn: string, args: Record<string, unknown>): Promise<unknown> {
    const started = performance.now();
    const { data, error } = await this.platform.rpc(fn, args).retry(false);
    this.observe?.(operation, (performance.now() - started) / 1000);
    if (error) throw new SessionLeaseError(operation, error.message);
    return data;
  }
}

/** A planned session's lease: who it is for, and the limits its client's features set. */
export function leaseFor(
  jobId: string,
  planned: {
    plan: { tier: Tier; sidekick: { slug: string; id: string | null } };
    connection: { clientId: string; features: TierFeatures; overridden: ReadonlySet<FeatureName> };
    conversationId?: string;
  },
): { session: LeaseSession; limits: LeaseLimits } {
  const { plan, connection } = planned;
  return {
    session: {
      jobId,
      clientId: connection.clientId,
      tier: plan.tier,
      agentSlug: plan.sidekick.slug,
      agentId: plan.sidekick.id,
      conversationId: planned.conversationId ?? null,
    },
    limits: {
      maxConcurrent: connection.features.max_concurrent_sessions,
      maxMinutes: connection.features.max_session_minutes,
      tier: plan.tier,
      overridden: connection.overridden,
    },
  };
}
