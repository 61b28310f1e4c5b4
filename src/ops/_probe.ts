import { startStack } from '../stack/stack.js';
import { createSupabase } from '../tenancy/supabase.js';

const serverUrl = process.env.STACK_POSTGRES_URL || undefined;
let t = performance.now();
const lap = (what: string) => {
  const n = performance.now();
  console.log(what, Math.round(n - t), 'ms');
  t = n;
};
const stack = await startStack({ seed: true, serverUrl });
lap('stack');
const target = await stack.addDedicated();
lap('addDedicated');
const A = stack.demo!.adventurers[0]!;
const docId = 'a1a1a1a1-0000-4000-8000-d00000000000';
await stack.pool.sql.query(
  `INSERT INTO document_chunks (client_id, document_id, chunk_index, content, embeddings)
   SELECT $1, $2, g, 'chunk ' || g,
     (SELECT array_agg(x)::vector(1024) FROM (SELECT ((random() - 0.5) * power(10, random() * 6 - 3))::real AS x FROM generate_series(1, 1024) WHERE g > 0) s)
   FROM generate_series(1, 2600) g`,
  [A.clientId, docId],
);
lap('seed 2600');
const pool = createSupabase(stack.pool.url, stack.pool.serviceRoleKey);
const ded = createSupabase(target.url, target.serviceRoleKey);
let last = '00000000-0000-0000-0000-000000000000';
let n = 0;
// copy documents first
const { data: docs } = await pool.from('documents').select('*').eq('client_id', A.clientId);
await ded.from('documents').upsert(
  docs!.map(({ client_id, ...r }) => r),
  { onConflict: 'id', ignoreDuplicates: true },
);
for (const ps of [500]) {
  for (;;) {
    const t0 = performance.now();
    const { data, error } = await pool
      .from('document_chunks')
      .select('*')
      .eq('client_id', A.clientId)
      .gt('id', last)
      .order('id')
      .limit(ps);
    if (error) throw error;
    const t1 = performance.now();
    if (!data.length) break;
    const rows = data.map(({ client_id, ...r }) => r);
    const w = await ded.from('document_chunks').upsert(rows, { onConflict: 'id', ignoreDuplicates: true });
    if (w.error) throw w.error;
    const t2 = performance.now();
    n += data.length;
    last = data.at(-1).id;
    console.log('page', data.length, 'read', Math.round(t1 - t0), 'write', Math.round(t2 - t1));
  }
}
lap(`copied ${n}`);
for (;;) {
  const { data } = await ded
    .from('document_chunks')
    .select('*')
    .gt('id', '00000000-0000-0000-0000-000000000000')
    .order('id')
    .limit(1000);
  break;
}
lap('read 1000 from target');
await stack.stop();
