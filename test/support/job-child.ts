/**
 * A LiveKit job process, as far as the tests need one (test/usage.test.ts, test/metrics.test.ts):
 * a leased session of one client, its metrics sent to the main process when it asks
 * (SIDEKICK_METRICS_SOCKET), driven line by line from stdin:
 *   (start)  prepares and starts the session, sends its metrics, says `running`
 *   `turn`   one user turn, the AgentSession closed, then waits for a lease renewal to carry the
 *            turn's usage and says `session over` (to be killed there, or told `close`)
 *   `close`  closes the prepared session (ledger row, post-session work), sends its metrics, exits
 * argv: client id, sidekick slug, job id, the user's line. Environment: the test bed's.
 */
import { createInterface } from 'node:readline';
import { initializeLogger, voice } from '@livekit/agents';
import { createLLM } from '../../src/agent/models.js';
import { createRuntime } from '../../src/agent/runtime.js';
import { prepareSession } from '../../src/agent/session.js';
import { loadConfig } from '../../src/config.js';
import { METRICS_SOCKET_ENV, sendMetrics } from '../../src/usage/metrics-relay.js';
import { metadataFor } from './after-session.js';
import { captureLogs } from './logs.js';

initializeLogger({ pretty: false, level: 'silent' });
const [clientId, agentSlug, jobId, line] = process.argv.slice(2) as [string, string, string, string];
const runtime = createRuntime(loadConfig(process.env), captureLogs().log);
const socket = process.env[METRICS_SOCKET_ENV];
const metrics = socket ? sendMetrics(runtime.metrics.registry, socket, 60_000) : undefined;
const prepared = await prepareSession(runtime, metadataFor({ clientId, agentSlug }), runtime.log, {
  sessionId: jobId,
  lease: true,
});
const session = new voice.AgentSession({ llm: createLLM(runtime.config) });
prepared.attach(session);
await session.start({ agent: prepared.agent });
await metrics?.flush();
process.stdout.write('running\n');
// Kept alive until told (the lease's renewal timer does not hold the process).
const alive = setInterval(() => undefined, 1000);
for await (const command of createInterface({ input: process.stdin })) {
  if (command === 'turn') {
    await session.run({ userInput: line }).wait();
    await session.close();
    // Renewals come every third of the lease's lifetime: wait for one after the turn.
    await new Promise((r) => setTimeout(r, (runtime.config.leases.ttlS * 1000) / 3 + 500));
    process.stdout.write('session over\n');
  } else if (command === 'close') {
    await prepared.close();
    await metrics?.flush();
    metrics?.close();
    break;
  }
}
clearInterval(alive);
// Its clients' keep-alive connections would hold the process: it ends as LiveKit ends a job's.
process.stdout.write('closed\n', () => process.exit(0));
