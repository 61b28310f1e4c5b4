import { initializeLogger, log as liveKitLog } from '@livekit/agents';
import { afterEach, describe, expect, it } from 'vitest';
import { liveKitLogger, routeLiveKitLogs } from '../src/agent/livekit-log.js';
import { LiveKitConnectionNotice } from '../src/agent/livekit-wait.js';
import { createRootLogger } from '../src/log.js';

function capture() {
  const lines: string[] = [];
  const destination = { write: (line: string) => void lines.push(line) };
  return {
    destination,
    records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    text: () => lines.join(''),
  };
}

/** What LiveKit 1.9's worker logs for each failed attempt (worker.js, its retry loop). */
function failedAttempt(error: Error, n: number) {
  liveKitLog()
    .child({ version: '1.9.0' })
    .warn(
      { error, retry_count: n, max_retry: Number.MAX_SAFE_INTEGER },
      `failed to connect to LiveKit server (ws://localhost:7880), retrying in ${Math.min(n * 2, 10)} seconds: (${n}/${Number.MAX_SAFE_INTEGER})`,
    );
}

const refused = () =>
  Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:7880'), { code: 'ECONNREFUSED', errno: -111 });

let undo: (() => void) | undefined;
afterEach(() => {
  undo?.();
  undo = undefined;
});

describe("LiveKit's own log lines", () => {
  it('go through our logger (format and redaction) even after LiveKit initializes its own, as cli.runApp does', () => {
    const out = capture();
    undo = routeLiveKitLogs(createRootLogger({ level: 'info', destination: out.destination }));
    initializeLogger({ pretty: false, level: 'info' });
    liveKitLog().info({ apiSecret: 'lk-secret-value', room: 'r1' }, 'starting worker');
    // A job process installs a child of the current logger with the job's id: kept.
    const jobLogger = liveKitLog().child({ jobID: 'AJ_1' });
    (globalThis as Record<symbol, unknown>)[Symbol.for('@livekit/agents:logger')] = jobLogger;
    liveKitLog().info('job started');
    const [first, second] = out.records();
    expect(first).toMatchObject({ msg: 'starting worker', room: 'r1', apiSecret: '[redacted]' });
    expect(out.text()).not.toContain('lk-secret-value');
    expect(second).toMatchObject({ msg: 'job started', jobID: 'AJ_1' });
  });

  it('while no LiveKit server answers: one line with the URL and how to start one, no stack trace per retry', () => {
    const out = capture();
    const ours = createRootLogger({ level: 'info', destination: out.destination });
    let registrations = 0;
    const notice = new LiveKitConnectionNotice('ws://localhost:7880', ours, () => registrations++);
    undo = routeLiveKitLogs(liveKitLogger('info', notice, { destination: out.destination }));
    initializeLogger({ pretty: false, level: 'info' });
    for (let n = 1; n <= 5; n++) failedAttempt(refused(), n);
    const lines = out.records();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, livekit_url: 'ws://localhost:7880', reason: 'ECONNREFUSED' });
    expect(lines[0]!.msg).toMatch(
      /^waiting for a LiveKit server at ws:\/\/localhost:7880: .*`livekit-server --dev`/,
    );
    expect(out.text()).not.toMatch(/\bat .*\.(js|ts):\d+/); // no stack

    // Connected (the worker warms the embedded platform then), then the server goes away: said
    // once again, as a lost connection.
    expect(registrations).toBe(0);
    liveKitLog().child({ id: 'AW_1' }).info('registered worker');
    expect(registrations).toBe(1);
    for (let n = 1; n <= 3; n++) failedAttempt(refused(), n);
    const after = out.records().slice(1);
    expect(after.map((l) => l.msg)).toEqual([
      'registered worker',
      'lost the LiveKit server at ws://localhost:7880 (ECONNREFUSED): the worker keeps trying to reconnect',
    ]);
  });

  it('a server that answers and refuses the worker is a warning at every attempt, with the reason and the fix', () => {
    const out = capture();
    const notice = new LiveKitConnectionNotice(
      'ws://lk.example:7880',
      createRootLogger({ level: 'info', destination: out.destination }),
    );
    undo = routeLiveKitLogs(liveKitLogger('info', notice, { destination: out.destination }));
    initializeLogger({ pretty: false, level: 'info' });
    failedAttempt(new Error('Unexpected server response: 401'), 1);
    failedAttempt(new Error('Unexpected server response: 401'), 2);
    const lines = out.records();
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: 40, reason: 'Unexpected server response: 401' });
    expect(lines[0]!.msg).toContain('check LIVEKIT_API_KEY and LIVEKIT_API_SECRET');
  });

  it('other LiveKit warnings and errors are written as they are', () => {
    const out = capture();
    const notice = new LiveKitConnectionNotice('ws://localhost:7880', createRootLogger({ level: 'info' }));
    undo = routeLiveKitLogs(liveKitLogger('info', notice, { destination: out.destination }));
    initializeLogger({ pretty: false, level: 'info' });
    liveKitLog().warn({ error: new Error('cpu probe failed') }, 'failed to measure CPU load');
    expect(out.records()).toMatchObject([{ level: 40, msg: 'failed to measure CPU load' }]);
  });
});
