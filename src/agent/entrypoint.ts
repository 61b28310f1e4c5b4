import { AutoSubscribe, defineAgent, type JobContext, type JobProcess } from '@livekit/agents';
import * as silero from '@livekit/agents-plugin-silero';
import {
  type RemoteTrack,
  type RemoteTrackPublication,
  type RemoteVideoTrack,
  RoomEvent,
  TrackKind,
  TrackSource,
} from '@livekit/rtc-node';
import { loadConfig, loadEnvFile } from '../config.js';
import { jobLogger, rootLogger } from '../log.js';
import { METRICS_SOCKET_ENV, type MetricsSender, sendMetrics } from '../usage/metrics-relay.js';
import { createAgentSession, localTurnDetector } from './agent-session.js';
import { routeLiveKitLogs } from './livekit-log.js';
import { parseJobMetadata } from './metadata.js';
import { createRuntime, prewarmRuntime, type WorkerRuntime } from './runtime.js';
import { type PreparedSession, prepareSession } from './session.js';
import { type FrameSource, VideoSampler } from './video.js';

interface ProcessData extends Record<string, unknown> {
  runtime: WorkerRuntime;
  vad: Awaited<ReturnType<typeof silero.VAD.load>>;
  /** The job's session, for onSessionEnd. */
  prepared?: PreparedSession;
  /** This process's metrics, sent to the main process (which serves /metrics). */
  metrics?: MetricsSender | undefined;
}

/** The latest frame of whichever camera or screen share the user publishes. */
class UserVideo implements FrameSource {
  sampler: VideoSampler | undefined;
  latest() {
    return this.sampler?.latest();
  }
}

// LiveKit's lines in the job process in the same format as ours (livekit-log.ts).
routeLiveKitLogs(rootLogger);

export default defineAgent<ProcessData>({
  // Runs once in every job process, before it takes a job: what every job needs.
  prewarm: async (proc: JobProcess<ProcessData>) => {
    // Inherited from the main process already; read again for a job process started on its own.
    loadEnvFile();
    const config = loadConfig();
    rootLogger.level = config.logLevel;
    const runtime = createRuntime(config, rootLogger);
    proc.userData.runtime = runtime;
    const socket = process.env[METRICS_SOCKET_ENV];
    if (socket) proc.userData.metrics = sendMetrics(runtime.metrics.registry, socket);
    [proc.userData.vad] = await Promise.all([silero.VAD.load(), prewarmRuntime(runtime)]);
  },

  entry: async (ctx: JobContext<ProcessData>) => {
    const { runtime, vad } = ctx.proc.userData;
    const metadata = parseJobMetadata(ctx.job.metadata);
    const log = jobLogger(runtime.log, {
      clientId: metadata.clientId,
      agentSlug: metadata.agentSlug,
      jobId: ctx.job.id,
      roomName: ctx.job.room?.name,
    });
    const video = new UserVideo();
    // Planned before connecting: the plan decides what to subscribe to.
    const prepared = await prepareSession(runtime, metadata, log, {
      video,
      sessionId: ctx.job.id,
      lease: true,
    });
    ctx.proc.userData.prepared = prepared;
    const { plan } = prepared;
    ctx.addShutdownCallback(async () => {
      video.sampler?.close();
      await prepared.close(); // done already by onSessionEnd, unless it could not run
    });

    const subscribe = plan.video.enabled
      ? AutoSubscribe.SUBSCRIBE_ALL
      : plan.audio.enabled
        ? AutoSubscribe.AUDIO_ONLY
        : AutoSubscribe.SUBSCRIBE_NONE;
    await ctx.connect(undefined, subscribe);
    if (plan.video.enabled) {
      ctx.room.on(RoomEvent.TrackSubscribed, (track: RemoteTrack, publication: RemoteTrackPublication) => {
        if (track.kind !== TrackKind.KIND_VIDEO) return;
        const source = publication.source;
        if (source !== TrackSource.SOURCE_CAMERA && source !== TrackSource.SOURCE_SCREENSHARE) return;
        video.sampler?.close();
        video.sampler = new VideoSampler(track as RemoteVideoTrack);
        log.info({ source }, 'sampling the user video for the sidekick');
      });
    }

    const session = createAgentSession(runtime.config, plan, { vad, turnDetector: localTurnDetector() });
    prepared.attach(session);
    await session.start({
      agent: prepared.agent,
      room: ctx.room,
      inputOptions: { audioEnabled: plan.audio.enabled, textEnabled: plan.text.enabled, videoEnabled: false },
      outputOptions: { audioEnabled: plan.audio.enabled, transcriptionEnabled: true },
    });
  },

  // After the AgentSession closed: flush the transcripts (or spool them) and queue the post-session
  // work, one platform request; the worker's main process does that work (src/work/background.ts).
  onSessionEnd: async (ctx: JobContext<ProcessData>) => {
    await ctx.proc.userData.prepared?.close();
    await ctx.proc.userData.metrics?.flush();
  },
});
