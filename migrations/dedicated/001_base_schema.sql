-- DEDICATED PROJECT (champion, paragon): one client's own Supabase project, so no client_id.
-- Existing champion projects already have this schema; the worker uses it unchanged.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;

CREATE TABLE IF NOT EXISTS agents (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL,
  slug text NOT NULL UNIQUE,
  system_prompt text,
  voice_settings jsonb DEFAULT '{}',
  tools_config jsonb DEFAULT '{}',
  greeting text,
  voice_chat_enabled boolean DEFAULT true,
  text_chat_enabled boolean DEFAULT true,
  video_chat_enabled boolean DEFAULT false,
  supertab_enabled boolean DEFAULT false,
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS documents (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  title text,
  content text,
  source_url text,
  source_type text DEFAULT 'manual',
  status text DEFAULT 'pending',
  metadata jsonb DEFAULT '{}',
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS document_chunks (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
  chunk_index integer NOT NULL,
  content text NOT NULL,
  embeddings vector(1024),
  metadata jsonb DEFAULT '{}',
  created_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS agent_documents (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  agent_id uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
  enabled boolean DEFAULT true,
  access_type text DEFAULT 'full',
  created_at timestamptz DEFAULT now(),
  CONSTRAINT unique_agent_document UNIQUE (agent_id, document_id)
);

CREATE TABLE IF NOT EXISTS conversations (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  agent_id uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  user_id uuid,
  title text,
  metadata jsonb DEFAULT '{}',
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS conversation_transcripts (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
  agent_id uuid REFERENCES agents (id) ON DELETE SET NULL,
  user_id uuid,
  role text NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
  content text,
  turn_id uuid,
  metadata jsonb DEFAULT '{}',
  embeddings vector(1024),
  created_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS user_overviews (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL,
  agent_id uuid REFERENCES agents (id) ON DELETE CASCADE,
  sections jsonb DEFAULT '{}',
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now(),
  CONSTRAINT unique_user_overview UNIQUE (user_id, agent_id)
);

CREATE INDEX IF NOT EXISTS idx_chunks_document ON document_chunks (document_id);
CREATE INDEX IF NOT EXISTS idx_agent_documents_document ON agent_documents (document_id);
CREATE INDEX IF NOT EXISTS idx_conversations_agent_user ON conversations (agent_id, user_id);
CREATE INDEX IF NOT EXISTS idx_transcripts_conversation ON conversation_transcripts (conversation_id);
CREATE INDEX IF NOT EXISTS idx_transcripts_agent_user ON conversation_transcripts (agent_id, user_id);

-- One client may hold 100k+ chunks: an approximate index, built the right way. HNSW (unlike
-- ivfflat) needs no training data, so it is sound to create on an empty table and keeps its recall
-- as rows arrive. The RPCs raise ef_search and use iterative scans so filters still find top-k.
CREATE INDEX IF NOT EXISTS idx_chunks_embeddings_hnsw ON document_chunks USING hnsw (embeddings vector_cosine_ops);
CREATE INDEX IF NOT EXISTS idx_transcripts_embeddings_hnsw
  ON conversation_transcripts USING hnsw (embeddings vector_cosine_ops);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['agents', 'documents', 'conversations', 'user_overviews'] LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', t || '_updated_at', t);
    EXECUTE format(
      'CREATE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION set_updated_at()', t || '_updated_at', t);
  END LOOP;
END $$;

-- The worker reaches a dedicated project with its service-role key; the public API roles get nothing.
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY[
    'agents', 'documents', 'document_chunks', 'agent_documents', 'conversations',
    'conversation_transcripts', 'user_overviews'
  ] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('REVOKE ALL ON %I FROM anon, authenticated', t);
    EXECUTE format('GRANT ALL ON %I TO service_role', t);
  END LOOP;
END $$;

DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM pg_publication_tables WHERE pubname = 'supabase_realtime' AND tablename = 'conversation_transcripts'
  ) AND EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
    ALTER PUBLICATION supabase_realtime ADD TABLE conversation_transcripts;
  END IF;
END $$;
