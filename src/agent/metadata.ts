import { z } from 'zod';
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
  /** Names (never values) of credential-like fields that were sent and ignored. */
  ignoredCredentialFields: string[];
}

const uuid = (what: string) =>
  z
    .string()
    .refine(isUuid, { message: `must be a uuid (the ${what}), e.g. 3f0c9a52-8d1e-4c4b-9f5e-2a7b6c1d0e9f` });

const schema = z.object({
  client_id: uuid("client's id in the platform clients table"),
  agent_slug: z
    .string()
    .regex(SIDEKICK_SLUG, 'must be the sidekick slug: letters, digits, "-" or "_", at most 100'),
  user_id: uuid("end user's id").optional(),
  conversation_id: uuid('conversation to continue; omit it to start a new one').optional(),
  hosting_type: z
    .enum(['shared', 'dedicated'], { message: 'must be "shared" or "dedicated" (a hint only)' })
    .optional(),
});

const CREDENTIAL_FIELD = /key|secret|token|password|credential|supabase_url/i;

export function parseJobMetadata(raw: string | undefined | null): JobMetadata {
  if (!raw?.trim()) {
    throw new InvalidJobMetadataError([
      {
        field: 'metadata',
        problem: 'is empty: dispatch with JSON like {"client_id": "<uuid>", "agent_slug": "<slug>"}',
      },
    ]);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch {
    throw new InvalidJobMetadataError([{ field: 'metadata', problem: 'is not valid JSON' }]);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new InvalidJobMetadataError([{ field: 'metadata', problem: 'must be a JSON object' }]);
  }
  const parsed = schema.safeParse(doc);
  if (!parsed.success) {
    const issues: MetadataIssue[] = parsed.error.issues.map((i) => ({
      field: i.path.join('.') || 'metadata',
      problem: i.code === 'invalid_type' && i.input === undefined ? 'is required' : i.message,
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
    ignoredCredentialFields: Object.keys(doc).filter((k) => CREDENTIAL_FIELD.test(k)),
  };
}
