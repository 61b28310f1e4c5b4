import { connect } from 'node:net';
import type { Logger } from 'pino';

/**
 * Waits until something listens at the LiveKit URL, saying what it waits for and how to start
 * one, instead of letting the worker fail its registration attempts one after another.
 */
export async function waitForLiveKit(url: string, log: Logger, intervalMs = 5000): Promise<void> {
  const u = new URL(url.replace(/^ws/, 'http'));
  const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  let told = false;
  for (;;) {
    if (await reachable(u.hostname, port)) {
      if (told) log.info({ livekit_url: url }, 'LiveKit server is reachable');
      return;
    }
    if (!told) {
      log.warn(
        { livekit_url: url },
        'waiting for a LiveKit server: start one locally with `livekit-server --dev` (it listens on ws://localhost:7880 with key devkey / secret secret), or set LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET',
      );
      told = true;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 2000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}
