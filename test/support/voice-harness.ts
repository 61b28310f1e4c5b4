import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { ReadableStreamDefaultController } from 'node:stream/web';
import { ReadableStream } from 'node:stream/web';
import { pathToFileURL } from 'node:url';
import { type inference, voice } from '@livekit/agents';
import { AudioFrame } from '@livekit/rtc-node';
import type { LookupEvent } from '../../src/agent/turn-lookup.js';
import type { GatewayRequest } from '../../src/stack/gateway.js';
import type { OpenAIServer, RecordedRequest } from './openai-server.js';
import { type Pcm, readWav } from './wav.js';

/**
 * The audio-path harness: a real `voice.AgentSession` audio pipeline without a room. A microphone
 * (an AudioInput) plays speech fixtures in real time in 10 ms frames, silence in between; Silero
 * VAD, the turn detector, and STT, LLM and TTS from LiveKit's OpenAI plugin run as in a job, the
 * OpenAI side played by the loopback server; a speaker (an AudioOutput) plays the replies out in
 * real time. Each turn's timeline is put together from the session's events, the loopback server's
 * request log, the database gateway's and the sidekick's lookup events, all on performance.now().
 */

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'speech');
const MIC_RATE = 16_000;
const FRAME_MS = 10;
const FRAME = (MIC_RATE * FRAME_MS) / 1000;
/** A sample louder than this is speech, for finding where a clip's voice ends. */
const VOICED = 500;

export interface SpeechClip {
  id: string;
  text: string;
  pcm: Pcm;
  /** Where the voice starts and ends in the clip, in ms (the clip has a little silence around it). */
  voicedStartMs: number;
  voicedEndMs: number;
}

/** The committed speech fixtures (test/fixtures/speech, made by scripts/speech-fixtures.ts). */
export function loadSpeech(): Record<string, SpeechClip> {
  const manifest = JSON.parse(readFileSync(join(FIXTURES, 'manifest.json'), 'utf8')) as Record<
    string,
    { text: string; file: string }
  >;
  const clips: Record<string, SpeechClip> = {};
  for (const [id, { text, file }] of Object.entries(manifest)) {
    const pcm = readWav(join(FIXTURES, file));
    if (pcm.sampleRate !== MIC_RATE)
      throw new Error(`${file}: ${pcm.sampleRate} Hz, the harness plays ${MIC_RATE}`);
    const s = pcm.samples;
    let first = 0;
    while (first < s.length && Math.abs(s[first]!) <= VOICED) first++;
    let last = s.length - 1;
    while (last > first && Math.abs(s[last]!) <= VOICED) last--;
    clips[id] = {
      id,
      text,
      pcm,
      voicedStartMs: (first / MIC_RATE) * 1000,
      voicedEndMs: ((last + 1) / MIC_RATE) * 1000,
    };
  }
  return clips;
}

/** A microphone: 10 ms frames in real time, silence unless it is playing clips. */
export class Microphone extends voice.AudioInput {
  private controller!: ReadableStreamDefaultController<AudioFrame>;
  private queue: Int16Array[] = [];
  private queued = 0;
  private offset = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly started = performance.now();
  private sent = 0;
  private watchers: Array<{ sample: number; resolve: (at: number) => void }> = [];
  /** Samples delivered so far. */
  private position = 0;

  constructor() {
    super();
    this.multiStream.addInputStream(
      new ReadableStream<AudioFrame>({
        start: (c) => {
          this.controller = c;
        },
      }),
    );
    this.timer = setInterval(() => this.pump(), FRAME_MS / 2);
  }

  /**
   * Plays the clips one after the other, `gapMs` of silence between one's voice and the next's
   * (the clips' own leading and trailing silence is kept only at the start and the end). Resolves
   * when the last clip's voice has ended, with when that was (performance.now()).
   */
  play(clips: SpeechClip[], gapMs = 0): Promise<number> {
    const at = (ms: number) => Math.round((ms / 1000) * MIC_RATE);
    let endSample = 0;
    clips.forEach((clip, i) => {
      const from = i === 0 ? 0 : at(clip.voicedStartMs);
      const to = i === clips.length - 1 ? clip.pcm.samples.length : at(clip.voicedEndMs);
      if (i > 0) this.push(new Int16Array(at(gapMs)));
      const start = this.position + this.queued;
      this.push(clip.pcm.samples.subarray(from, to));
      endSample = start + at(clip.voicedEndMs) - from;
    });
    return new Promise((resolve) => this.watchers.push({ sample: endSample, resolve }));
  }

