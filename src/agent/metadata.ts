import { z } from 'zod';
import { isSecretFieldName } from '../log.js';
import { SIDEKICK_SLUG } from '../tenancy/sidekicks.js';
import {
  asClientId,
  asConversationId,
  asUserId,
  type ClientId,
  type ConversationId,
  type HostingType,
  isUuid,
  type UserId,
} from '../tenancy/types.js';
import { InvalidJobMetadataError, type MetadataIssue } from './errors.js';

/**
 * The job-metadata contract between the dispatcher and this worker (documented in the README).
 * `hosting_type` is only a hint: the platform database decides where data lives. Fields that look
 * like credentials are ignored and never logged: secrets do not travel in metadata.
 */
export interface JobMetadata {
  clientId: ClientId;
  agentSlug: string;
  userId: UserId | undefined;
  conversationId: ConversationId | undefined;
  hostingTypeHint: HostingType | undefined;
  /** Paths (never values) of credential-like fields that were sent and ignored, e.g. `auth.token`. */
  ignoredCredentialFields: string[];
}

/**
 * Limits of job metadata (the README's contract names them). The size is checked before the JSON
 * is parsed; the keys (array items count too) and the nesting after, before anything walks it.
 */
export const JOB_METADATA_LIMITS = Object.freeze({ bytes: 64 * 1024, keys: 1000, depth: 8 });

/** A JSON value's kind, for messages: never the value itself (it may be a secret). */
function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'string')
    return `a ${typeof value}`;
  return typeof value;
}

/** zod's message for a value of the wrong type: what was expected and what came (its kind only). */
const expected =
  (what: string) =>
  (issue: { input?: unknown }): string =>
    issue.input === undefined ? 'is required' : `must be ${what}, got ${kindOf(issue.input)}`;

const uuid = (what: string) =>
  z
    .string({ error: expected(`a string: a uuid, ${what}`) })
    .refine(isUuid, { message: `must be a uuid (${what}), e.g. 3f0c9a52-8d1e-4c4b-9f5e-2a7b6c1d0e9f` });

const schema = z.object({
  client_id: uuid("the client's id in the platform clients table"),
  agent_slug: z
    .string({ error: expected("a string: the sidekick's slug") })
    .regex(SIDEKICK_SLUG, 'must be the sidekick slug: letters, digits, "-" or "_", at most 100'),
  user_id: uuid("the end user's id").optional(),
  conversation_id: uuid('the conversation to continue; omit it to start a new one').optional(),
  hosting_type: z
    .enum(['shared', 'dedicated'], {
      error: (issue) =>
        typeof issue.input === 'string'
          ? 'must be "shared" or "dedicated" (a hint only)'
          : expected('"shared" or "dedicated" (a hint only)')(issue),
    })
    .optional(),
});

/**
 * Where data lives, named in metadata: never trusted (the platform record decides), so warned
 * about like secrets. Compared as log.ts compares secret names (lower case, without '_' and '-').
 */
const DATA_LOCATION =
  /(?:supabase|database|db|postgres|postgresql|pool|project)(?:url|uri|host|ref)$|^dsn$|connectionstring/;

function isCredentialLike(name: string): boolean {
  return isSecretFieldName(name) || DATA_LOCATION.test(name.toLowerCase().replace(/[-_]/g, ''));
}

const refuse = (problem: string) => new InvalidJobMetadataError([{ field: 'metadata', problem }]);

/**
 * Walks the document breadth-first (no recursion: a hostile nesting cannot exhaust the stack),
 * enforcing the key and depth limits and collecting the paths of credential-like names.
 */
function inspect(doc: object): string[] {
  const { keys: maxKeys, depth: maxDepth } = JOB_METADATA_LIMITS;
  const queue: Array<{ value: object; path: string; depth: number }> = [{ value: doc, path: '', depth: 1 }];
  const credentials: string[] = [];
  let keys = 0;
  for (let i = 0; i < queue.length; i++) {
    const { value, path, depth } = queue[i]!;
    if (depth > maxDepth) {
      throw refuse(`nests deeper than ${maxDepth} levels, the limit of job metadata`);
    }
    for (const [key, child] of Object.entries(value)) {
      if (++keys > maxKeys) {
        throw refuse(`holds more than ${maxKeys} keys and array items, the limit of job metadata`);
      }
      const at = path ? `${path}.${key}` : key;
      if (!Array.isArray(value) && isCredentialLike(key)) credentials.push(at);
      if (child !== null && typeof child === 'object')
        queue.push({ value: child, path: at, depth: depth + 1 });
    }
  }
  return credentials;
}

export function parseJobMetadata(raw: string | undefined | null): JobMetadata {
  const { bytes: maxBytes } = JOB_METADATA_LIMITS;
  const size = raw ? Buffer.byteLength(raw, 'utf8') : 0;
  if (size > maxBytes) {
    throw refuse(
      `is ${size} bytes, over the limit of ${maxBytes} bytes (64 KiB) for job metadata: send only the contract's fields (client_id, agent_slug, user_id, conversation_id, hosting_type)`,
    );
  }
  if (!raw?.trim()) {
    throw refuse('is empty: dispatch with JSON like {"client_id": "<uuid>", "agent_slug": "<slug>"}');
  }
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch {
    throw refuse('is not valid JSON');
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw refuse(`must be a JSON object, got ${kindOf(doc)}`);
  }
  const ignoredCredentialFields = inspect(doc);
  const parsed = schema.safeParse(doc);
  if (!parsed.success) {
    const issues: MetadataIssue[] = parsed.error.issues.map((i) => ({
      field: i.path.join('.') || 'metadata',
      problem: i.message,
    }));
    throw new InvalidJobMetadataError(issues);
  }
  const m = parsed.data;
  return {
    // Validated above; the constructors brand (and lower-case) them.
    clientId: asClientId(m.client_id),
    agentSlug: m.agent_slug,
    userId: m.user_id === undefined ? undefined : asUserId(m.user_id),
    conversationId: m.conversation_id === undefined ? undefined : asConversationId(m.conversation_id),
    hostingTypeHint: m.hosting_type,
    ignoredCredentialFields,
  };
}
