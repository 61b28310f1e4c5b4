-- The RPCs of a dedicated project: the pool's, without p_client_id (the whole database is one
-- client's; the worker calls them with the project's service-role key, the API roles cannot).
--
-- Vector search goes through the HNSW index (001) with the settings the function carries (a SET
-- clause applies for the call only and is restored after it):
--   hnsw.ef_search = 200               a wider candidate list than the default 40 (measured on
--                                      20,000 clustered 1024-dim chunks: recall@10 0.99 at 200,
--                                      0.97 at 100, about 0.6 with the defaults and a filter);
--   hnsw.iterative_scan = relaxed_order (pgvector >= 0.8, added below only when the server has it)
--                                      the index scan goes on until enough rows pass the filter by
--                                      sidekick or user, instead of stopping at ef_search candidates.
-- Candidates are over-fetched (4 x k, at least 40) and re-ordered by exact distance, ties by id.
--
-- PL/pgSQL with EXECUTE, not LANGUAGE sql: the LIMIT must reach the planner as a constant. With a
-- parameter there (a generic plan, which is what PostgreSQL 15 makes of a SQL function) it assumes
-- a tenth of the table is wanted and never picks the HNSW index: every search would be an exact
-- scan of every chunk. EXECUTE ... USING plans each call with its values.
-- search_path includes `extensions`, where hosted Supabase may keep pgvector's operators.

DROP FUNCTION IF EXISTS tune_vector_search(); -- an earlier helper (set_config for the whole transaction)

CREATE OR REPLACE FUNCTION match_documents(
  p_query_embedding vector,
  p_agent_slug text,
  p_match_threshold float8 DEFAULT 0.5,
  p_match_count integer DEFAULT 5
)
RETURNS TABLE (
  id uuid, document_id uuid, content text, relevance float8, title text, source_url text, chunk_index integer
)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = public, extensions, pg_temp
SET hnsw.ef_search = 200
AS $fn$
BEGIN
  RETURN QUERY EXECUTE format($q$
    WITH candidates AS MATERIALIZED (
      SELECT dc.id, dc.document_id, dc.content, dc.chunk_index, dc.embeddings <=> $1 AS distance
        FROM document_chunks dc
       WHERE dc.embeddings IS NOT NULL
         AND dc.document_id IN (
           SELECT ad.document_id
             FROM agent_documents ad
             JOIN agents a ON a.id = ad.agent_id
            WHERE a.slug = $2 AND ad.enabled)
       ORDER BY dc.embeddings <=> $1
       LIMIT %s
    )
    SELECT c.id, c.document_id, c.content, (1 - c.distance)::float8, d.title, d.source_url, c.chunk_index
      FROM candidates c
      JOIN documents d ON d.id = c.document_id
     WHERE 1 - c.distance > $3
     ORDER BY c.distance, c.id
     LIMIT %s$q$,
    coalesce(greatest(p_match_count * 4, 40)::text, 'ALL'), coalesce(p_match_count::text, 'ALL'))
  USING p_query_embedding, p_agent_slug, p_match_threshold;
END $fn$;

CREATE OR REPLACE FUNCTION match_conversation_transcripts_secure(
  p_query_embedding vector,
  p_agent_slug text,
  p_user_id uuid,
  p_match_threshold float8 DEFAULT 0.5,
  p_match_count integer DEFAULT 5,
  p_exclude_conversation_id uuid DEFAULT NULL
)
RETURNS TABLE (id uuid, conversation_id uuid, role text, content text, relevance float8, created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = public, extensions, pg_temp
SET hnsw.ef_search = 200
AS $fn$
BEGIN
  RETURN QUERY EXECUTE format($q$
    WITH candidates AS MATERIALIZED (
      SELECT ct.id, ct.conversation_id, ct.role, ct.content, ct.created_at,
             ct.embeddings <=> $1 AS distance
        FROM conversation_transcripts ct
       WHERE ct.embeddings IS NOT NULL
         AND ct.user_id = $3
         AND ct.agent_id IN (SELECT a.id FROM agents a WHERE a.slug = $2)
         AND ($5::uuid IS NULL OR ct.conversation_id <> $5)
       ORDER BY ct.embeddings <=> $1
       LIMIT %s
    )
    SELECT c.id, c.conversation_id, c.role, c.content, (1 - c.distance)::float8, c.created_at
      FROM candidates c
     WHERE 1 - c.distance > $4
     ORDER BY c.distance, c.id
     LIMIT %s$q$,
    coalesce(greatest(p_match_count * 4, 40)::text, 'ALL'), coalesce(p_match_count::text, 'ALL'))
  USING p_query_embedding, p_agent_slug, p_user_id, p_match_threshold, p_exclude_conversation_id;
END $fn$;

CREATE OR REPLACE FUNCTION get_user_overview_for_agent(p_user_id uuid, p_agent_id uuid)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = public, extensions, pg_temp AS $$
  -- The sidekick's own overview of the user first, else the project-wide one (agent_id NULL).
  SELECT coalesce(
    (SELECT uo.sections
       FROM user_overviews uo
      WHERE uo.user_id = p_user_id AND (uo.agent_id = p_agent_id OR uo.agent_id IS NULL)
      ORDER BY uo.agent_id NULLS LAST
      LIMIT 1),
    '{}'::jsonb)
$$;

-- Iterative index scans exist from pgvector 0.8. The check is on the loaded library (the type's
-- input function loads it), not on the extension's catalog version, which may lag the library.
-- On an older pgvector the functions keep ef_search only, and the migration still applies.
DO $$
BEGIN
  PERFORM '[1]'::vector;
  IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'hnsw.iterative_scan') THEN
    ALTER FUNCTION match_documents(vector, text, float8, integer)
      SET hnsw.iterative_scan = relaxed_order;
    ALTER FUNCTION match_conversation_transcripts_secure(vector, text, uuid, float8, integer, uuid)
      SET hnsw.iterative_scan = relaxed_order;
  ELSE
    RAISE NOTICE 'pgvector has no hnsw.iterative_scan (< 0.8): filtered searches rely on ef_search alone';
  END IF;
END $$;

DO $$
DECLARE
  f text;
BEGIN
  FOREACH f IN ARRAY ARRAY[
    'match_documents(vector, text, float8, integer)',
    'match_conversation_transcripts_secure(vector, text, uuid, float8, integer, uuid)',
    'get_user_overview_for_agent(uuid, uuid)'
  ] LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon, authenticated', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO service_role', f);
  END LOOP;
END $$;