  override async close(): Promise<void> {
    clearInterval(this.timer);
    await super.close();
  }

  private push(samples: Int16Array) {
    this.queue.push(samples);
    this.queued += samples.length;
  }

  /** Sends every frame that is due by the clock (timers are late; the clock is not). */
  private pump() {
    const due = Math.floor((performance.now() - this.started) / FRAME_MS);
    while (this.sent < due) {
      const frame = new Int16Array(FRAME);
      let filled = 0;
      while (filled < FRAME && this.queue.length) {
        const head = this.queue[0]!;
        const n = Math.min(FRAME - filled, head.length - this.offset);
        frame.set(head.subarray(this.offset, this.offset + n), filled);
        filled += n;
        this.offset += n;
        this.queued -= n;
        if (this.offset >= head.length) {
          this.queue.shift();
          this.offset = 0;
        }
      }
      this.sent++;
      this.position += FRAME;
      try {
        this.controller.enqueue(new AudioFrame(frame, MIC_RATE, 1, FRAME));
      } catch {
        return; // the session closed its input
      }
      // The frame that holds the voice's last sample was heard when it ended: back-date to that sample.
      const now = performance.now();
      this.watchers = this.watchers.filter((w) => {
        if (w.sample > this.position) return true;
        w.resolve(now - ((this.position - w.sample) / MIC_RATE) * 1000);
        return false;
      });
    }
  }
}

export interface PlayedSegment {
  /** When its first frame came out (performance.now()). */
  firstFrameAt: number;
  durationMs: number;
  interrupted: boolean;
}

/** A speaker: records when each reply's audio starts and plays it out in real time. */
export class Speaker extends voice.AudioOutput {
  readonly segments: PlayedSegment[] = [];
  private current: PlayedSegment | undefined;
  private finishing: { timer: NodeJS.Timeout; segment: PlayedSegment } | undefined;

  constructor() {
    super(24_000, undefined, { pause: false });
  }

  override async captureFrame(frame: AudioFrame): Promise<void> {
    await super.captureFrame(frame);
    if (!this.current) {
      this.current = { firstFrameAt: performance.now(), durationMs: 0, interrupted: false };
      this.segments.push(this.current);
      this.onPlaybackStarted(Date.now());
    }
    this.current.durationMs += (frame.samplesPerChannel / frame.sampleRate) * 1000;
  }

  override flush(): void {
    super.flush();
    const segment = this.current;
    this.current = undefined;
    if (!segment) return;
    const left = segment.firstFrameAt + segment.durationMs - performance.now();
    const timer = setTimeout(
      () => {
        this.finishing = undefined;
        this.onPlaybackFinished({ playbackPosition: segment.durationMs / 1000, interrupted: false });
      },
      Math.max(0, left),
    );
    this.finishing = { timer, segment };
  }

  override clearBuffer(): void {
    const segment = this.finishing?.segment ?? this.current;
    if (!segment) return;
    if (this.finishing) clearTimeout(this.finishing.timer);
    this.finishing = undefined;
    this.current = undefined;
    segment.interrupted = true;
    const played = Math.min(segment.durationMs, performance.now() - segment.firstFrameAt);
    this.onPlaybackFinished({ playbackPosition: played / 1000, interrupted: true });
  }
}

/**
 * The worker's inference process, in this one: LiveKit's own end-of-turn runner (the file the
 * worker registers, loaded the same way: by path, as the package exports it to no one) with the
 * on-device model of @livekit/local-inference.
 */
export async function inProcessTurnDetectorExecutor(): Promise<
  NonNullable<inference.TurnDetectorOptions['executor']>
> {
  const entry = createRequire(import.meta.url).resolve('@livekit/agents');
  const runnerPath = join(entry, '..', 'inference', 'eot', 'runner.js');
  const mod = (await import(pathToFileURL(runnerPath).href)) as {
    default: new () => { initialize(): Promise<void>; run(data: unknown): Promise<unknown> };
  };
  const runner = new mod.default();
  await runner.initialize();
  return { doInference: (_method: string, data: unknown) => runner.run(data) };
}

