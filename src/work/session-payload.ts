import { z } from 'zod';

/** What the post-session work and the webhook know of a finished session (work item payloads). */
export const postSessionSchema = z.object({
  client_id: z.string(),
  /** The job id (or a random id for `sidekick chat`): one post-session item per session. */
  session_id: z.string(),
  conversation_id: z.string(),
  sidekick_id: z.string().nullable(),
  sidekick_slug: z.string(),
  user_id: z.string().nullable(),
  started_at: z.string(),
  ended_at: z.string(),
});
export type PostSessionPayload = z.infer<typeof postSessionSchema>;

/** One session, one post-session item and one report: the dedupe key both are queued under. */
export const postSessionDedupeKey = (p: Pick<PostSessionPayload, 'session_id'>) => `session:${p.session_id}`;
