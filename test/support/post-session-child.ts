/**
 * A worker process for test/post-session.test.ts: it holds a session (one user line), closes it
 * (which queues the post-session job), says `queued <item id>`, and on `go` from its stdin starts
 * its work runner with a short lease, to be killed while it waits for the model.
 * argv: client id, sidekick slug, user id, the user's line. Environment: the test bed's.
 */
import { createInterface } from 'node:readline';
import { initializeLogger } from '@livekit/agents';
import { createRuntime } from '../../src/agent/runtime.js';
import { loadConfig } from '../../src/config.js';
import { POST_SESSION } from '../../src/work/post-session.js';
import { converse, runnerFor } from './after-session.js';
import { captureLogs } from './logs.js';

initializeLogger({ pretty: false, level: 'silent' });
const [clientId, agentSlug, userId, line] = process.argv.slice(2) as [string, string, string, string];
const runtime = createRuntime(loadConfig(process.env), captureLogs().log);
await converse(runtime, { clientId, agentSlug }, [line], { userId });
const [item] = await runtime.work.list({ clientId, kind: POST_SESSION, limit: 1 });
process.stdout.write(`queued ${item?.id}\n`);
for await (const l of createInterface({ input: process.stdin })) if (l === 'go') break;
runnerFor(runtime, { leaseSeconds: 3 }).start();
process.stdout.write('started\n');