/** One user turn, as the harness saw it (times are performance.now()). */
export interface TurnRecord {
  texts: string[];
  /** The end of the user's voice in the audio. */
  speechEndAt: number;
  /** The VAD's end of speech (the session's user state back to listening). */
  vadEndAt: number | undefined;
  interims: Array<{ at: number; text: string }>;
  finals: Array<{ at: number; text: string }>;
  /** The user turn committed (its message added to the conversation). */
  committedAt: number | undefined;
  /** User turns the session made of the speech (1 unless the end of turn came between segments). */
  userTurns: number;
  lookups: LookupEvent[];
  /** Every LLM request of the turn; the last one is the reply that was spoken. */
  llmRequests: RecordedRequest[];
  llmRequestAt: number | undefined;
  firstTokenAt: number | undefined;
  firstAudioAt: number | undefined;
  /** From the end of speech to the reply's first audio frame. */
  speechEndToAudioMs: number | undefined;
  /** From the final transcript (of the text replied to) to the LLM request: what waits in llmNode. */
  finalToLlmMs: number | undefined;
  embeddingRequests: { beforeLlm: number; total: number };
  dbRequests: { beforeLlm: number; total: number; writes: number; paths: string[] };
  /** The end-of-turn model's predictions in the turn (probability that the user is done, threshold). */
  eot: Array<{ probability: number; threshold: number }>;
}

/**
 * What the loopback STT is expected to hear next, in order, for every rig on one loopback server
 * (turns are spoken one at a time): it answers each segment with the next clip's text, and refuses
 * a segment far shorter or longer than that clip (the segmentation went wrong).
 */
export class SpeechScript {
  private readonly expected: SpeechClip[] = [];
  readonly heard: string[] = [];

  constructor(openai: OpenAIServer) {
    openai.setTranscriber(({ audio }) => {
      const clip = this.expected.shift();
      if (!clip) throw new Error('the loopback STT heard speech nobody played');
      const heardMs = (audio.samples.length / audio.sampleRate) * 1000;
      const voicedMs = clip.voicedEndMs - clip.voicedStartMs;
      if (heardMs < voicedMs * 0.6) {
        throw new Error(`the STT segment (${heardMs.toFixed(0)} ms) is much shorter than "${clip.text}"`);
      }
      // The segment is the voice with the VAD's padding around it; much more is two clips in one.
      if (heardMs > voicedMs + 1200) {
        throw new Error(`the STT segment (${heardMs.toFixed(0)} ms) holds more than "${clip.text}"`);
      }
      this.heard.push(clip.text);
      return clip.text;
    });
  }

  expect(clips: SpeechClip[]): void {
    this.expected.push(...clips);
  }
}

