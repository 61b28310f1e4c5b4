import { describe, expect, it } from 'vitest';
import {
  createRootLogger,
  isSecretFieldName,
  jobLogger,
  PII_HIDDEN,
  prettyByDefault,
  REDACTED,
  redact,
  redactString,
} from '../src/log.js';

const SECRETS = [
  'sk-live-depth1',
  'srk-depth3',
  'tok-in-array',
  'pw-in-err',
  'bearer-inside-err-0123456789',
  'child-binding-secret',
  'cookie-value',
];
const JWT = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJjbGllbnRfaWQiOiJhYmMifQ.c2lnbmF0dXJlLXBhcnQ';

function capture(level: 'info' | 'debug' = 'info') {
  const lines: string[] = [];
  const logger = createRootLogger({ level, destination: { write: (line: string) => void lines.push(line) } });
  const output = () => lines.join('');
  const records = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  return { logger, output, records };
}

describe('createRootLogger', () => {
  it('never writes secret-named fields at depth 1, at depth 3, in arrays or in errors, and keeps ordinary fields', () => {
    const { logger, output, records } = capture();
    const err = Object.assign(new Error('upstream refused'), {
      code: 'E_UPSTREAM',
      password: 'pw-in-err',
      request: { headers: { Authorization: 'Bearer bearer-inside-err-0123456789', Cookie: 'cookie-value' } },
    });
    logger.info(
      {
        apiKey: 'sk-live-depth1',
        client: { pool: { settings: { service_role_key: 'srk-depth3', region: 'eu' } } },
        attempts: [{ token: 'tok-in-array', n: 1 }, 'plain'],
        err,
        client_id: 'c-1',
        prompt_tokens: 42,
        cacheKey: 'client:c-1',
      },
      'lookup done',
    );
    logger
      .child({ jwtSecret: 'child-binding-secret', pool: 'p-1' })
      .child({ job_id: 'j-1' })
      .warn('nested child');

    const text = output();
    for (const secret of SECRETS) expect(text).not.toContain(secret);

    const [first, second] = records();
    expect(first).toMatchObject({
      msg: 'lookup done',
      apiKey: REDACTED,
      client_id: 'c-1',
      prompt_tokens: 42,
      cacheKey: 'client:c-1',
      client: { pool: { settings: { service_role_key: REDACTED, region: 'eu' } } },
      attempts: [{ token: REDACTED, n: 1 }, 'plain'],
      err: {
        type: 'Error',
        message: 'upstream refused',
        code: 'E_UPSTREAM',
        password: REDACTED,
        request: { headers: { Authorization: REDACTED, Cookie: REDACTED } },
      },
    });
    expect(second).toMatchObject({ jwtSecret: REDACTED, pool: 'p-1', job_id: 'j-1', msg: 'nested child' });
  });

  it('masks tokens inside messages, error messages and url/header values', () => {
    const { logger, output, records } = capture();
    logger.error(new Error(`jwt rejected: ${JWT}`));
    logger.info('calling %s with Bearer %s', 'postgres://svc:hunter2@db:5432/x', 'abcdefghijklmnopqrstuvwx');
    logger.info(
      { url: `https://pool.example/rest/v1/rpc?apikey=anon-key-1&select=*`, headers: [JWT] },
      'req',
    );
    const text = output();
    for (const secret of [JWT, 'hunter2', 'abcdefghijklmnopqrstuvwx', 'anon-key-1']) {
      expect(text).not.toContain(secret);
    }
    const [error, interpolated, request] = records();
    expect(error?.msg).toBe(`jwt rejected: ${REDACTED}`);
    expect(interpolated?.msg).toBe(`calling postgres://svc:${REDACTED}@db:5432/x with Bearer ${REDACTED}`);
    expect(request?.url).toBe(`https://pool.example/rest/v1/rpc?apikey=${REDACTED}&select=*`);
  });

  it('survives cycles, and logs a shared (non-cyclic) object twice', () => {
    const { logger, records } = capture();
    const loop: Record<string, unknown> = { name: 'loop', secret: 's-1' };
    loop.self = loop;
    const shared = { id: 'shared' };
    logger.info({ loop, a: shared, b: shared }, 'cycle');
    expect(records()[0]).toMatchObject({
      loop: { name: 'loop', secret: REDACTED, self: '[Circular]' },
      a: { id: 'shared' },
      b: { id: 'shared' },
    });
  });

  it('respects the level', () => {
    const { logger, records } = capture('info');
    logger.debug('hidden');
    logger.info('shown');
    expect(records().map((r) => r.msg)).toEqual(['shown']);
  });

  it("hides what LiveKit marks as a user's data (lk.pii.*) at info and above, in children too; debug lines keep it", () => {
    const { logger, records } = capture('debug');
    const job = logger.child({ job_id: 'j1' });
    job.info({ function: 'book', 'lk.pii.arguments': { name: 'Ada Lovelace' } }, 'Executing LLM tool call');
    job.warn({ 'lk.pii.transcript': 'my card is 4111' }, 'late');
    job.debug({ 'lk.pii.transcript': 'my card is 4111' }, 'heard');
    const [info, warn, debug] = records();
    expect(info).toMatchObject({ function: 'book', job_id: 'j1', 'lk.pii.arguments': PII_HIDDEN });
    expect(warn!['lk.pii.transcript']).toBe(PII_HIDDEN);
    expect(debug!['lk.pii.transcript']).toBe('my card is 4111');
  });
});

