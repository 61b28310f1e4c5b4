-- SHARED POOL: every row tagged client_id. Isolation is enforced by the database: RLS policies
-- compare client_id with the caller's JWT claim, composite foreign keys keep every reference
-- inside one client, and the service role (BYPASSRLS) is for provisioning and migrations only.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;

-- Per-client facts the pool itself enforces: the sidekick limit and the write fence of a tier move.
CREATE TABLE IF NOT EXISTS pool_clients (
  client_id uuid PRIMARY KEY,
  max_sidekicks integer CHECK (max_sidekicks IS NULL OR max_sidekicks >= 0),
  -- open: normal; fenced: a tier move is copying the client's rows; moved: the client lives elsewhere now.
  write_fence text NOT NULL DEFAULT 'open' CHECK (write_fence IN ('open', 'fenced', 'moved')),
  fenced_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS agents (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  client_id uuid NOT NULL,
  name text NOT NULL,
  slug text NOT NULL,
  system_prompt text,
  voice_settings jsonb DEFAULT '{}',
  tools_config jsonb DEFAULT '{}',
  greeting text,
  voice_chat_enabled boolean DEFAULT true,
  text_chat_enabled boolean DEFAULT true,
  video_chat_enabled boolean DEFAULT false,
  supertab_enabled boolean DEFAULT false,
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now(),
  CONSTRAINT unique_agent_slug_per_client UNIQUE (client_id, slug),
  CONSTRAINT agents_client_id_id UNIQUE (client_id, id)
);

CREATE TABLE IF NOT EXISTS documents (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  client_id uuid NOT NULL,
  title text,
  content text,
  source_url text,
  source_type text DEFAULT 'manual',
  status text DEFAULT 'pending',
  metadata jsonb DEFAULT '{}',
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now(),
  CONSTRAINT documents_client_id_id UNIQUE (client_id, id)
);

CREATE TABLE IF NOT EXISTS document_chunks (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  client_id uuid NOT NULL,
  document_id uuid NOT NULL,
  chunk_index integer NOT NULL,
  content text NOT NULL,
  embeddings vector(1024),
  metadata jsonb DEFAULT '{}',
  created_at timestamptz DEFAULT now(),
  CONSTRAINT chunks_document FOREIGN KEY (client_id, document_id)
    REFERENCES documents (client_id, id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS agent_documents (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  client_id uuid NOT NULL,
  agent_id uuid NOT NULL,
  document_id uuid NOT NULL,
  enabled boolean DEFAULT true,
  access_type text DEFAULT 'full',
  created_at timestamptz DEFAULT now(),
  CONSTRAINT unique_agent_document_per_client UNIQUE (client_id, agent_id, document_id),
  CONSTRAINT agent_documents_agent FOREIGN KEY (client_id, agent_id)
    REFERENCES agents (client_id, id) ON DELETE CASCADE,
  CONSTRAINT agent_documents_document FOREIGN KEY (client_id, document_id)
    REFERENCES documents (client_id, id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS conversations (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  client_id uuid NOT NULL,
  agent_id uuid NOT NULL,
  user_id uuid,
  title text,
  metadata jsonb DEFAULT '{}',
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now(),
  CONSTRAINT conversations_client_id_id UNIQUE (client_id, id),
  CONSTRAINT conversations_agent FOREIGN KEY (client_id, agent_id)
    REFERENCES agents (client_id, id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS conversation_transcripts (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  client_id uuid NOT NULL,
  conversation_id uuid NOT NULL,
  agent_id uuid,
  user_id uuid,
  role text NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
  content text,
  turn_id uuid,
  metadata jsonb DEFAULT '{}',
  embeddings vector(1024),
  created_at timestamptz DEFAULT now(),
  CONSTRAINT transcripts_conversation FOREIGN KEY (client_id, conversation_id)
    REFERENCES conversations (client_id, id) ON DELETE CASCADE,
  CONSTRAINT transcripts_agent FOREIGN KEY (client_id, agent_id)
    REFERENCES agents (client_id, id) ON DELETE SET NULL (agent_id)
);

CREATE TABLE IF NOT EXISTS user_overviews (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  client_id uuid NOT NULL,
  user_id uuid NOT NULL,
  agent_id uuid,
  sections jsonb DEFAULT '{}',
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now(),
  CONSTRAINT unique_user_overview UNIQUE (client_id, user_id, agent_id),
  CONSTRAINT overviews_agent FOREIGN KEY (client_id, agent_id)
    REFERENCES agents (client_id, id) ON DELETE CASCADE
);

-- Indexes led by client_id: every tenant query filters on it first. No approximate vector index:
-- retrieval computes exact distances over one client's rows (see match_documents).
CREATE INDEX IF NOT EXISTS idx_agents_client_id ON agents (client_id);
CREATE INDEX IF NOT EXISTS idx_documents_client_status ON documents (client_id, status);
CREATE INDEX IF NOT EXISTS idx_chunks_client_document ON document_chunks (client_id, document_id);
CREATE INDEX IF NOT EXISTS idx_agent_documents_client_document ON agent_documents (client_id, document_id);
CREATE INDEX IF NOT EXISTS idx_conversations_agent ON conversations (client_id, agent_id);
CREATE INDEX IF NOT EXISTS idx_conversations_user ON conversations (client_id, user_id);
CREATE INDEX IF NOT EXISTS idx_transcripts_conversation ON conversation_transcripts (client_id, conversation_id);
CREATE INDEX IF NOT EXISTS idx_transcripts_agent_user ON conversation_transcripts (client_id, agent_id, user_id);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['pool_clients', 'agents', 'documents', 'conversations', 'user_overviews'] LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', t || '_updated_at', t);
    EXECUTE format(
      'CREATE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION set_updated_at()', t || '_updated_at', t);
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
