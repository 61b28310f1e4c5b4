/**
 * Ready-made PGlite data directories: the database right after initdb (and, for a project, its
 * migrations), kept as a tarball that a new PGlite instance loads instead of running initdb.
 *
 * Why: PGlite's initdb is a second WebAssembly program whose memory stays in the process after it
 * ran (measured here: about 220 MB more resident per database, and 1-3 s of CPU each), so a
 * process that starts databases this way (the embedded worker, every test stack) pays that for
 * each one. A template is built once, in a short-lived child process, and reused until PGlite,
 * pgvector or the SQL it was made from changes (the file name is a hash of all three).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { stackModule } from './packages.js';
import { type DatabaseKind, MIGRATIONS_DIR, migrationFiles } from './sql.js';

/** Bumped when what a template holds changes in a way the hash below does not see. */
const FORMAT = 1;

/**
 * PGlite's own start parameters plus a smaller buffer cache: its data files already live in memory,
 * so Postgres' default 128 MB of shared buffers mostly duplicates them (about 120 MB more resident
 * per database, measured here), and the local stack's data is small.
 */
export async function pgliteStartParams(): Promise<string[]> {
  const { PGlite } = await stackModule('@electric-sql/pglite');
  return [...PGlite.defaultStartParams, '-c', 'shared_buffers=16MB'];
}

const CACHE_DIR = join(dirname(MIGRATIONS_DIR), 'node_modules', '.cache', 'sidekick-stack');

function packageVersion(name: string): string {
  const require = createRequire(import.meta.url);
  let main: string;
  try {
    main = require.resolve(name);
  } catch {
    return '?';
  }
  // The package root is the folder above the resolved entry that holds its package.json.
  for (let dir = dirname(main); dir !== dirname(dir); dir = dirname(dir)) {
    try {
      const pkg = require(join(dir, 'package.json')) as { name?: string; version?: string };
      if (pkg.name === name) return pkg.version ?? '?';
    } catch {
      // not this folder
    }
  }
  return '?';
}

/** The SQL a template of `schema` is made from: none (just initdb), or the bootstrap and the migrations. */
async function templateSql(schema: DatabaseKind | undefined): Promise<string[]> {
  return schema ? [...(await migrationFiles('local')), ...(await migrationFiles(schema))] : [];
}

const building = new Map<string, Promise<string | undefined>>();

/**
 * The path of the template for `schema` (built now if missing), or undefined when none can be
 * made here (the cache folder is not writable, the build failed): callers then run initdb as before.
 */
export async function pgliteTemplate(schema: DatabaseKind | undefined): Promise<string | undefined> {
  const files = await templateSql(schema);
  const hash = createHash('sha256').update(`format ${FORMAT}\n`);
  for (const pkg of ['@electric-sql/pglite', '@electric-sql/pglite-pgvector']) {
    hash.update(`${pkg}@${packageVersion(pkg)}\n`);
  }
  for (const file of files)
    hash.update(`${file.slice(MIGRATIONS_DIR.length)}\n`).update(await readFile(file));
  const path = join(CACHE_DIR, `pglite-${schema ?? 'empty'}-${hash.digest('hex').slice(0, 16)}.tar.gz`);
  let pending = building.get(path);
  if (!pending) {
    pending = ensureTemplate(path, files);
    building.set(path, pending);
    // A failed build may succeed later (disk space, a killed child): do not remember it.
    void pending.then((p) => p ?? building.delete(path));
  }
  return pending;
}

async function ensureTemplate(path: string, files: string[]): Promise<string | undefined> {
  try {
    await access(path);
    return path;
  } catch {
    // missing: build it
  }
  try {
    await mkdir(CACHE_DIR, { recursive: true });
    await buildInChild(path, files);
  } catch {
    return undefined;
  }
  // Templates of the same kind made from older SQL are of no more use.
  const name = basename(path);
  const prefix = name.slice(0, name.lastIndexOf('-') + 1);
  for (const old of await readdir(CACHE_DIR).catch(() => [] as string[])) {
    if (old.startsWith(prefix) && old !== name && old.endsWith('.tar.gz')) {
      await rm(join(CACHE_DIR, old), { force: true });
    }
  }
  return path;
}

/** Builds in a child process, so that initdb's memory ends with it. */
function buildInChild(path: string, files: string[]): Promise<void> {
  const self = fileURLToPath(import.meta.url);
  // From source (tsx, vitest) the child needs tsx's loader; from dist/ it is plain JavaScript.
  const loader = self.endsWith('.ts') ? ['--import', 'tsx'] : [];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...loader, self, path, ...files], {
      cwd: dirname(MIGRATIONS_DIR),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-2000);
    });
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`building ${path} failed (exit ${code}): ${stderr}`)),
    );
  });
}

/** The child's work: initdb, the SQL files in order, then the data directory as a gzipped tarball. */
async function buildTemplate(path: string, files: string[]): Promise<void> {
  const [{ PGlite }, { vector }] = await Promise.all([
    stackModule('@electric-sql/pglite'),
    stackModule('@electric-sql/pglite-pgvector'),
  ]);
  const db = await PGlite.create({ extensions: { vector }, startParams: await pgliteStartParams() });
  for (const file of files) await db.exec(await readFile(file, 'utf8'));
  const tarball = await db.dumpDataDir('gzip');
  await db.close();
  // Written next to its final name and renamed: processes building the same template at once
  // (parallel test workers) never read half a file.
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, Buffer.from(await tarball.arrayBuffer()));
  await rename(tmp, path);
}

/** Forgets a template that failed to load (a truncated file): the next call builds it again. */
export async function discardTemplate(path: string): Promise<void> {
  building.delete(path);
  await rm(path, { force: true });
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  const [path, ...files] = process.argv.slice(2);
  await buildTemplate(path!, files);
}