describe('jobLogger', () => {
  it('binds client_id, agent, job_id and room to every line', () => {
    const { logger, records } = capture();
    jobLogger(logger, { clientId: 'client-1', agentSlug: 'helper', jobId: 'AJ_1', roomName: 'room-1' }).info(
      'hi',
    );
    jobLogger(logger, { clientId: 'client-2', agentSlug: 'guide', jobId: 'AJ_2' }).info('hi');
    const [withRoom, withoutRoom] = records();
    expect(withRoom).toMatchObject({
      client_id: 'client-1',
      agent: 'helper',
      job_id: 'AJ_1',
      room: 'room-1',
    });
    expect(withoutRoom).toMatchObject({ client_id: 'client-2', agent: 'guide', job_id: 'AJ_2' });
    expect(withoutRoom).not.toHaveProperty('room');
  });
});

describe('redact', () => {
  it('recognises secret-looking names and leaves ordinary ones', () => {
    for (const name of [
      'key',
      'apikey',
      'apiKey',
      'api_key',
      'x-api-key',
      'token',
      'access_token',
      'secret',
      'apiSecret',
      'password',
      'Authorization',
      'service_role_key',
      'serviceRoleKey',
      'jwt',
      'private_key',
      'credentials',
    ]) {
      expect(isSecretFieldName(name), name).toBe(true);
    }
    for (const name of [
      'client_id',
      'agent',
      'cacheKey',
      'prompt_tokens',
      'maxTokens',
      'tokenTtlS',
      'url',
      'msg',
    ]) {
      expect(isSecretFieldName(name), name).toBe(false);
    }
  });

  it('returns values without secrets unchanged (no copy) and never mutates the input', () => {
    const clean = { a: { b: [1, 'two', { c: true }] } };
    expect(redact(clean)).toBe(clean);
    const dirty = { a: { token: 't' }, b: 1 };
    const out = redact(dirty) as { a: { token: string } };
    expect(out.a.token).toBe(REDACTED);
    expect(dirty.a.token).toBe('t');
  });

  it('keeps null secrets visible as not set', () => {
    expect(redact({ apiKey: null })).toEqual({ apiKey: null });
  });

  it('leaves ordinary prose alone', () => {
    const prose = 'The bearer of this note has a basic plan, key = value in prose, 2+2=4.';
    expect(redactString(prose)).toBe(prose);
  });
});

describe('pretty lines (a terminal)', () => {
  function capturePretty(colorize = false) {
    const lines: string[] = [];
    const logger = createRootLogger({
      level: 'info',
      pretty: true,
      colorize,
      destination: { write: (line: string) => void lines.push(line) },
    });
    return { logger, output: () => lines.join('') };
  }

  it('are for a person at a terminal outside production; a pipe, a file or production gets JSON', () => {
    expect(prettyByDefault({ isTTY: true }, {})).toBe(true);
    expect(prettyByDefault({ isTTY: true }, { NODE_ENV: 'development' })).toBe(true);
    expect(prettyByDefault({ isTTY: true }, { NODE_ENV: 'production' })).toBe(false);
    expect(prettyByDefault({ isTTY: false }, {})).toBe(false);
    expect(prettyByDefault({}, {})).toBe(false);
    // A destination that is not stdout (tests, files) gets JSON unless asked otherwise.
    const lines: string[] = [];
    createRootLogger({ level: 'info', destination: { write: (l: string) => void lines.push(l) } }).info('x');
    expect(JSON.parse(lines[0]!)).toMatchObject({ msg: 'x' });
  });

  it('show time, level, message and fields on one line, with no colour codes when colour is off', () => {
    const { logger, output } = capturePretty();
    logger.warn({ client_id: 'c-1', attempts: 3 }, 'pool slow to answer');
    const text = output();
    expect(text).toMatch(
      /^\[\d\d:\d\d:\d\d\.\d{3}\] WARN \(\d+\): pool slow to answer \{"client_id":"c-1","attempts":3\}\n$/,
    );
    expect(text).not.toContain('\u001b[');
    expect(() => JSON.parse(text)).toThrow();
  });

  it('never show a secret: fields, nested objects, errors, child bindings and messages are redacted before formatting', () => {
    const { logger, output } = capturePretty(true);
    const err = Object.assign(new Error(`refused with ${JWT}`), { password: 'pw-in-err' });
    logger.child({ service_role_key: 'child-binding-secret' }).error(
      {
        apiKey: 'sk-live-depth1',
        pool: { settings: { service_role_key: 'srk-depth3' } },
        attempts: [{ token: 'tok-in-array' }],
        err,
        headers: { Authorization: 'Bearer bearer-inside-err-0123456789', Cookie: 'cookie-value' },
      },
      `connect postgres://svc:hunter2@db.example.com/x with ${JWT}`,
    );
    const text = output();
    for (const secret of [...SECRETS, JWT, 'hunter2']) expect(text, secret).not.toContain(secret);
    expect(text).toContain(REDACTED);
    expect(text).toContain('refused with'); // the error is still there, message and stack
    expect(text).toMatch(/at .*log\.test\.ts/);
  });
});
