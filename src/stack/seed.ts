import { type Embedder, vectorLiteral } from '../context/embeddings.js';
import { HashingEmbedder } from '../context/hashing-embedder.js';
import type { LocalProject } from './project.js';
import type { SqlExecutor } from './sql.js';

/** What `--seed` registered; ids are fixed so that README examples and dispatch commands stay valid. */
export interface DemoClient {
  clientId: string;
  name: string;
  tier: 'adventurer' | 'champion';
  agentSlug: string;
  agentId: string;
  conversationId: string;
}

export interface DemoClients {
  adventurers: DemoClient[];
  champion: DemoClient;
  /** The end user who talked to every demo sidekick before. */
  userId: string;
}

export const DEMO_USER_ID = '0d0d0d0d-0000-4000-8000-00000000000a';

interface DemoSpec {
  client: DemoClient;
  prompt: string;
  greeting: string;
  voiceSettings: Record<string, unknown>;
  video: boolean;
  documents: Array<{ title: string; paragraphs: string[] }>;
  /** An earlier conversation of the demo user, in turn order. */
  history: Array<['user' | 'assistant', string]>;
  overview: Record<string, unknown>;
}

const SPECS: DemoSpec[] = [
  {
    client: {
      clientId: 'a1a1a1a1-0000-4000-8000-000000000001',
      name: 'Acme Bikes',
      tier: 'adventurer',
      agentSlug: 'bike-guide',
      agentId: 'a1a1a1a1-0000-4000-8000-0000000000a1',
      conversationId: 'a1a1a1a1-0000-4000-8000-0000000000c1',
    },
    prompt: 'You are the Acme Bikes service guide. Answer briefly and practically.',
    greeting: 'Hi, I am the Acme Bikes guide. What is your bike up to?',
    voiceSettings: { voice: 'verse' },
    video: false,
    documents: [
      {
        title: 'Tyre pressure guide',
        paragraphs: [
          'Road bike tyres run at 80 to 100 psi; gravel tyres at 35 to 50 psi; mountain bike tyres at 22 to 30 psi.',
          'Check tyre pressure weekly with a floor pump gauge, because tubes lose air slowly even without a puncture.',
        ],
      },
      {
        title: 'Chain care',
        paragraphs: [
          'Clean and lubricate the chain every 300 kilometres, or after every wet ride.',
          'Replace the chain when a chain checker shows 0.5 percent stretch, to protect the cassette.',
        ],
      },
    ],
    history: [
      ['user', 'My bike is a 2019 Trek Domane and the rear brake squeaks.'],
      ['assistant', 'A squeaking rim brake usually needs the pads toed in or cleaned.'],
    ],
    overview: { identity: 'Road cyclist', bike: '2019 Trek Domane', goals: 'Ride a century this summer' },
  },
  {
    client: {
      clientId: 'b2b2b2b2-0000-4000-8000-000000000002',
      name: 'Bloom Garden Centre',
      tier: 'adventurer',
      agentSlug: 'garden-helper',
      agentId: 'b2b2b2b2-0000-4000-8000-0000000000a2',
      conversationId: 'b2b2b2b2-0000-4000-8000-0000000000c2',
    },
    prompt: 'You are the Bloom Garden Centre plant helper. Be warm and concrete.',
    greeting: 'Hello from Bloom! Which plant shall we talk about?',
    voiceSettings: { voice: 'sage' },
    video: false,
    documents: [
      {
        title: 'Watering houseplants',
        paragraphs: [
          'Water a monstera when the top five centimetres of soil are dry, roughly once a week in summer.',
          'Succulents and cacti need water only every two to three weeks; overwatering rots their roots.',
        ],
      },
      {
        title: 'Tomato growing',
        paragraphs: [
          'Plant tomatoes outside after the last frost, in full sun, sixty centimetres apart.',
          'Pinch out side shoots of cordon tomatoes and feed weekly with a high potash fertiliser once flowers appear.',
        ],
      },
    ],
    history: [
      ['user', 'I keep my fiddle leaf fig in the north facing bathroom window.'],
      ['assistant', 'Fiddle leaf figs like bright light, so a brighter spot may help.'],
    ],
    overview: {
      identity: 'Balcony gardener',
      plants: 'fiddle leaf fig, tomatoes',
      constraints: 'north facing flat',
    },
  },
  {
    client: {
      clientId: 'c3c3c3c3-0000-4000-8000-000000000003',
      name: 'Nimbus Travel',
      tier: 'champion',
      agentSlug: 'trip-planner',
      agentId: 'c3c3c3c3-0000-4000-8000-0000000000a3',
      conversationId: 'c3c3c3c3-0000-4000-8000-0000000000c3',
    },
    prompt: 'You are the Nimbus Travel trip planner. Plan trips within company policy.',
    greeting: 'Welcome to Nimbus Travel. Where would you like to go?',
    voiceSettings: { voice: 'nova', custom_voice_id: 'nimbus-brand-voice' },
    video: true,
    documents: [
      {
        title: 'Travel policy',
        paragraphs: [
          'Economy class is booked for flights under six hours; business class is allowed for longer flights.',
          'Hotels are reimbursed up to 180 euros per night in Europe and 250 dollars per night in North America.',
        ],
      },
      {
        title: 'Visa checklist',
        paragraphs: [
          'Travellers to the United States under the visa waiver programme must hold an approved ESTA before departure.',
          'A passport must be valid for at least six months beyond the planned return date for most Asian countries.',
        ],
      },
    ],
    history: [
      ['user', 'I am flying to Tokyo in March for the robotics conference.'],
      ['assistant', 'Noted: Tokyo in March. Your passport must be valid six months past your return.'],
    ],
    overview: {
      identity: 'Engineer who travels for conferences',
      preferences: 'aisle seat, vegetarian meals',
    },
  },
];

