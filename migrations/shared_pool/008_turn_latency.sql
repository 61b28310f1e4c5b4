-- Per-turn latency, read back: each assistant turn's metadata.latency (src/usage/latency.ts,
-- written with the transcript) summed up per sidekick and component for `sidekick usage`. Like
-- every pool RPC it runs as the caller and refuses a p_client_id other than the caller's claim.

-- The report reads one client's assistant turns of a time range, and only those with a latency.
CREATE INDEX IF NOT EXISTS idx_transcripts_latency ON conversation_transcripts (client_id, created_at)
  WHERE role = 'assistant' AND metadata ? 'latency';

-- Percentiles (ms) of each latency component of the turns of [p_from, p_to), per sidekick (or of
-- p_agent_slug only). A component a turn did not measure (no audio: no end of turn) is left out
-- of that component's count.
CREATE OR REPLACE FUNCTION turn_latency_report(
  p_client_id uuid, p_from timestamptz, p_to timestamptz, p_agent_slug text DEFAULT NULL)
RETURNS TABLE (agent_slug text, component text, turns bigint, p50_ms float8, p90_ms float8, p99_ms float8)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = public, extensions, pg_temp AS $$
#variable_conflict use_column
BEGIN
  IF current_user <> 'service_role' AND p_client_id IS DISTINCT FROM (auth.jwt() ->> 'client_id')::uuid THEN
    RAISE EXCEPTION 'p_client_id does not match the caller''s client_id claim' USING ERRCODE = '42501';
  END IF;
  RETURN QUERY
  SELECT a.slug, c.component, count(*),
         percentile_cont(0.5) WITHIN GROUP (ORDER BY (c.v)::float8),
         percentile_cont(0.9) WITHIN GROUP (ORDER BY (c.v)::float8),
         percentile_cont(0.99) WITHIN GROUP (ORDER BY (c.v)::float8)
    FROM conversation_transcripts ct
    JOIN agents a ON a.client_id = ct.client_id AND a.id = ct.agent_id
    CROSS JOIN LATERAL (VALUES
      ('e2e', ct.metadata -> 'latency' -> 'e2e_ms'),
      ('end_of_turn', ct.metadata -> 'latency' -> 'end_of_turn_ms'),
      ('transcription', ct.metadata -> 'latency' -> 'transcription_ms'),
      ('context', ct.metadata -> 'latency' -> 'context_ms'),
      ('llm_ttft', ct.metadata -> 'latency' -> 'llm_ttft_ms'),
      ('tts_ttfb', ct.metadata -> 'latency' -> 'tts_ttfb_ms')) AS c(component, v)
   WHERE ct.client_id = p_client_id
     AND ct.role = 'assistant' AND ct.metadata ? 'latency'
     AND ct.created_at >= p_from AND ct.created_at < p_to
     AND (p_agent_slug IS NULL OR a.slug = p_agent_slug)
     AND jsonb_typeof(c.v) = 'number'
   GROUP BY a.slug, c.component
   ORDER BY a.slug, c.component;
END $$;

REVOKE ALL ON FUNCTION turn_latency_report(uuid, timestamptz, timestamptz, text) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION turn_latency_report(uuid, timestamptz, timestamptz, text) TO authenticated, service_role;
