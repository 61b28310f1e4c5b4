-- Usage and limits per client, across every worker: a lease per session (what the concurrency cap
-- counts), and the usage ledger (one row per session: what a bill reads, and what the monthly
-- minutes quota sums). Service role only, like every platform table.
--
-- A session's lease is taken by requestFunc before the room is joined ('pending', short-lived: a
-- job the dispatcher gives to another worker never starts here, and its slot frees itself), made
-- 'live' by the job when it starts, renewed while the session lives (each renewal carries the
-- usage so far), marked 'ended' when the session ends, and moved into the ledger when the job
-- finishes. A lease that is not renewed expires: its worker died. Whoever notices (any worker's
-- sweep, or the next acquire for that client) moves it into the ledger from its last renewal.
-- Every move is keyed by job id (ON CONFLICT DO NOTHING): a session's ledger row is written once.

CREATE TABLE IF NOT EXISTS session_leases (
  job_id text PRIMARY KEY CHECK (length(job_id) BETWEEN 1 AND 200),
  client_id uuid NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
  -- The process that renews it: requestFunc's worker while pending, the job's process once live.
  holder text NOT NULL CHECK (length(holder) BETWEEN 1 AND 200),
  status text NOT NULL CHECK (status IN ('pending', 'live', 'ended')),
  tier client_tier NOT NULL,
  agent_slug text NOT NULL,
  agent_id uuid,
  conversation_id uuid,
  acquired_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  ended_at timestamptz,
  renewed_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  -- The usage so far, keyed by the ledger's column names (what the sweep writes if the job dies).
  usage jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(usage) = 'object'),
  CONSTRAINT session_leases_started CHECK ((status = 'pending') = (started_at IS NULL)),
  CONSTRAINT session_leases_ended CHECK ((status = 'ended') = (ended_at IS NOT NULL))
);

-- What acquire counts under the client's lock, and what the sweep scans.
CREATE INDEX IF NOT EXISTS idx_session_leases_client ON session_leases (client_id, status);
CREATE INDEX IF NOT EXISTS idx_session_leases_expires ON session_leases (expires_at);

ALTER TABLE session_leases ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON session_leases FROM PUBLIC, anon, authenticated;
GRANT ALL ON session_leases TO service_role;

-- The usage ledger. No foreign key to clients: it is the bill, and outlives a deleted client.
CREATE TABLE IF NOT EXISTS session_usage (
  job_id text PRIMARY KEY,
  client_id uuid NOT NULL,
  tier client_tier NOT NULL,
  agent_slug text NOT NULL,
  agent_id uuid,
  conversation_id uuid,
  started_at timestamptz NOT NULL,
  ended_at timestamptz NOT NULL,
  duration_seconds numeric(12, 3) GENERATED ALWAYS AS (round(extract(epoch FROM ended_at - started_at), 3)) STORED,
  audio_in_seconds numeric(12, 3) NOT NULL DEFAULT 0,
  audio_out_seconds numeric(12, 3) NOT NULL DEFAULT 0,
  llm_prompt_tokens bigint NOT NULL DEFAULT 0,
  llm_prompt_cached_tokens bigint NOT NULL DEFAULT 0,
  llm_completion_tokens bigint NOT NULL DEFAULT 0,
  tts_characters bigint NOT NULL DEFAULT 0,
  tts_audio_seconds numeric(12, 3) NOT NULL DEFAULT 0,
  stt_audio_seconds numeric(12, 3) NOT NULL DEFAULT 0,
  embedding_tokens bigint NOT NULL DEFAULT 0,
  tool_calls integer NOT NULL DEFAULT 0,
  user_turns integer NOT NULL DEFAULT 0,
  assistant_turns integer NOT NULL DEFAULT 0,
  -- Per provider and model (agents' usage summaries), for pricing by model.
  models jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(models) = 'array'),
  -- completed: the job wrote it; recovered: the job's process stopped renewing, the row is its last renewal.
  end_reason text NOT NULL CHECK (end_reason IN ('completed', 'recovered')),
  recorded_by text NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT session_usage_order CHECK (ended_at >= started_at)
);

