// Builds assets/handlers.zip: the Lambda handler bundle (assets/handlers/index/, written by esbuild from
// src/handlers/index.ts) as the zip Lambda deploys, in the same reproducible form as compile-code.zip (sorted
// entries, fixed timestamp, stored).
//
// A file asset, not a directory: AssetStaging stages a file with one copy, and the library gives it a content hash
// (src/private/staged-asset.ts), where a directory is walked, fingerprinted and copied through exclude patterns.
//
// Usage: node build-tools/handlers-zip.js [output]   (default: assets/handlers.zip; run after the bundle)
const fs = require('fs');
const path = require('path');
const { zip } = require('./compile-code-zip');

const BUNDLE_DIR = path.join(__dirname, '..', 'assets', 'handlers', 'index');
const DEFAULT_OUTPUT = path.join(__dirname, '..', 'assets', 'handlers.zip');

function build(output = DEFAULT_OUTPUT) {
  const names = fs.readdirSync(BUNDLE_DIR).sort();
  // The zip is flat: a subdirectory (esbuild's output has none today) would be left out, and the handler broken.
  const dirs = names.filter(name => !fs.statSync(path.join(BUNDLE_DIR, name)).isFile());
  if (dirs.length > 0) throw new Error(`${BUNDLE_DIR} has ${dirs.join(', ')}, which is not a file: handlers-zip writes a flat zip; extend it first.`);
  if (!names.includes('index.js')) throw new Error(`${BUNDLE_DIR} has no index.js: run the bundle first.`);
  const files = names.map(name => ({ name, data: fs.readFileSync(path.join(BUNDLE_DIR, name)) }));
  fs.writeFileSync(output, zip(files));
  return { output, entries: names };
}

module.exports = { build, DEFAULT_OUTPUT };

if (require.main === module) {
  const { output, entries } = build(process.argv[2] ? path.resolve(process.argv[2]) : undefined);
  console.log(`${path.relative(process.cwd(), output)}: ${entries.join(', ')}`);
}
