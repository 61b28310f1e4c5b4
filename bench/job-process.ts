/**
 * One LiveKit job process, as the worker forks it, for the cold session start bench
 * (bench/cold-start.ts): the imports, the prewarm, an idle wait (processes wait for their job, and
 * connections opened in prewarm do not survive it), then one job assigned over IPC. Without a
 * LiveKit server the job does what `entry` does except joining the room: `product` plans the
 * session and starts the sidekick; `bare` starts a plain voice.Agent with the same greeting, as
 * LiveKit's starter worker does. Reports when the session started and when the greeting's first
 * audio frame came out, from the job's assignment.
 *   node --import tsx bench/job-process.ts product|bare
 */
import { initializeLogger, type JobProcess, voice } from '@livekit/agents';
import * as openai from '@livekit/agents-plugin-openai';
import * as silero from '@livekit/agents-plugin-silero';
import { Speaker } from '../test/support/voice-harness.js';

const kind = process.argv[2];
if (kind !== 'product' && kind !== 'bare') throw new Error('usage: job-process.ts product|bare');
const idleMs = Number(process.env.JOB_IDLE_MS ?? 5000);
initializeLogger({ pretty: false, level: 'error' });

type Job = { metadata: string; greeting: string };
const send = (msg: unknown) => process.send?.(msg);

async function productProcess(): Promise<(job: Job) => Promise<void>> {
  const [
    { default: agent },
    { parseJobMetadata },
    { prepareSession },
    { createAgentSession },
    { jobLogger },
  ] = await Promise.all([
    import('../src/agent/entrypoint.js'),
    import('../src/agent/metadata.js'),
    import('../src/agent/session.js'),
    import('../src/agent/agent-session.js'),
    import('../src/log.js'),
  ]);
  const proc = { userData: {} } as unknown as JobProcess<Record<string, unknown>>;
  const t = performance.now();
  await agent.prewarm!(proc as never);
  send({ prewarmMs: performance.now() - t });
  const { runtime, vad } = proc.userData as unknown as {
    runtime: import('../src/agent/runtime.js').WorkerRuntime;
    vad: silero.VAD;
  };
  return async (job) => {
    const t0 = performance.now();
    const metadata = parseJobMetadata(job.metadata);
    const log = jobLogger(runtime.log, {
      clientId: metadata.clientId,
      agentSlug: metadata.agentSlug,
      jobId: 'bench',
    });
    const prepared = await prepareSession(runtime, metadata, log);
    const session = createAgentSession(runtime.config, prepared.plan, { vad, turnDetector: 'vad' });
    prepared.attach(session);
    await run(session, prepared.agent, t0);
  };
}

async function bareProcess(): Promise<(job: Job) => Promise<void>> {
  const t = performance.now();
  const vad = await silero.VAD.load();
  send({ prewarmMs: performance.now() - t });
  const connection = { apiKey: process.env.OPENAI_API_KEY!, baseURL: process.env.OPENAI_BASE_URL! };
  return async (job) => {
    const t0 = performance.now();
    class Greeter extends voice.Agent {
      override async onEnter() {
        this.session.say(job.greeting);
      }
    }
    const session = new voice.AgentSession({
      llm: new openai.LLM({ ...connection, model: 'gpt-4o-mini' }),
      stt: new openai.STT({ ...connection, model: 'gpt-4o-mini-transcribe' }),
      tts: new openai.TTS({ ...connection, model: 'gpt-4o-mini-tts', voice: 'alloy' }),
      vad,
      turnHandling: { turnDetection: 'vad' },
    });
    await run(session, new Greeter({ instructions: 'You are a helpful assistant.' }), t0);
  };
}

async function run(session: voice.AgentSession, agent: voice.Agent, t0: number) {
  const speaker = new Speaker();
  session.output.audio = speaker;
  await session.start({ agent });
  const startedMs = performance.now() - t0;
  while (speaker.segments.length === 0) {
    if (performance.now() - t0 > 20_000) throw new Error('no greeting audio within 20 s');
    await new Promise((r) => setTimeout(r, 1));
  }
  send({ startedMs, firstAudioMs: speaker.segments[0]!.firstFrameAt - t0 });
  await session.close().catch(() => undefined);
}

const job = kind === 'product' ? await productProcess() : await bareProcess();
await new Promise((r) => setTimeout(r, idleMs));
process.on('message', (msg: Job) => {
  job(msg).then(
    () => process.exit(0),
    (err: unknown) => {
      send({ error: String((err as Error)?.stack ?? err) });
      process.exit(1);
    },
  );
});
send({ ready: true });
