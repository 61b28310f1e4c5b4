-- One round trip per turn: the sidekick's documents and the user's earlier turns nearest to the
-- turn's query, in one answer. It delegates to match_documents and
-- match_conversation_transcripts_secure (002), so the search is theirs, not a second copy: the
-- HNSW index with the settings those functions carry (hnsw.ef_search = 200, iterative scans where
-- pgvector has them; a function's SET clause applies to each call of it), the over-fetch and the
-- exact re-ordering, ties broken by id. Existing projects may lack this function: the worker then
-- calls the two RPCs, as before.
CREATE OR REPLACE FUNCTION turn_context(
  p_query_embedding vector,
  p_agent_slug text,
  p_user_id uuid DEFAULT NULL,                -- NULL: no recall
  p_match_threshold float8 DEFAULT 0.5,
  p_match_count integer DEFAULT 5,            -- documents; 0: none (retrieval off for the session)
  p_recall_count integer DEFAULT 5,
  p_exclude_conversation_id uuid DEFAULT NULL -- the current conversation: recall looks at earlier ones
)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = public, extensions, pg_temp AS $$
BEGIN
  RETURN jsonb_build_object(
    'documents', CASE WHEN coalesce(p_match_count, 0) > 0 THEN coalesce((
      SELECT jsonb_agg(to_jsonb(m) - 'ord' ORDER BY m.ord)
        FROM match_documents(p_query_embedding, p_agent_slug, p_match_threshold, p_match_count)
             WITH ORDINALITY AS m(id, document_id, content, relevance, title, source_url, chunk_index, ord)
    ), '[]'::jsonb) ELSE '[]'::jsonb END,
    'recall', CASE WHEN p_user_id IS NOT NULL AND coalesce(p_recall_count, 0) > 0 THEN coalesce((
      SELECT jsonb_agg(to_jsonb(r) - 'ord' ORDER BY r.ord)
        FROM match_conversation_transcripts_secure(p_query_embedding, p_agent_slug, p_user_id,
                                                   p_match_threshold, p_recall_count, p_exclude_conversation_id)
             WITH ORDINALITY AS r(id, conversation_id, role, content, relevance, created_at, ord)
    ), '[]'::jsonb) ELSE '[]'::jsonb END
  );
END $$;

REVOKE ALL ON FUNCTION turn_context(vector, text, uuid, float8, integer, integer, uuid) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION turn_context(vector, text, uuid, float8, integer, integer, uuid) TO service_role;
