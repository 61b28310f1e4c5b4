import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import {
  CONFIG_VARIABLES,
  ConfigError,
  describeConfig,
  EnvFileError,
  loadConfig,
  loadEnvFile,
} from '../src/config.js';

function configError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

const SECRETS_KEY_EXAMPLE = Buffer.alloc(32, 7).toString('base64');
const OLD_KEY_EXAMPLE = Buffer.alloc(32, 9).toString('base64');

describe('loadConfig', () => {
  it('runs with an empty environment: embedded stack, livekit --dev defaults, local embeddings', () => {
    const config = loadConfig({});
    expect(config).toEqual({
      platform: { mode: 'embedded' },
      stack: { postgresUrl: null },
      livekit: { url: 'ws://localhost:7880', apiKey: 'devkey', apiSecret: 'secret', usingDevDefaults: true },
      agentName: 'sidekick',
      openai: { apiKey: null, baseUrl: null },
      models: {
        llm: 'gpt-4o-mini',
        stt: 'gpt-4o-mini-transcribe',
        tts: 'gpt-4o-mini-tts',
        defaultVoice: 'alloy',
      },
      embeddings: { provider: 'local', dimensions: 1024 },
      tenancy: { clientCacheTtlMs: 30_000, tenantTokenTtlS: 300, maxCachedConnections: 500 },
      context: {
        budgetMs: 350,
        maxChars: 6000,
        ragMatchCount: 5,
        ragMatchThreshold: 0.2,
        recallMatchCount: 3,
      },
      transcripts: {
        batchSize: 50,
        maxBuffered: 5000,
        graceMs: 30_000,
        spoolDir: join(tmpdir(), 'sidekick-transcript-spool'),
      },
      leases: { ttlS: 60, pendingS: 30 },
      retention: { sweepIntervalS: 3600 },
      secrets: { key: null, oldKeys: [] },
      outbound: { allowlist: [] },
      healthPort: 8081,
      logLevel: 'info',
      nodeEnv: 'development',
    });
  });

  it('returns a deeply frozen config', () => {
    const config = loadConfig({});
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.livekit)).toBe(true);
    expect(() => {
      (config.context as { budgetMs: number }).budgetMs = 1;
    }).toThrow(TypeError);
  });

  it('reads every variable', () => {
    const config = loadConfig({
      PLATFORM_SUPABASE_URL: 'https://platform.supabase.co',
      PLATFORM_SUPABASE_SERVICE_ROLE_KEY: 'srk',
      STACK_POSTGRES_URL: 'postgres://postgres:pw@localhost:5432/postgres',
      LIVEKIT_URL: 'wss://demo.livekit.cloud',
      LIVEKIT_API_KEY: 'APIabc',
      LIVEKIT_API_SECRET: 'lk-secret',
      AGENT_NAME: 'concierge',
      OPENAI_API_KEY: 'sk-openai',
      OPENAI_BASE_URL: 'http://127.0.0.1:11434/v1',
      LLM_MODEL: 'llama3',
      STT_MODEL: 'whisper-1',
      TTS_MODEL: 'tts-1',
      TTS_VOICE: 'nova',
      EMBEDDING_PROVIDER: 'openai',
      EMBEDDING_MODEL: 'nomic-embed',
      EMBEDDING_DIMENSIONS: '768',
      EMBEDDING_BASE_URL: 'https://embed.example/v1',
      EMBEDDING_API_KEY: 'sk-embed',
      CLIENT_CACHE_TTL_MS: '1000',
      TENANT_TOKEN_TTL_S: '60',
      MAX_CACHED_CONNECTIONS: '10',
      CONTEXT_BUDGET_MS: '200',
      CONTEXT_MAX_CHARS: '3000',
      RAG_MATCH_COUNT: '8',
      RAG_MATCH_THRESHOLD: '0.35',
      RECALL_MATCH_COUNT: '2',
      TRANSCRIPT_BATCH_SIZE: '20',
      TRANSCRIPT_MAX_BUFFERED: '100',
      TRANSCRIPT_GRACE_MS: '0',
      TRANSCRIPT_SPOOL_DIR: '/var/spool/sidekick',
      RETENTION_SWEEP_INTERVAL_S: '0',
      SESSION_LEASE_TTL_S: '9',
      SESSION_LEASE_PENDING_S: '4',
      SECRETS_KEY: SECRETS_KEY_EXAMPLE,
      SECRETS_OLD_KEYS: ` ${OLD_KEY_EXAMPLE} `,
      OUTBOUND_ALLOWLIST: 'localhost, 127.0.0.0/8',
      HEALTH_PORT: '0',
      LOG_LEVEL: 'debug',
      NODE_ENV: 'production',
    });
    expect(config).toEqual({
      platform: { mode: 'remote', url: 'https://platform.supabase.co', serviceRoleKey: 'srk' },
      stack: { postgresUrl: 'postgres://postgres:pw@localhost:5432/postgres' },
      livekit: {
        url: 'wss://demo.livekit.cloud',
        apiKey: 'APIabc',
        apiSecret: 'lk-secret',
        usingDevDefaults: false,
      },
      agentName: 'concierge',
      openai: { apiKey: 'sk-openai', baseUrl: 'http://127.0.0.1:11434/v1' },
      models: { llm: 'llama3', stt: 'whisper-1', tts: 'tts-1', defaultVoice: 'nova' },
      embeddings: {
        provider: 'openai',
        model: 'nomic-embed',
        dimensions: 768,
        apiKey: 'sk-embed',
        baseUrl: 'https://embed.example/v1',
      },
      tenancy: { clientCacheTtlMs: 1000, tenantTokenTtlS: 60, maxCachedConnections: 10 },
      context: {
        budgetMs: 200,
        maxChars: 3000,
        ragMatchCount: 8,
        ragMatchThreshold: 0.35,
        recallMatchCount: 2,
      },
      transcripts: { batchSize: 20, maxBuffered: 100, graceMs: 0, spoolDir: '/var/spool/sidekick' },
      leases: { ttlS: 9, pendingS: 4 },
      retention: { sweepIntervalS: 0 },
      secrets: { key: SECRETS_KEY_EXAMPLE, oldKeys: [OLD_KEY_EXAMPLE] },
      outbound: { allowlist: ['localhost', '127.0.0.0/8'] },
      healthPort: 0,
      logLevel: 'debug',
      nodeEnv: 'production',
    });
  });

  it('treats empty and blank values as unset and trims the rest', () => {
    const config = loadConfig({
      PLATFORM_SUPABASE_URL: '',
      PLATFORM_SUPABASE_SERVICE_ROLE_KEY: '   ',
      RAG_MATCH_COUNT: '',
      AGENT_NAME: '  concierge ',
    });
    expect(config.platform).toEqual({ mode: 'embedded' });
    expect(config.context.ragMatchCount).toBe(5);
    expect(config.agentName).toBe('concierge');
  });

  it('needs both platform variables or neither', () => {
    const missingKey = configError({ PLATFORM_SUPABASE_URL: 'https://platform.supabase.co' });
    expect(missingKey.issues).toEqual([
      {
        variable: 'PLATFORM_SUPABASE_SERVICE_ROLE_KEY',
        problem: 'required when PLATFORM_SUPABASE_URL is set',
        help: "the platform project's service_role key",
      },
    ]);
    expect(missingKey.message).toContain(
      "PLATFORM_SUPABASE_SERVICE_ROLE_KEY: required when PLATFORM_SUPABASE_URL is set (the platform project's service_role key)",
    );
    const missingUrl = configError({ PLATFORM_SUPABASE_SERVICE_ROLE_KEY: 'srk' });
    expect(missingUrl.issues.map((i) => i.variable)).toEqual(['PLATFORM_SUPABASE_URL']);
  });

  it('rejects URLs of the wrong scheme without echoing them', () => {
    const err = configError({
      PLATFORM_SUPABASE_URL: 'ftp://user:topsecret@platform',
      PLATFORM_SUPABASE_SERVICE_ROLE_KEY: 'srk',
      STACK_POSTGRES_URL: 'mysql://root:pw@db/x',
      LIVEKIT_URL: 'not a url',
    });
    expect(err.issues.map((i) => [i.variable, i.problem])).toEqual([
      ['PLATFORM_SUPABASE_URL', 'must be a http:// or https:// URL, got ftp://'],
      ['STACK_POSTGRES_URL', 'must be a postgres:// or postgresql:// URL, got mysql://'],
      ['LIVEKIT_URL', 'is not a valid URL'],
    ]);
    expect(err.message).not.toContain('topsecret');
  });

  it.each([
    ['RAG_MATCH_COUNT', '12abc'],
    ['RAG_MATCH_COUNT', '1.5'],
    ['RAG_MATCH_COUNT', '-1'],
    ['RAG_MATCH_COUNT', '1e2'],
    ['RAG_MATCH_COUNT', '0x10'],
    ['RAG_MATCH_COUNT', '0'],
    ['EMBEDDING_DIMENSIONS', '0'],
    ['HEALTH_PORT', '70000'],
    ['RAG_MATCH_THRESHOLD', '1.5'],
    ['RAG_MATCH_THRESHOLD', '0.2x'],
    ['RAG_MATCH_THRESHOLD', '-0.1'],
  ])('rejects %s=%j', (variable, value) => {
    const err = configError({ [variable]: value });
    expect(err.issues).toHaveLength(1);
    expect(err.issues[0]?.variable).toBe(variable);
    expect(err.issues[0]?.problem).toContain(`"${value}"`);
  });

  it('lists every problem in one error, in a stable order, each with what to set', () => {
    const err = configError({
      PLATFORM_SUPABASE_URL: 'https://platform.supabase.co',
      EMBEDDING_PROVIDER: 'openai',
      CONTEXT_BUDGET_MS: 'fast',
      LOG_LEVEL: 'verbose',
      NODE_ENV: 'staging',
      TRANSCRIPT_BATCH_SIZE: '100',
      TRANSCRIPT_MAX_BUFFERED: '10',
    });
    expect(err.issues.map((i) => i.variable)).toEqual([
      'PLATFORM_SUPABASE_SERVICE_ROLE_KEY',
      'EMBEDDING_PROVIDER',
      'CONTEXT_BUDGET_MS',
      'TRANSCRIPT_MAX_BUFFERED',
      'LOG_LEVEL',
      'NODE_ENV',
    ]);
    for (const issue of err.issues) {
      expect(issue.help.length).toBeGreaterThan(0);
      expect(err.message).toContain(`${issue.variable}: ${issue.problem} (${issue.help})`);
    }
    expect(err.issues.find((i) => i.variable === 'LOG_LEVEL')?.problem).toBe(
      'must be one of fatal, error, warn, info, debug, trace, silent, got "verbose"',
    );
  });

  describe('embeddings', () => {
    it('default to openai, with the OpenAI key and base URL, when an OpenAI key is set', () => {
      const config = loadConfig({ OPENAI_API_KEY: 'sk-1', OPENAI_BASE_URL: 'http://127.0.0.1:8000/v1' });
      expect(config.embeddings).toEqual({
        provider: 'openai',
        model: 'text-embedding-3-small',
        dimensions: 1024,
        apiKey: 'sk-1',
        baseUrl: 'http://127.0.0.1:8000/v1',
      });
    });

    it('use an embedding-only key without an OpenAI key', () => {
      const config = loadConfig({ EMBEDDING_API_KEY: 'sk-embed' });
      expect(config.embeddings).toMatchObject({ provider: 'openai', apiKey: 'sk-embed', baseUrl: null });
      expect(config.openai.apiKey).toBeNull();
    });

    it('stay local when asked, even with a key', () => {
      expect(loadConfig({ OPENAI_API_KEY: 'sk-1', EMBEDDING_PROVIDER: 'local' }).embeddings).toEqual({
        provider: 'local',
        dimensions: 1024,
      });
    });

    it('refuse openai without any key', () => {
      const err = configError({ EMBEDDING_PROVIDER: 'openai' });
      expect(err.issues).toHaveLength(1);
      expect(err.issues[0]?.problem).toMatch(/set EMBEDDING_API_KEY or OPENAI_API_KEY/);
    });

    it('reject an unknown provider', () => {
      expect(configError({ EMBEDDING_PROVIDER: 'cohere' }).issues[0]?.variable).toBe('EMBEDDING_PROVIDER');
    });
  });

  it('flags the livekit --dev credentials', () => {
    expect(loadConfig({ LIVEKIT_API_KEY: 'k', LIVEKIT_API_SECRET: 's' }).livekit.usingDevDefaults).toBe(
      false,
    );
    expect(loadConfig({ LIVEKIT_API_KEY: 'k' }).livekit.usingDevDefaults).toBe(true);
  });

  it('reads process.env by default', () => {
    vi.stubEnv('AGENT_NAME', 'from-process-env');
    try {
      expect(loadConfig().agentName).toBe('from-process-env');
    } finally {
      vi.unstubAllEnvs();
    }
  });
});