CREATE INDEX IF NOT EXISTS idx_session_usage_client_started ON session_usage (client_id, started_at);
CREATE INDEX IF NOT EXISTS idx_session_usage_started ON session_usage (started_at);

ALTER TABLE session_usage ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON session_usage FROM PUBLIC, anon, authenticated;
GRANT ALL ON session_usage TO service_role;

-- Moves leases into the ledger: the one of p_job_id (its job finished it: 'completed'), or else
-- every expired one (of p_client_id, when given: 'recovered'), at most p_limit. A pending lease
-- (its job never started) just goes. SKIP LOCKED: two sweepers never take the same lease, and a
-- lease being finished is left to its job. Returns the ledger rows written.
CREATE OR REPLACE FUNCTION settle_session_leases(
  p_job_id text, p_client_id uuid, p_recorded_by text, p_limit integer DEFAULT 100)
RETURNS integer
LANGUAGE sql VOLATILE SECURITY INVOKER SET search_path = public, pg_temp AS $$
  WITH gone AS (
    DELETE FROM session_leases l
     WHERE l.job_id IN (
       SELECT s.job_id FROM session_leases s
        WHERE (p_job_id IS NOT NULL AND s.job_id = p_job_id)
           OR (p_job_id IS NULL AND s.expires_at < now() AND (p_client_id IS NULL OR s.client_id = p_client_id))
        ORDER BY s.expires_at
        LIMIT greatest(coalesce(p_limit, 100), 1)
        FOR UPDATE SKIP LOCKED)
    RETURNING l.*
  ), written AS (
    INSERT INTO session_usage (
      job_id, client_id, tier, agent_slug, agent_id, conversation_id, started_at, ended_at,
      audio_in_seconds, audio_out_seconds, llm_prompt_tokens, llm_prompt_cached_tokens,
      llm_completion_tokens, tts_characters, tts_audio_seconds, stt_audio_seconds, embedding_tokens,
      tool_calls, user_turns, assistant_turns, models, end_reason, recorded_by)
    SELECT g.job_id, g.client_id, g.tier, g.agent_slug, g.agent_id, g.conversation_id, g.started_at,
           greatest(g.started_at, coalesce(g.ended_at, g.renewed_at)),
           coalesce((g.usage ->> 'audio_in_seconds')::numeric, 0),
           coalesce((g.usage ->> 'audio_out_seconds')::numeric, 0),
           coalesce((g.usage ->> 'llm_prompt_tokens')::bigint, 0),
           coalesce((g.usage ->> 'llm_prompt_cached_tokens')::bigint, 0),
           coalesce((g.usage ->> 'llm_completion_tokens')::bigint, 0),
           coalesce((g.usage ->> 'tts_characters')::bigint, 0),
           coalesce((g.usage ->> 'tts_audio_seconds')::numeric, 0),
           coalesce((g.usage ->> 'stt_audio_seconds')::numeric, 0),
           coalesce((g.usage ->> 'embedding_tokens')::bigint, 0),
           coalesce((g.usage ->> 'tool_calls')::integer, 0),
           coalesce((g.usage ->> 'user_turns')::integer, 0),
           coalesce((g.usage ->> 'assistant_turns')::integer, 0),
           CASE WHEN jsonb_typeof(g.usage -> 'models') = 'array' THEN g.usage -> 'models' ELSE '[]' END,
           CASE WHEN p_job_id IS NOT NULL THEN 'completed' ELSE 'recovered' END,
           coalesce(p_recorded_by, 'unknown')
      FROM gone g
     WHERE g.started_at IS NOT NULL
    ON CONFLICT (job_id) DO NOTHING
    RETURNING 1
  )
  SELECT count(*)::integer FROM written
$$;

