-- After the session: the conversation's summary (its title exists since 001), and the retention
-- sweep of one client's expired turns and conversations, a page at a time.

ALTER TABLE conversations ADD COLUMN IF NOT EXISTS summary text;
COMMENT ON COLUMN conversations.summary IS 'Written after the session from its stored (redacted) transcript';

-- What the sweep walks: one client's rows by age.
CREATE INDEX IF NOT EXISTS idx_transcripts_client_created ON conversation_transcripts (client_id, created_at);
CREATE INDEX IF NOT EXISTS idx_conversations_client_updated ON conversations (client_id, updated_at);

-- Deletes up to p_limit of the client's turns created before p_before (their embeddings are in the
-- same rows); once no such turn is left, up to p_limit of its conversations last updated before
-- p_before that have no turn left. `more`: call again. p_dry_run counts what would go, deleting
-- nothing. Runs as the caller (RLS applies) after the usual check that p_client_id is the caller's
-- own client; deletes pass the write fence like any tenant write (so a tier move's copy is never
-- swept from under it).
CREATE OR REPLACE FUNCTION sweep_expired(
  p_client_id uuid, p_before timestamptz, p_limit integer DEFAULT 500, p_dry_run boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, extensions, pg_temp AS $$
DECLARE
  v_turns integer := 0;
  v_conversations integer := 0;
BEGIN
  IF current_user <> 'service_role' AND p_client_id IS DISTINCT FROM (auth.jwt() ->> 'client_id')::uuid THEN
    RAISE EXCEPTION 'p_client_id does not match the caller''s client_id claim' USING ERRCODE = '42501';
  END IF;
  IF p_before IS NULL OR p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
    RAISE EXCEPTION 'sweep_expired needs p_before and p_limit from 1 to 10000' USING ERRCODE = '22023';
  END IF;

  IF p_dry_run THEN
    SELECT count(*) INTO v_turns FROM conversation_transcripts t
     WHERE t.client_id = p_client_id AND t.created_at < p_before;
    SELECT count(*) INTO v_conversations FROM conversations c
     WHERE c.client_id = p_client_id AND c.updated_at < p_before
       AND NOT EXISTS (SELECT 1 FROM conversation_transcripts t
                        WHERE t.client_id = c.client_id AND t.conversation_id = c.id
                          AND (t.created_at >= p_before OR t.created_at IS NULL));
    RETURN jsonb_build_object('transcripts', v_turns, 'conversations', v_conversations, 'more', false);
  END IF;

  DELETE FROM conversation_transcripts t
   WHERE t.client_id = p_client_id
     AND t.id IN (SELECT x.id FROM conversation_transcripts x
                   WHERE x.client_id = p_client_id AND x.created_at < p_before
                   ORDER BY x.created_at LIMIT p_limit);
  GET DIAGNOSTICS v_turns = ROW_COUNT;

  IF v_turns < p_limit THEN
    DELETE FROM conversations c
     WHERE c.client_id = p_client_id
       AND c.id IN (SELECT x.id FROM conversations x
                     WHERE x.client_id = p_client_id AND x.updated_at < p_before
                       AND NOT EXISTS (SELECT 1 FROM conversation_transcripts t
                                        WHERE t.client_id = x.client_id AND t.conversation_id = x.id)
                     ORDER BY x.updated_at LIMIT p_limit - v_turns);
    GET DIAGNOSTICS v_conversations = ROW_COUNT;
  END IF;

  RETURN jsonb_build_object(
    'transcripts', v_turns, 'conversations', v_conversations,
    'more', v_turns + v_conversations >= p_limit);
END $$;

REVOKE ALL ON FUNCTION sweep_expired(uuid, timestamptz, integer, boolean) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION sweep_expired(uuid, timestamptz, integer, boolean) TO authenticated, service_role;
