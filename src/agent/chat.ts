import { createInterface } from 'node:readline/promises';
import { initializeLogger, voice } from '@livekit/agents';
import type { Logger } from 'pino';
import type { JobMetadata } from './metadata.js';
import { createLLM } from './models.js';
import type { WorkerRuntime } from './runtime.js';
import { prepareSession } from './session.js';

/**
 * `sidekick chat`: a text conversation in the terminal through the same session code, tenancy and
 * context as a LiveKit job, without LiveKit: only an OpenAI-compatible endpoint is needed.
 * Returns when the input ends (Ctrl-D) or the user types /quit; `unanswered` counts the turns the
 * model did not answer (unreachable, refusing), with the last reason, so the command can fail.
 */
export async function runChat(
  runtime: WorkerRuntime,
  metadata: JobMetadata,
  log: Logger,
  io: { input: NodeJS.ReadableStream; output: { write(chunk: string): unknown } } = {
    input: process.stdin,
    output: process.stdout,
  },
): Promise<{ turns: number; written: number; dropped: number; unanswered: number; modelError?: string }> {
  initializeLogger({ pretty: false, level: 'error' });
  const prepared = await prepareSession(runtime, metadata, log);
  const { plan } = prepared;
  if (!plan.text.enabled) throw new Error(`text chat is off for this sidekick: ${plan.text.reason}`);
  const session = new voice.AgentSession({ llm: createLLM(runtime.config) });
  prepared.attach(session);
  const say = (who: string, text: string) => io.output.write(`${who}: ${text}\n`);
  session.on(voice.AgentSessionEventTypes.ConversationItemAdded, (ev) => {
    const item = ev.item;
    if (item.type === 'message' && item.role === 'assistant' && item.textContent)
      say(plan.sidekick.name, item.textContent);
  });
  // A model that cannot be reached would otherwise leave the user staring at no reply.
  let unanswered = 0;
  let modelError: string | undefined;
  session.on(voice.AgentSessionEventTypes.Error, (ev) => {
    const err = ev.error as { recoverable?: boolean; error?: Error };
    if (err.recoverable === false) {
      unanswered++;
      modelError = err.error?.message ?? 'the model failed';
      io.output.write(`# no reply: ${modelError}\n`);
    }
  });
  // The sidekick may end the conversation itself (end_call): the chat ends with that reply.
  let ended = false;
  session.on(voice.AgentSessionEventTypes.FunctionToolsExecuted, (ev) => {
    if (ev.functionCalls.some((c) => c.name === 'end_call')) ended = true;
  });
  io.output.write(
    `# ${plan.sidekick.name} (${plan.tier}, ${prepared.connection.hostingType}${prepared.degraded ? ', degraded' : ''}), conversation ${prepared.conversationId} (--conversation to continue it); /quit to end\n`,
  );
  // Said before the first turn: answers without the documents would otherwise look like the model's fault.
  if (!plan.rag.enabled) io.output.write(`# the sidekick's documents are not used: ${plan.rag.reason}\n`);
  await session.start({ agent: prepared.agent });
  const rl = createInterface({ input: io.input, terminal: false });
  let turns = 0;
  let stats: { written: number; dropped: number };
  try {
    for await (const line of rl) {
      const text = line.trim();
      if (!text) continue;
      if (text === '/quit') break;
      await session.run({ userInput: text }).wait();
      turns++;
      if (ended) {
        io.output.write('# the sidekick ended the conversation\n');
        break;
      }
    }
  } finally {
    rl.close();
    await session.close();
    // Also when a turn failed: what was said is flushed before the command exits.
    stats = await prepared.close();
  }
  return { turns, ...stats, unanswered, ...(modelError ? { modelError } : {}) };
}
