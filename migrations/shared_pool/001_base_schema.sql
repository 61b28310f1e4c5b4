-- SHARED POOL: the plan's Phase 2 tables, every row tagged client_id.
-- Isolation is enforced by the database (002): RLS on the JWT's client_id claim, composite foreign
-- keys that keep every reference inside one client, the sidekick limit and the write fence.
-- Every parent has UNIQUE (client_id, id) and every child references (client_id, <parent>_id), so
-- even a row that RLS accepts cannot point at another client's row (and a failed reference says
-- nothing about whether the other client's row exists).

CREATE EXTENSION IF NOT EXISTS vector;

CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;

-- Per-client facts the pool itself enforces: the sidekick limit and the write fence of a tier move.
-- Written by provisioning and the mover (service role); a tenant may read its own row only.
CREATE TABLE IF NOT EXISTS pool_clients (
  client_id uuid PRIMARY KEY,
  max_sidekicks integer CHECK (max_sidekicks IS NULL OR max_sidekicks >= 0), -- NULL: unlimited
  -- open: normal; fenced: a tier move is copying the client's rows; moved: the client lives elsewhere.
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
  -- The plan's ON DELETE SET NULL, for agent_id only (client_id is NOT NULL). PostgreSQL 15+.
  CONSTRAINT transcripts_agent FOREIGN KEY (client_id, agent_id)
    REFERENCES agents (client_id, id) ON DELETE SET NULL (agent_id)
);

CREATE TABLE IF NOT EXISTS user_overviews (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  client_id uuid NOT NULL,
  user_id uuid NOT NULL,
  agent_id uuid, -- NULL: the user's overview for every sidekick of the client
  sections jsonb DEFAULT '{}',
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now(),
  -- NULLS NOT DISTINCT (PostgreSQL 15+): at most one agent-less overview per user, as the RPC reads one.
  CONSTRAINT unique_user_overview UNIQUE NULLS NOT DISTINCT (client_id, user_id, agent_id),
  CONSTRAINT overviews_agent FOREIGN KEY (client_id, agent_id)
    REFERENCES agents (client_id, id) ON DELETE CASCADE
);

-- Indexes led by client_id: every tenant query (and every RLS check) filters on it first; they
-- also serve the composite foreign keys (and their cascades). The UNIQUE constraints above already
-- give (client_id, slug), (client_id, id), (client_id, agent_id, document_id) and
-- (client_id, user_id, agent_id). No approximate vector index: retrieval computes exact distances
-- over one client's rows (003), which an index shared by all clients could not give.
CREATE INDEX IF NOT EXISTS idx_documents_client_status ON documents (client_id, status);
CREATE INDEX IF NOT EXISTS idx_chunks_client_document ON document_chunks (client_id, document_id);
CREATE INDEX IF NOT EXISTS idx_agent_documents_client_document ON agent_documents (client_id, document_id);
CREATE INDEX IF NOT EXISTS idx_conversations_agent ON conversations (client_id, agent_id);
CREATE INDEX IF NOT EXISTS idx_conversations_user ON conversations (client_id, user_id);
CREATE INDEX IF NOT EXISTS idx_transcripts_conversation ON conversation_transcripts (client_id, conversation_id);
CREATE INDEX IF NOT EXISTS idx_transcripts_agent_user ON conversation_transcripts (client_id, agent_id, user_id);
CREATE INDEX IF NOT EXISTS idx_overviews_agent ON user_overviews (client_id, agent_id);
-- (client_id, id) where no constraint gives it: a tier move walks one client's rows in id order
-- in keyset pages, and each page must be an index range, not a scan of every client's rows.
CREATE INDEX IF NOT EXISTS idx_chunks_client_id ON document_chunks (client_id, id);
CREATE INDEX IF NOT EXISTS idx_agent_documents_client_id ON agent_documents (client_id, id);
CREATE INDEX IF NOT EXISTS idx_transcripts_client_id ON conversation_transcripts (client_id, id);
CREATE INDEX IF NOT EXISTS idx_overviews_client_id ON user_overviews (client_id, id);

-- updated_at on every table that has one. (Trigger names set the firing order, alphabetical:
-- tg10 write fence, tg20 sidekick limit (002), tg90 updated_at.) pool_clients only on a real
-- change: the sidekick-limit trigger locks its row with a no-op UPDATE.
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['agents', 'documents', 'conversations', 'user_overviews', 'pool_clients'] LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', t || '_updated_at', t); -- earlier name
    EXECUTE format('DROP TRIGGER IF EXISTS tg90_updated_at ON %I', t);
    EXECUTE format(
      'CREATE TRIGGER tg90_updated_at BEFORE UPDATE ON %I FOR EACH ROW %s EXECUTE FUNCTION set_updated_at()',
      t, CASE WHEN t = 'pool_clients' THEN 'WHEN (OLD.* IS DISTINCT FROM NEW.*)' ELSE '' END);
  END LOOP;
END $$;

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime')
     AND NOT EXISTS (
       SELECT 1 FROM pg_publication_tables
        WHERE pubname = 'supabase_realtime' AND schemaname = 'public' AND tablename = 'conversation_transcripts'
     ) THEN
    ALTER PUBLICATION supabase_realtime ADD TABLE conversation_transcripts;
  END IF;
END $$;
