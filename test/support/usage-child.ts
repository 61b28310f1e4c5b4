/**
 * A job process for test/usage.test.ts: it holds one leased session (one user line), waits until
 * a lease renewal has carried the turn's usage, says `session over`, and then stays alive without
 * closing its session, to be killed. argv: client id, sidekick slug, job id, the user's line.
 * Environment: the test bed's (with a short SESSION_LEASE_TTL_S).
 */
import { initializeLogger, voice } from '@livekit/agents';
import { createLLM } from '../../src/agent/models.js';
import { createRuntime } from '../../src/agent/runtime.js';
import { prepareSession } from '../../src/agent/session.js';
import { loadConfig } from '../../src/config.js';
import { metadataFor } from './after-session.js';
import { captureLogs } from './logs.js';

initializeLogger({ pretty: false, level: 'silent' });
const [clientId, agentSlug, jobId, line] = process.argv.slice(2) as [string, string, string, string];
const runtime = createRuntime(loadConfig(process.env), captureLogs().log);
const prepared = await prepareSession(runtime, metadataFor({ clientId, agentSlug }), runtime.log, {
  sessionId: jobId,
  lease: true,
});
const session = new voice.AgentSession({ llm: createLLM(runtime.config) });
prepared.attach(session);
await session.start({ agent: prepared.agent });
await session.run({ userInput: line }).wait();
await session.close();
// Renewals come every third of the lease's lifetime: wait for one after the turn.
await new Promise((r) => setTimeout(r, (runtime.config.leases.ttlS * 1000) / 3 + 500));
process.stdout.write('session over\n');
setInterval(() => undefined, 1000);