-- Takes the session's slot, or refuses naming the limit. Under a lock on the client's row (FOR NO
-- KEY UPDATE: concurrent acquires for one client queue here, nothing else waits), after moving the
-- client's expired leases out: the same job again (redelivered to another worker, or its job
-- starting, p_start) keeps the slot it was granted; a new one is counted: the client's live and
-- pending leases against p_max_concurrent, and the month's minutes (the ledger, plus sessions
-- running now, since the first of the month UTC) against p_max_minutes. NULL limits are
-- unlimited. Returns
-- {granted, started_at, live, used_minutes} or {granted: false, limit, max, live, used_minutes}.
CREATE OR REPLACE FUNCTION acquire_session_lease(
  p_job_id text, p_client_id uuid, p_holder text, p_tier client_tier, p_agent_slug text,
  p_max_concurrent integer, p_max_minutes integer, p_seconds integer, p_start boolean,
  p_agent_id uuid DEFAULT NULL, p_conversation_id uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, pg_temp AS $$
DECLARE
  v_lease session_leases;
  v_live integer;
  v_used numeric;
  v_month timestamptz := date_trunc('month', now(), 'UTC');
BEGIN
  IF p_job_id IS NULL OR p_holder IS NULL OR p_tier IS NULL OR p_agent_slug IS NULL
     OR p_seconds IS NULL OR p_seconds < 1 OR p_start IS NULL THEN
    RAISE EXCEPTION 'acquire_session_lease needs p_job_id, p_holder, p_tier, p_agent_slug, p_start and p_seconds >= 1'
      USING ERRCODE = '22023';
  END IF;
  PERFORM 1 FROM clients WHERE id = p_client_id FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'client % does not exist', p_client_id USING ERRCODE = 'P0002';
  END IF;
  PERFORM settle_session_leases(NULL, p_client_id, p_holder, 1000);

  SELECT * INTO v_lease FROM session_leases WHERE job_id = p_job_id FOR UPDATE;
  IF FOUND THEN
    IF v_lease.client_id <> p_client_id THEN
      RAISE EXCEPTION 'job % holds a lease of another client', p_job_id USING ERRCODE = '23505';
    END IF;
  ELSE
    SELECT count(*)::integer INTO v_live FROM session_leases
     WHERE client_id = p_client_id AND status <> 'ended';
    IF p_max_concurrent IS NOT NULL AND v_live >= p_max_concurrent THEN
      RETURN jsonb_build_object('granted', false, 'limit', 'max_concurrent_sessions',
                                'max', p_max_concurrent, 'live', v_live);
    END IF;
    IF p_max_minutes IS NOT NULL THEN
      SELECT coalesce(sum(u.duration_seconds), 0) INTO v_used
        FROM session_usage u WHERE u.client_id = p_client_id AND u.started_at >= v_month;
      v_used := v_used + coalesce((
        SELECT sum(extract(epoch FROM coalesce(l.ended_at, now()) - l.started_at))
          FROM session_leases l
         WHERE l.client_id = p_client_id AND l.started_at >= v_month), 0);
      IF v_used / 60 >= p_max_minutes THEN
        RETURN jsonb_build_object('granted', false, 'limit', 'max_session_minutes',
                                  'max', p_max_minutes, 'used_minutes', round(v_used / 60, 1));
      END IF;
    END IF;
  END IF;

  INSERT INTO session_leases AS l (job_id, client_id, holder, status, tier, agent_slug, agent_id,
                                   conversation_id, started_at, expires_at)
  VALUES (p_job_id, p_client_id, p_holder, CASE WHEN p_start THEN 'live' ELSE 'pending' END, p_tier,
          p_agent_slug, p_agent_id, p_conversation_id, CASE WHEN p_start THEN now() END,
          now() + make_interval(secs => p_seconds))
  ON CONFLICT (job_id) DO UPDATE
     SET holder = excluded.holder,
         status = CASE WHEN p_start AND l.status = 'pending' THEN 'live' ELSE l.status END,
         started_at = CASE WHEN p_start THEN coalesce(l.started_at, now()) ELSE l.started_at END,
         agent_id = coalesce(excluded.agent_id, l.agent_id),
         conversation_id = coalesce(excluded.conversation_id, l.conversation_id),
         renewed_at = now(),
         expires_at = excluded.expires_at
  RETURNING * INTO v_lease;
  SELECT count(*)::integer INTO v_live FROM session_leases WHERE client_id = p_client_id AND status <> 'ended';
  RETURN jsonb_build_object('granted', true, 'status', v_lease.status, 'started_at', v_lease.started_at,
                            'live', v_live);
END $$;

-- The job's renewal: p_seconds more, with the usage so far; p_ended marks the session ended (its
-- slot is free from then on; its ledger row follows when the job finishes, or from the sweep).
-- false: the lease is not the caller's any more (it expired and was moved to the ledger).
CREATE OR REPLACE FUNCTION renew_session_lease(
  p_job_id text, p_holder text, p_seconds integer, p_usage jsonb, p_ended boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, pg_temp AS $$
BEGIN
  IF p_seconds IS NULL OR p_seconds < 1 OR jsonb_typeof(p_usage) IS DISTINCT FROM 'object' THEN
    RAISE EXCEPTION 'renew_session_lease needs p_seconds >= 1 and p_usage a JSON object' USING ERRCODE = '22023';
  END IF;
  UPDATE session_leases l
     SET usage = p_usage, renewed_at = now(), expires_at = now() + make_interval(secs => p_seconds),
         status = CASE WHEN coalesce(p_ended, false) THEN 'ended' ELSE l.status END,
         ended_at = CASE WHEN coalesce(p_ended, false) THEN coalesce(l.ended_at, now()) ELSE l.ended_at END
   WHERE l.job_id = p_job_id AND l.holder = p_holder AND l.status <> 'pending';
  RETURN FOUND;
END $$;

-- The job's end: its final usage, then its lease into the ledger ('completed'). true: this call
-- wrote the row; false: the row was written already (a sweep recovered it, or an earlier call).
CREATE OR REPLACE FUNCTION finish_session_lease(p_job_id text, p_holder text, p_usage jsonb)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, pg_temp AS $$
BEGIN
  IF jsonb_typeof(p_usage) IS DISTINCT FROM 'object' THEN
    RAISE EXCEPTION 'finish_session_lease needs p_usage a JSON object' USING ERRCODE = '22023';
  END IF;
  UPDATE session_leases l
     SET usage = p_usage, renewed_at = now(), status = 'ended', ended_at = coalesce(l.ended_at, now())
   WHERE l.job_id = p_job_id AND l.holder = p_holder AND l.status <> 'pending';
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  RETURN settle_session_leases(p_job_id, NULL, p_holder, 1) = 1;
END $$;

-- Reports. Per sidekick of one client, the sessions that started in [p_from, p_to).
CREATE OR REPLACE FUNCTION usage_report(p_client_id uuid, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (
  agent_slug text, sessions bigint, minutes numeric, audio_in_minutes numeric, audio_out_minutes numeric,
  llm_prompt_tokens numeric, llm_completion_tokens numeric, tts_characters numeric,
  stt_minutes numeric, embedding_tokens numeric, tool_calls numeric, recovered bigint)
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = public, pg_temp AS $$
  SELECT u.agent_slug, count(*), round(sum(u.duration_seconds) / 60, 2),
         round(sum(u.audio_in_seconds) / 60, 2), round(sum(u.audio_out_seconds) / 60, 2),
         sum(u.llm_prompt_tokens), sum(u.llm_completion_tokens), sum(u.tts_characters),
         round(sum(u.stt_audio_seconds) / 60, 2), sum(u.embedding_tokens), sum(u.tool_calls)::numeric,
         count(*) FILTER (WHERE u.end_reason = 'recovered')
    FROM session_usage u
   WHERE u.client_id = p_client_id AND u.started_at >= p_from AND u.started_at < p_to
   GROUP BY u.agent_slug
   ORDER BY u.agent_slug
$$;

-- Across clients, the p_limit largest by p_order (minutes, llm_tokens, tts_characters, stt_minutes,
-- embedding_tokens or sessions), for the sessions that started in [p_from, p_to).
CREATE OR REPLACE FUNCTION usage_top(p_from timestamptz, p_to timestamptz, p_order text, p_limit integer)
RETURNS TABLE (
  client_id uuid, name text, tier text, sessions bigint, minutes numeric, llm_tokens numeric,
  tts_characters numeric, stt_minutes numeric, embedding_tokens numeric, tool_calls numeric)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = public, pg_temp AS $$
BEGIN
  IF p_order IS NULL OR p_order NOT IN ('minutes', 'llm_tokens', 'tts_characters', 'stt_minutes', 'embedding_tokens', 'sessions') THEN
    RAISE EXCEPTION 'p_order must be minutes, llm_tokens, tts_characters, stt_minutes, embedding_tokens or sessions, got %', p_order
      USING ERRCODE = '22023';
  END IF;
  RETURN QUERY
  WITH per_client AS (
    SELECT u.client_id AS id, count(*) AS sessions, round(sum(u.duration_seconds) / 60, 2) AS minutes,
           sum(u.llm_prompt_tokens + u.llm_completion_tokens) AS llm_tokens,
           sum(u.tts_characters) AS tts_characters, round(sum(u.stt_audio_seconds) / 60, 2) AS stt_minutes,
           sum(u.embedding_tokens) AS embedding_tokens, sum(u.tool_calls)::numeric AS tool_calls,
           -- The tier of the client's latest session: a client deleted since still shows.
           (array_agg(u.tier::text ORDER BY u.started_at DESC))[1] AS tier
      FROM session_usage u
     WHERE u.started_at >= p_from AND u.started_at < p_to
     GROUP BY u.client_id
  )
  SELECT p.id, c.name, p.tier, p.sessions, p.minutes, p.llm_tokens, p.tts_characters, p.stt_minutes,
         p.embedding_tokens, p.tool_calls
    FROM per_client p LEFT JOIN clients c ON c.id = p.id
   ORDER BY CASE p_order
              WHEN 'minutes' THEN p.minutes
              WHEN 'llm_tokens' THEN p.llm_tokens
              WHEN 'tts_characters' THEN p.tts_characters
              WHEN 'stt_minutes' THEN p.stt_minutes
              WHEN 'embedding_tokens' THEN p.embedding_tokens
              ELSE p.sessions END DESC NULLS LAST,
            p.id
   LIMIT greatest(coalesce(p_limit, 20), 1);
END $$;

-- The durable work queue's depth by kind and status: the outbox gauge of /metrics.
CREATE OR REPLACE FUNCTION work_queue_depth()
RETURNS TABLE (kind text, status text, items bigint)
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = public, pg_temp AS $$
  SELECT w.kind, w.status, count(*) FROM work_items w
   WHERE w.status IN ('pending', 'running') GROUP BY w.kind, w.status
$$;

DO $$
DECLARE
  f text;
BEGIN
  FOREACH f IN ARRAY ARRAY[
    'settle_session_leases(text, uuid, text, integer)',
    'acquire_session_lease(text, uuid, text, client_tier, text, integer, integer, integer, boolean, uuid, uuid)',
    'renew_session_lease(text, text, integer, jsonb, boolean)',
    'finish_session_lease(text, text, jsonb)',
    'usage_report(uuid, timestamptz, timestamptz)',
    'usage_top(timestamptz, timestamptz, text, integer)',
    'work_queue_depth()'
  ] LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon, authenticated', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO service_role', f);
  END LOOP;
END $$;

COMMENT ON TABLE session_leases IS 'A lease per session: what max_concurrent_sessions counts across workers; renewed by the job, expiring when its worker dies';
COMMENT ON TABLE session_usage IS 'The usage ledger: one row per session (written once, by job id), what billing reads and max_session_minutes sums';
