import type { JobRequest } from '@livekit/agents';
import type { Logger } from 'pino';
import { TenancyError } from '../tenancy/errors.js';
import type { TierLabel } from '../usage/metrics.js';
import { leaseFor, SessionLeaseError } from '../usage/session-leases.js';
import { SessionRefusedError } from './errors.js';
import { parseJobMetadata } from './metadata.js';
import type { WorkerRuntime } from './runtime.js';
import { planSession } from './session-plan.js';

export type JobDecision = { accept: true } | { accept: false; code: string; reason: string };

type DecisionRuntime = Pick<WorkerRuntime, 'connections' | 'embedder'> &
  Partial<Pick<WorkerRuntime, 'leases' | 'metrics'>>;

/**
 * Whether to take a job, decided before any room is joined: metadata must be valid, the client
 * known and ready, its sidekick within the client's limits and allowed at least one channel (the
 * whole session plan is made, by the same function the job uses). A client database that cannot
 * answer is not a reason to refuse: the job starts degraded rather than leaving the user without a
 * sidekick. With a job id, the job's slot is then taken (a pending lease in the platform database,
 * atomic across workers): a client at its max_concurrent_sessions or out of its month's
 * max_session_minutes is refused, naming the limit, and so is a job whose lease the platform
 * database cannot answer for (no cap and no bill could hold for it).
 */
export async function decideJob(
  metadataJson: string | undefined,
  runtime: DecisionRuntime,
  log: Logger,
  jobId?: string,
): Promise<JobDecision> {
  let tier: TierLabel = 'unknown';
  const decision = await (async (): Promise<JobDecision> => {
    try {
      const planned = await planSession(parseJobMetadata(metadataJson), runtime.connections, log, {
        claimConversation: false,
        embedder: runtime.embedder,
      });
      tier = planned.plan.tier;
      if (jobId && runtime.leases) {
        const { session, limits } = leaseFor(jobId, planned);
        await runtime.leases.acquire(session, limits, { start: false });
      }
      return { accept: true };
    } catch (err) {
      // Without the platform's record nobody knows where the data lives: refuse, the dispatcher retries.
      if (err instanceof SessionRefusedError || err instanceof TenancyError) {
        return { accept: false, code: err.code, reason: err.message };
      }
      if (err instanceof SessionLeaseError)
        return { accept: false, code: 'lease_unavailable', reason: err.message };
      return { accept: true };
    }
  })();
  runtime.metrics?.jobDecided(tier, decision);
  return decision;
}

/** LiveKit's requestFunc: accept or reject, with the reason logged. */
export function requestHandler(runtime: DecisionRuntime, log: Logger, agentName: string) {
  return async (req: JobRequest): Promise<void> => {
    const jobLog = log.child({ job_id: req.job.id });
    const decision = await decideJob(req.job.metadata, runtime, jobLog, req.job.id);
    if (decision.accept) {
      try {
        await req.accept(agentName);
      } catch (err) {
        // Not taken after all: the slot goes back now rather than when its pending lease expires.
        await runtime.leases?.release(req.job.id).catch(() => undefined);
        throw err;
      }
      return;
    }
    jobLog.warn({ room: req.room?.name, code: decision.code, reason: decision.reason }, 'job rejected');
    await req.reject();
  };
}
