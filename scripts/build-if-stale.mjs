// `npm start`'s prestart: compiles src/ into dist/ only when dist/ is missing or older than what it
// is built from, so a start after the first does not pay for a TypeScript build (4-8 s here).
// Plain JavaScript with no dependencies: it runs before anything is compiled.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** The newest modification time of the files under `dir` (0 when there are none). */
function newest(dir, filter = () => true) {
  let out = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true, recursive: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!e.isFile() || !filter(e.name)) continue;
    out = Math.max(out, statSync(join(e.parentPath, e.name)).mtimeMs);
  }
  return out;
}

const inputs = Math.max(
  newest(join(root, 'src')),
  ...['tsconfig.json', 'tsconfig.build.json', 'package-lock.json'].map(
    (f) => statSync(join(root, f)).mtimeMs,
  ),
);
// tsc writes every output file on each build, so the newest one dates the last build.
const built = newest(join(root, 'dist'), (name) => name.endsWith('.js'));

if (built < inputs) {
  console.error(built === 0 ? '# building dist/' : '# src/ changed since the last build: rebuilding dist/');
  // The project's TypeScript (npm puts node_modules/.bin first on PATH; this works without npm too).
  const tsc = spawnSync(join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.build.json'], {
    cwd: root,
    stdio: 'inherit',
  });
  if (tsc.error) console.error(`# cannot run tsc (${tsc.error.message}): run npm ci first`);
  process.exit(tsc.status ?? 1);
}
