/**
 * Imported first by every entry point (the worker, `sidekick`, `npm run stack`): on an older Node
 * the dependencies fail deep inside with errors that name nothing (undici, supabase-js), so say
 * what is needed before any of them loads. ES modules evaluate imports in order: this runs first.
 */
const NEEDED = 24;
const major = Number(process.versions.node.split('.')[0]);
if (major < NEEDED) {
  process.stderr.write(
    `this needs Node.js ${NEEDED} or later, and this is ${process.version}: run it through npm (\`npm start\`, \`npm run sidekick --\`: the \`node\` devDependency brings Node ${NEEDED}), use node_modules/.bin/node, or install Node ${NEEDED}\n`,
  );
  process.exit(2);
}
