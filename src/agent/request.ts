import type { JobRequest } from '@livekit/agents';
import type { Logger } from 'pino';
import { TenancyError } from '../tenancy/errors.js';
import { SessionRefusedError } from './errors.js';
import { parseJobMetadata } from './metadata.js';
import type { WorkerRuntime } from './runtime.js';
import { planSession } from './session-plan.js';

export type JobDecision = { accept: true } | { accept: false; code: string; reason: string };

/**
 * Whether to take a job, decided before any room is joined: metadata must be valid, the client
 * known and ready, its sidekick within the client's limits and allowed at least one channel (the
 * whole session plan is made, by the same function the job uses). A client database that cannot
 * answer is not a reason to refuse: the job starts degraded rather than leaving the user without a
 * sidekick.
 */
export async function decideJob(
  metadataJson: string | undefined,
  runtime: Pick<WorkerRuntime, 'connections' | 'embedder'>,
  log: Logger,
): Promise<JobDecision> {
  try {
    await planSession(parseJobMetadata(metadataJson), runtime.connections, log, {
      claimConversation: false,
      embedder: runtime.embedder,
    });
    return { accept: true };
  } catch (err) {
    // Without the platform's record nobody knows where the data lives: refuse, the dispatcher retries.
    if (err instanceof SessionRefusedError || err instanceof TenancyError) {
      return { accept: false, code: err.code, reason: err.message };
    }
    return { accept: true };
  }
}

/** LiveKit's requestFunc: accept or reject, with the reason logged. */
export function requestHandler(
  runtime: Pick<WorkerRuntime, 'connections' | 'embedder'>,
  log: Logger,
  agentName: string,
) {
  return async (req: JobRequest): Promise<void> => {
    const jobLog = log.child({ job_id: req.job.id });
    const decision = await decideJob(req.job.metadata, runtime, jobLog);
    if (decision.accept) {
      await req.accept(agentName);
      return;
    }
    jobLog.warn({ room: req.room?.name, code: decision.code, reason: decision.reason }, 'job rejected');
    await req.reject();
  };
}
