import { type RemoteVideoTrack, type VideoFrame, VideoStream } from '@livekit/rtc-node';

/** Where the sidekick gets what the user's camera (or screen share) shows now. */
export interface FrameSource {
  latest(): VideoFrame | undefined;
}

/**
 * Samples a subscribed video track: keeps at most one frame per `intervalMs`, and only the latest.
 * @livekit/agents 1.9 declares video input but does not implement it; this is the piece it lacks.
 */
export class VideoSampler implements FrameSource {
  private frame: VideoFrame | undefined;
  private lastAt = 0;
  private closed = false;

  constructor(
    track: RemoteVideoTrack,
    private readonly intervalMs = 1000,
  ) {
    void this.pump(new VideoStream(track));
  }

  latest(): VideoFrame | undefined {
    return this.frame;
  }

  close(): void {
    this.closed = true;
  }

  private async pump(stream: VideoStream): Promise<void> {
    for await (const event of stream) {
      if (this.closed) break;
      const now = Date.now();
      if (now - this.lastAt < this.intervalMs) continue;
      this.lastAt = now;
      this.frame = event.frame;
    }
    await stream.cancel().catch(() => {});
  }
}

/** A fixed frame: the latest picture is always the same (terminal chat with an image, tests). */
export class StillFrame implements FrameSource {
  constructor(private readonly frame: VideoFrame) {}
  latest(): VideoFrame {
    return this.frame;
  }
}
