import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalStack } from '../src/stack/stack.js';
import { DEFAULT_SETTINGS, readClientSettings } from '../src/tenancy/client-settings.js';
import { asClientId } from '../src/tenancy/types.js';
import { json, sidekick, stackEnv } from './support/cli.js';
import { connectionsTo, startTestStack } from './support/stack.js';

/** A client's own switches: read key by key (never failing a session), set with the CLI. */

describe('reading stored settings', () => {
  const read = (stored: unknown) => {
    const warnings: Array<{ msg: string; fields: Record<string, unknown> }> = [];
    const settings = readClientSettings(stored, (msg, fields) => warnings.push({ msg, fields }));
    return { settings, warnings };
  };

  it('absent keys take their defaults', () => {
    expect(read({})).toEqual({ settings: DEFAULT_SETTINGS, warnings: [] });
    expect(read(null).settings).toEqual(DEFAULT_SETTINGS);
    expect(DEFAULT_SETTINGS).toEqual({
      webhook_url: null,
      webhook_transcript: false,
      memory: true,
      redaction: 'off',
      phone_region: 'US',
    });
  });

  it('an unreadable value takes its safe value, alone, and is reported by key; unknown keys are ignored', () => {
    const { settings, warnings } = read({
      webhook_url: 'ftp://files.example',
      memory: 'yes',
      redaction: 'Mask',
      phone_region: 'GB',
      colour: 'blue',
    });
    expect(settings).toEqual({
      webhook_url: null,
      webhook_transcript: false,
      memory: false,
      redaction: 'mask',
      phone_region: 'GB',
    });
    expect(warnings.map((w) => w.fields.key)).toEqual(['webhook_url', 'memory', 'redaction', 'colour']);
    expect(warnings[0]!.fields.problem).toBe('expected an http(s) URL without user:password');
  });

  it('a value that is not an object reads as every safe value', () => {
    const { settings, warnings } = read(['mask']);
    expect(settings).toMatchObject({ memory: false, redaction: 'mask', webhook_url: null });
    expect(warnings).toHaveLength(1);
  });
});

describe('sidekick clients settings', () => {
  let stack: LocalStack;
  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });
  const A = () => stack.demo!.adventurers[0]!.clientId;

  it('set changes what it is given and keeps the rest; show prints it; a session reads it', async () => {
    const env = stackEnv(stack);
    const set = await sidekick(
      [
        'clients',
        'settings',
        'set',
        '--client',
        A(),
        '--webhook-url',
        'https://hooks.acme.example/sidekick',
        '--memory',
        'off',
        '--redaction',
        'mask',
      ],
      env,
    );
    expect(set.code).toBe(0);
    expect(set.stdout).toContain('webhook_url         https://hooks.acme.example/sidekick');
    await sidekick(
      ['clients', 'settings', 'set', '--client', A(), '--webhook-transcript', 'on', '--phone-region', 'gb'],
      env,
    );
    const shown = json<{ settings: Record<string, unknown> }>(
      await sidekick(['clients', 'settings', 'show', '--client', A(), '--json'], env),
    );
    expect(shown.settings).toEqual({
      webhook_url: 'https://hooks.acme.example/sidekick',
      webhook_transcript: true,
      memory: false,
      redaction: 'mask',
      phone_region: 'GB',
    });
    const connection = await connectionsTo(stack).forClient(asClientId(A()));
    expect(connection.settings).toEqual(shown.settings);

    const removed = await sidekick(
      ['clients', 'settings', 'set', '--client', A(), '--webhook-url', 'none', '--json'],
      env,
    );
    expect(json<{ settings: Record<string, unknown> }>(removed).settings).toMatchObject({
      webhook_url: null,
      redaction: 'mask',
    });
  });

  it.each([
    [
      ['--webhook-url', 'ftp://files.example'],
      '--webhook-url: expected an http(s) URL without user:password',
    ],
    [
      ['--webhook-url', 'https://user:pw@hooks.example'],
      '--webhook-url: expected an http(s) URL without user:password',
    ],
    [['--phone-region', 'gbr'], '--phone-region: expected a two-letter region code'],
    [['--phone-region', 'XX'], '--phone-region: expected a region phone numbers are known for'],
    // A URL a client writes passes the outbound guard when it is set, not only when a report is sent.
    [['--webhook-url', 'http://10.0.0.1/hook'], '--webhook-url: 10.0.0.1 is a private address: refused'],
    [
      ['--webhook-url', 'http://169.254.169.254/hook'],
      '--webhook-url: 169.254.169.254 is a metadata address',
    ],
    [['--memory', 'maybe'], "option '--memory <on|off>' argument 'maybe' is invalid. expected on or off"],
    [
      ['--redaction', 'hide'],
      "option '--redaction <mode>' argument 'hide' is invalid. expected one of off, mask",
    ],
    [[], 'nothing to set: give at least one of --webhook-url'],
  ])('refuses %j, naming the option (exit 2)', async (args, message) => {
    const run = await sidekick(['clients', 'settings', 'set', '--client', A(), ...args], stackEnv(stack));
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(message);
  });

  it('unreadable stored settings never fail a session: the safe values, and a warning naming each key', async () => {
    await stack.platform.sql.query(
      `UPDATE clients SET settings = '{"memory": "yes", "redaction": 5}' WHERE id = $1`,
      [A()],
    );
    const warnings: Array<Record<string, unknown>> = [];
    const connection = await connectionsTo(stack, { warn: (_m, f) => warnings.push(f) }).forClient(
      asClientId(A()),
    );
    expect(connection.settings).toMatchObject({ memory: false, redaction: 'mask' });
    expect(warnings).toEqual([
      expect.objectContaining({ key: 'memory', client_id: A() }),
      expect.objectContaining({ key: 'redaction', client_id: A() }),
    ]);
  });
});
