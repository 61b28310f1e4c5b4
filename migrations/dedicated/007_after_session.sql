-- After the session (the pool's 007 without client_id: the whole project is one client's): the
-- conversation's summary and the retention sweep, a page at a time. A project that predates this
-- file still runs sessions; its summaries go to conversations.metadata until it is applied.

ALTER TABLE conversations ADD COLUMN IF NOT EXISTS summary text;
COMMENT ON COLUMN conversations.summary IS 'Written after the session from its stored (redacted) transcript';

CREATE INDEX IF NOT EXISTS idx_transcripts_created ON conversation_transcripts (created_at);
CREATE INDEX IF NOT EXISTS idx_conversations_updated ON conversations (updated_at);

-- See migrations/shared_pool/007_after_session.sql for what it deletes and returns.
CREATE OR REPLACE FUNCTION sweep_expired(
  p_before timestamptz, p_limit integer DEFAULT 500, p_dry_run boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, extensions, pg_temp AS $$
DECLARE
  v_turns integer := 0;
  v_conversations integer := 0;
BEGIN
  IF p_before IS NULL OR p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
    RAISE EXCEPTION 'sweep_expired needs p_before and p_limit from 1 to 10000' USING ERRCODE = '22023';
  END IF;

  IF p_dry_run THEN
    SELECT count(*) INTO v_turns FROM conversation_transcripts t WHERE t.created_at < p_before;
    SELECT count(*) INTO v_conversations FROM conversations c
     WHERE c.updated_at < p_before
       AND NOT EXISTS (SELECT 1 FROM conversation_transcripts t
                        WHERE t.conversation_id = c.id AND (t.created_at >= p_before OR t.created_at IS NULL));
    RETURN jsonb_build_object('transcripts', v_turns, 'conversations', v_conversations, 'more', false);
  END IF;

  DELETE FROM conversation_transcripts t
   WHERE t.id IN (SELECT x.id FROM conversation_transcripts x
                   WHERE x.created_at < p_before ORDER BY x.created_at LIMIT p_limit);
  GET DIAGNOSTICS v_turns = ROW_COUNT;

  IF v_turns < p_limit THEN
    DELETE FROM conversations c
     WHERE c.id IN (SELECT x.id FROM conversations x
                     WHERE x.updated_at < p_before
                       AND NOT EXISTS (SELECT 1 FROM conversation_transcripts t WHERE t.conversation_id = x.id)
                     ORDER BY x.updated_at LIMIT p_limit - v_turns);
    GET DIAGNOSTICS v_conversations = ROW_COUNT;
  END IF;

  RETURN jsonb_build_object(
    'transcripts', v_turns, 'conversations', v_conversations,
    'more', v_turns + v_conversations >= p_limit);
END $$;

REVOKE ALL ON FUNCTION sweep_expired(timestamptz, integer, boolean) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION sweep_expired(timestamptz, integer, boolean) TO service_role;