export interface VoiceRigOptions {
  session: voice.AgentSession;
  agent: voice.Agent;
  openai: OpenAIServer;
  /** The client database's gateway requests, to count round trips. */
  dbRequests?: () => readonly GatewayRequest[];
  /** Resolves when the turns' transcript rows are written (the product's store), before the next turn. */
  settle?: () => Promise<void>;
  /** Where the sidekick's lookup events go (its `observe`), so turns can show them. */
  lookups?: LookupEvent[];
  /** Shared by the rigs of one loopback server; default: one of its own. */
  script?: SpeechScript;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > end) throw new Error(`voice harness: timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** A running session with a microphone and a speaker, that speaks turns and records them. */
export class VoiceRig {
  readonly mic = new Microphone();
  readonly speaker = new Speaker();
  readonly lookups: LookupEvent[];
  private readonly transcripts: Array<{ at: number; text: string; final: boolean }> = [];
  private readonly userStates: Array<{ at: number; state: string }> = [];
  private readonly items: Array<{ at: number; role: string; text: string }> = [];
  private readonly eot: Array<{ at: number; probability: number; threshold: number }> = [];
  private agentState = 'initializing';
  readonly script: SpeechScript;

  constructor(private readonly opts: VoiceRigOptions) {
    const { session } = opts;
    this.lookups = opts.lookups ?? [];
    session.on(voice.AgentSessionEventTypes.UserInputTranscribed, (ev) =>
      this.transcripts.push({ at: performance.now(), text: ev.transcript, final: ev.isFinal }),
    );
    session.on(voice.AgentSessionEventTypes.UserStateChanged, (ev) =>
      this.userStates.push({ at: performance.now(), state: ev.newState }),
    );
    session.on(voice.AgentSessionEventTypes.EotPrediction, (ev) =>
      this.eot.push({ at: performance.now(), probability: ev.probability, threshold: ev.threshold }),
    );
    session.on(voice.AgentSessionEventTypes.AgentStateChanged, (ev) => {
      this.agentState = ev.newState;
    });
    session.on(voice.AgentSessionEventTypes.ConversationItemAdded, (ev) => {
      const item = ev.item;
      if (item.type === 'message')
        this.items.push({ at: performance.now(), role: item.role, text: item.textContent ?? '' });
    });
    this.script = opts.script ?? new SpeechScript(opts.openai);
  }

  /** What the loopback STT heard, in order. */
  get heard(): string[] {
    return this.script.heard;
  }

  /** Starts the session on the rig's microphone and speaker, and waits out the greeting when there is one. */
  async start(opts: { greeting: boolean }): Promise<void> {
    const { session, agent } = this.opts;
    session.input.audio = this.mic;
    session.output.audio = this.speaker;
    await session.start({ agent });
    if (opts.greeting) await until(() => this.speaker.segments.length > 0, 20_000, 'the greeting');
    await this.idle();
  }

  /** The agent listening and nothing playing. */
  async idle(timeoutMs = 20_000): Promise<void> {
    await sleep(50);
    await until(() => this.agentState === 'listening' && !this.playing(), timeoutMs, 'the agent to listen');
    await this.opts.settle?.();
  }

  private playing(): boolean {
    const last = this.speaker.segments.at(-1);
    return (
      last !== undefined && !last.interrupted && last.firstFrameAt + last.durationMs > performance.now() - 20
    );
  }

  /**
   * Speaks one user turn of `clips` (gapMs of silence between them: each clip becomes one STT
   * segment when the gap outlasts the STT's silence window and not the VAD's), waits for the
   * reply to play out and its transcript rows to be written, and returns the turn's record.
   */
  async turn(clips: SpeechClip[], gapMs = 0, timeoutMs = 30_000): Promise<TurnRecord> {
    const { openai } = this.opts;
    const t0 = performance.now();
    const audioBefore = this.speaker.segments.length;
    const itemsBefore = this.items.length;
    const lookupsBefore = this.lookups.length;
    this.script.expect(clips);
    const speechEndAt = await this.mic.play(clips, gapMs);
    await until(() => this.speaker.segments.length > audioBefore, timeoutMs, 'the reply audio');
    await until(
      () => this.items.slice(itemsBefore).some((i) => i.role === 'assistant'),
      timeoutMs,
      'the reply to be played out',
    );
    await this.idle(timeoutMs);
    const t1 = performance.now();

    const firstAudioAt = this.speaker.segments[audioBefore]!.firstFrameAt;
    const inTurn = <T extends { at: number }>(xs: readonly T[]) => xs.filter((x) => x.at >= t0 && x.at <= t1);
    const llmRequests = openai.chatRequests().filter((r) => r.at >= t0 && r.at <= firstAudioAt);
    const spoken = llmRequests.at(-1);
    const transcripts = inTurn(this.transcripts);
    const finals = transcripts.filter((t) => t.final).map(({ at, text }) => ({ at, text }));
    const lastFinal = finals.filter((f) => !spoken || f.at <= spoken.at).at(-1);
    const embeddings = inTurn(openai.embeddingRequests());
    const db = this.opts.dbRequests ? inTurn(this.opts.dbRequests()) : [];
    const beforeLlm = (at: number) => spoken !== undefined && at < spoken.at;
    return {
      texts: clips.map((c) => c.text),
      speechEndAt,
      vadEndAt: this.userStates.find((s) => s.at >= speechEndAt && s.state === 'listening')?.at,
      interims: transcripts.filter((t) => !t.final).map(({ at, text }) => ({ at, text })),
      finals,
      committedAt: this.items.slice(itemsBefore).findLast((i) => i.role === 'user')?.at,
      userTurns: this.items.slice(itemsBefore).filter((i) => i.role === 'user').length,
      lookups: this.lookups.slice(lookupsBefore),
      llmRequests,
      llmRequestAt: spoken?.at,
      firstTokenAt: spoken?.firstOutputAt,
      firstAudioAt,
      speechEndToAudioMs: firstAudioAt - speechEndAt,
      finalToLlmMs: spoken && lastFinal ? spoken.at - lastFinal.at : undefined,
      embeddingRequests: {
        beforeLlm: embeddings.filter((r) => beforeLlm(r.at)).length,
        total: embeddings.length,
      },
      eot: inTurn(this.eot).map(({ probability, threshold }) => ({ probability, threshold })),
      dbRequests: {
        beforeLlm: db.filter((r) => beforeLlm(r.at)).length,
        total: db.length,
        writes: db.filter((r) => r.method !== 'GET' && !r.path.startsWith('/rpc/')).length,
        paths: db.map((r) => `${r.method} ${r.path.split('?')[0]}`),
      },
    };
  }

  async close(): Promise<void> {
    await this.opts.session.close().catch(() => undefined);
    await this.mic.close().catch(() => undefined);
  }
}