describe('describeConfig', () => {
  it('replaces every secret and URL password, and keeps everything else', () => {
    const config = loadConfig({
      PLATFORM_SUPABASE_URL: 'https://platform.supabase.co',
      PLATFORM_SUPABASE_SERVICE_ROLE_KEY: 'srk-secret',
      STACK_POSTGRES_URL: 'postgres://postgres:pg-secret@localhost:5432/postgres?sslpassword=ssl-secret',
      LIVEKIT_API_KEY: 'lk-key',
      LIVEKIT_API_SECRET: 'lk-secret',
      OPENAI_API_KEY: 'sk-secret',
      EMBEDDING_API_KEY: 'embed-secret',
    });
    const described = describeConfig(config);
    const text = JSON.stringify(described);
    for (const secret of [
      'srk-secret',
      'pg-secret',
      'ssl-secret',
      'lk-key',
      'lk-secret',
      'sk-secret',
      'embed-secret',
    ]) {
      expect(text).not.toContain(secret);
    }
    expect(described.platform).toEqual({
      mode: 'remote',
      url: 'https://platform.supabase.co',
      serviceRoleKey: '[redacted]',
    });
    expect(described.stack.postgresUrl).toBe(
      'postgres://postgres:[redacted]@localhost:5432/postgres?sslpassword=[redacted]',
    );
    expect(described.context).toEqual(config.context);
    expect(described.livekit.url).toBe(config.livekit.url);
    expect(config.livekit.apiSecret).toBe('lk-secret');
  });

  it('shows unset secrets as null', () => {
    expect(describeConfig(loadConfig({})).openai).toEqual({ apiKey: null, baseUrl: null });
  });
});