interface Seeder {
  sql: SqlExecutor;
  /** client_id column value in the shared pool; undefined in a dedicated project. */
  clientId: string | undefined;
}

async function insert(db: Seeder, table: string, row: Record<string, unknown>): Promise<void> {
  const full = db.clientId ? { client_id: db.clientId, ...row } : row;
  const cols = Object.keys(full);
  await db.sql.query(
    `INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')})`,
    Object.values(full).map((v) =>
      v !== null && typeof v === 'object' && !Array.isArray(v) ? JSON.stringify(v) : v,
    ),
  );
}

async function seedClientData(db: Seeder, spec: DemoSpec, embedder: Embedder): Promise<void> {
  const c = spec.client;
  await insert(db, 'agents', {
    id: c.agentId,
    name: `${c.name} sidekick`,
    slug: c.agentSlug,
    system_prompt: spec.prompt,
    greeting: spec.greeting,
    voice_settings: spec.voiceSettings,
    voice_chat_enabled: true,
    text_chat_enabled: true,
    video_chat_enabled: spec.video,
  });
  for (const [i, doc] of spec.documents.entries()) {
    const documentId = `${c.clientId.slice(0, 24)}d0000000000${i}`;
    await insert(db, 'documents', {
      id: documentId,
      title: doc.title,
      content: doc.paragraphs.join('\n\n'),
      source_type: 'manual',
      status: 'ready',
      // What the chunks are embedded with: sessions compare it with the worker's embedder.
      metadata: { embedding_model: embedder.model, embedding_dimensions: embedder.dimensions },
    });
    await insert(db, 'agent_documents', { agent_id: c.agentId, document_id: documentId });
    const vectors = await embedder.embed(doc.paragraphs);
    for (const [j, text] of doc.paragraphs.entries()) {
      await insert(db, 'document_chunks', {
        document_id: documentId,
        chunk_index: j,
        content: text,
        embeddings: vectorLiteral(vectors[j]!),
      });
    }
  }
  await insert(db, 'conversations', {
    id: c.conversationId,
    agent_id: c.agentId,
    user_id: DEMO_USER_ID,
    title: 'Earlier conversation',
  });
  const vectors = await embedder.embed(spec.history.map(([, text]) => text));
  for (const [i, [role, content]] of spec.history.entries()) {
    await insert(db, 'conversation_transcripts', {
      conversation_id: c.conversationId,
      agent_id: c.agentId,
      user_id: DEMO_USER_ID,
      role,
      content,
      turn_id: `${c.clientId.slice(0, 24)}e0000000000${i}`,
      embeddings: vectorLiteral(vectors[i]!),
      created_at: new Date(Date.now() - 86_400_000 + i * 1000).toISOString(),
    });
  }
  await insert(db, 'user_overviews', { user_id: DEMO_USER_ID, agent_id: c.agentId, sections: spec.overview });
}

/** The demo clients (fixed ids: the README's examples and dispatch commands use them). */
export function demoClients(): DemoClients {
  const clients = SPECS.map((s) => s.client);
  return {
    adventurers: clients.filter((c) => c.tier === 'adventurer'),
    champion: clients.find((c) => c.tier === 'champion')!,
    userId: DEMO_USER_ID,
  };
}

/**
 * The demo clients' platform records (clients rows, pointing at the pool and the dedicated
 * project): only URLs and keys of those projects are needed, so they may start later.
 */
export async function registerDemoClients(args: {
  platform: SqlExecutor;
  dedicated: Pick<LocalProject, 'url' | 'anonKey' | 'serviceRoleKey'>;
  poolId: string;
}): Promise<void> {
  for (const spec of SPECS) {
    const c = spec.client;
    if (c.tier === 'adventurer') {
      await args.platform.query(
        `INSERT INTO clients (id, name, tier, hosting_type, max_sidekicks, shared_pool_id, provisioning_status, provisioning_completed_at)
         VALUES ($1, $2, 'adventurer', 'shared', 1, $3, 'ready', now())`,
        [c.clientId, c.name, args.poolId],
      );
    } else {
      await args.platform.query(
        `INSERT INTO clients (id, name, tier, hosting_type, max_sidekicks, supabase_url, supabase_anon_key,
           supabase_service_role_key, supabase_project_ref, provisioning_status, provisioning_completed_at)
         VALUES ($1, $2, 'champion', 'dedicated', NULL, $3, $4, $5, $6, 'ready', now())`,
        [
          c.clientId,
          c.name,
          args.dedicated.url,
          args.dedicated.anonKey,
          args.dedicated.serviceRoleKey,
          'local-dedicated',
        ],
      );
    }
  }
}

/** The demo clients' sidekicks, documents and history in one project: the pool or the dedicated one. */
export async function seedDemoData(
  kind: 'shared_pool' | 'dedicated',
  sql: SqlExecutor,
  embedder: Embedder = new HashingEmbedder({ dimensions: 1024 }),
): Promise<void> {
  for (const spec of SPECS) {
    const c = spec.client;
    if (kind === 'shared_pool' && c.tier === 'adventurer') {
      await sql.query('INSERT INTO pool_clients (client_id, max_sidekicks) VALUES ($1, 1)', [c.clientId]);
      await seedClientData({ sql, clientId: c.clientId }, spec, embedder);
    } else if (kind === 'dedicated' && c.tier === 'champion') {
      await seedClientData({ sql, clientId: undefined }, spec, embedder);
      // The project's own record of its one client (as provisioning writes it): no other client
      // can be pointed at this project, whatever URL names it.
      await sql.query('SELECT claim_project_owner($1::uuid, true)', [c.clientId]);
    }
  }
}
