-- The RPCs of a dedicated project: the pool's, without p_client_id. Vector search goes through the
-- HNSW index with a wider candidate list (ef_search) and iterative scans (pgvector >= 0.8), so a
-- filter by sidekick or user still yields k rows; candidates are then ordered by exact distance.

CREATE OR REPLACE FUNCTION tune_vector_search() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM set_config('hnsw.ef_search', '200', true);
  BEGIN
    PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
  EXCEPTION WHEN OTHERS THEN
    NULL; -- pgvector < 0.8: no iterative scans; the over-fetch below still applies
  END;
END $$;

CREATE OR REPLACE FUNCTION match_documents(
  p_query_embedding vector,
  p_agent_slug text,
  p_match_threshold float8 DEFAULT 0.5,
  p_match_count integer DEFAULT 5
)
RETURNS TABLE (
  id uuid, document_id uuid, content text, relevance float8, title text, source_url text, chunk_index integer
)
LANGUAGE plpgsql SECURITY INVOKER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
BEGIN
  PERFORM tune_vector_search();
  RETURN QUERY
  WITH candidates AS (
    SELECT dc.id, dc.document_id, dc.content, dc.chunk_index, dc.embeddings <=> p_query_embedding AS distance
      FROM document_chunks dc
     WHERE dc.embeddings IS NOT NULL
       AND dc.document_id IN (
         SELECT ad.document_id FROM agent_documents ad JOIN agents a ON a.id = ad.agent_id
          WHERE a.slug = p_agent_slug AND ad.enabled)
     ORDER BY dc.embeddings <=> p_query_embedding
     LIMIT greatest(p_match_count * 4, 40)
  )
  SELECT c.id, c.document_id, c.content, (1 - c.distance)::float8, d.title, d.source_url, c.chunk_index
    FROM candidates c JOIN documents d ON d.id = c.document_id
   WHERE 1 - c.distance > p_match_threshold
   ORDER BY c.distance, c.id
   LIMIT p_match_count;
END $$;

CREATE OR REPLACE FUNCTION match_conversation_transcripts_secure(
  p_query_embedding vector,
  p_agent_slug text,
  p_user_id uuid,
  p_match_threshold float8 DEFAULT 0.5,
  p_match_count integer DEFAULT 5,
  p_exclude_conversation_id uuid DEFAULT NULL
)
RETURNS TABLE (id uuid, conversation_id uuid, role text, content text, relevance float8, created_at timestamptz)
LANGUAGE plpgsql SECURITY INVOKER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
BEGIN
  PERFORM tune_vector_search();
  RETURN QUERY
  WITH candidates AS (
    SELECT ct.id, ct.conversation_id, ct.role, ct.content, ct.created_at,
           ct.embeddings <=> p_query_embedding AS distance
      FROM conversation_transcripts ct
     WHERE ct.embeddings IS NOT NULL
       AND ct.user_id = p_user_id
       AND ct.agent_id IN (SELECT a.id FROM agents a WHERE a.slug = p_agent_slug)
       AND (p_exclude_conversation_id IS NULL OR ct.conversation_id <> p_exclude_conversation_id)
     ORDER BY ct.embeddings <=> p_query_embedding
     LIMIT greatest(p_match_count * 4, 40)
  )
  SELECT c.id, c.conversation_id, c.role, c.content, (1 - c.distance)::float8, c.created_at
    FROM candidates c
   WHERE 1 - c.distance > p_match_threshold
   ORDER BY c.distance, c.id
   LIMIT p_match_count;
END $$;

CREATE OR REPLACE FUNCTION get_user_overview_for_agent(p_user_id uuid, p_agent_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = public, pg_temp AS $$
DECLARE
  result jsonb;
BEGIN
  SELECT uo.sections INTO result
    FROM user_overviews uo
   WHERE uo.user_id = p_user_id AND (uo.agent_id = p_agent_id OR uo.agent_id IS NULL)
   ORDER BY uo.agent_id NULLS LAST
   LIMIT 1;
  RETURN coalesce(result, '{}'::jsonb);
END $$;

DO $$
DECLARE f text;
BEGIN
  FOREACH f IN ARRAY ARRAY[
    'tune_vector_search()',
    'match_documents(vector, text, float8, integer)',
    'match_conversation_transcripts_secure(vector, text, uuid, float8, integer, uuid)',
    'get_user_overview_for_agent(uuid, uuid)'
  ] LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon, authenticated', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO service_role', f);
  END LOOP;
END $$;