describe('.env.example', () => {
  it('documents every variable', () => {
    const example = readFileSync(new URL('../.env.example', import.meta.url), 'utf8');
    for (const variable of CONFIG_VARIABLES) expect(example).toMatch(new RegExp(`^${variable}=`, 'm'));
  });

  it('copied to .env, loads as it stands (the defaults)', () => {
    const env: NodeJS.ProcessEnv = {};
    const loaded = loadEnvFile(env, new URL('../.env.example', import.meta.url).pathname);
    expect(loaded?.fromFile).toEqual(expect.arrayContaining([...CONFIG_VARIABLES]));
    expect(loadConfig(env)).toEqual(loadConfig({}));
  });

  it('says that it is read from .env, under the environment', () => {
    const example = readFileSync(new URL('../.env.example', import.meta.url), 'utf8');
    expect(example.split('\n')[0]).toMatch(/Copy to \.env.*read.*environment/i);
  });
});

describe('loadEnvFile (.env)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sidekick-dotenv-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const envError = (env: NodeJS.ProcessEnv, path: string): EnvFileError => {
    try {
      loadEnvFile(env, path);
    } catch (err) {
      if (err instanceof EnvFileError) return err;
      throw err;
    }
    throw new Error('expected an EnvFileError');
  };

  it('fills in what the environment does not define; the environment wins, even when blank', () => {
    const path = file(
      'precedence.env',
      [
        '# comment',
        'OPENAI_API_KEY=sk-from-file',
        'export LLM_MODEL="gpt-from-file"',
        'TTS_VOICE=sage # a comment after the value',
        "AGENT_NAME='from-file'",
        'PLATFORM_SUPABASE_URL=https://file.example',
        'PLATFORM_SUPABASE_SERVICE_ROLE_KEY=file-key',
        'OPENAI_BASE_URL="http://multi',
        'line"',
        '',
      ].join('\n'),
    );
    const env: NodeJS.ProcessEnv = {
      AGENT_NAME: 'from-env',
      PLATFORM_SUPABASE_URL: '',
      PLATFORM_SUPABASE_SERVICE_ROLE_KEY: '',
    };
    const loaded = loadEnvFile(env, path);
    expect(loaded?.path).toBe(path);
    expect(loaded?.fromFile.sort()).toEqual(['LLM_MODEL', 'OPENAI_API_KEY', 'OPENAI_BASE_URL', 'TTS_VOICE']);
    expect(env.OPENAI_BASE_URL).toBe('http://multi\nline');
    const config = loadConfig(env);
    expect(config.openai.apiKey).toBe('sk-from-file');
    expect(config.models).toMatchObject({ llm: 'gpt-from-file', defaultVoice: 'sage' });
    expect(config.agentName).toBe('from-env');
    expect(config.platform).toEqual({ mode: 'embedded' });
  });

  it('a missing file is fine', () => {
    const env: NodeJS.ProcessEnv = {};
    expect(loadEnvFile(env, join(dir, 'absent.env'))).toBeNull();
    expect(env).toEqual({});
  });

  it('a malformed or unreadable file is a clear error naming the lines, never their content', () => {
    const secret = 'sk-live-0123456789abcdef';
    const bad = file(
      'bad.env',
      `LOG_LEVEL=warn\nOPENAI_API_KEY ${secret}\n: oops\nOK=1\nTTS_VOICE="never closed\n`,
    );
    const env: NodeJS.ProcessEnv = {};
    const err = envError(env, bad);
    expect(err.problems).toEqual([
      'line 2 is not NAME=value',
      'line 3 is not NAME=value',
      'line 5: the quoted value of TTS_VOICE is never closed',
    ]);
    expect(err.message).toContain(`${bad} is malformed: line 2 is not NAME=value`);
    expect(err.message).not.toContain(secret);
    expect(env).toEqual({}); // nothing applied from a file that is wrong
    const directory = join(dir, 'dir.env');
    mkdirSync(directory);
    expect(envError({}, directory).message).toContain('cannot be read (EISDIR)');
  });
});
