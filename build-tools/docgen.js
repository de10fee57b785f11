// Generates a package's API.md with jsii-docgen.
//
// The workspace hoists every dependency to the repository root, where jsii-docgen's own lookup (node_modules
// beside the package) does not find their assemblies; so this tells it where they are.
// Usage: node build-tools/docgen.js <package dir>
const path = require('path');
const fs = require('fs');
const { Documentation, Language } = require('jsii-docgen');

async function main() {
  const packageDir = path.resolve(process.argv[2] ?? '.');
  const docs = await Documentation.forProject(packageDir, {
    assembliesDir: path.join(__dirname, '..', 'node_modules'),
  });
  const markdown = await docs.toMarkdown({ language: Language.TYPESCRIPT });
  fs.writeFileSync(path.join(packageDir, 'API.md'), markdown.render());
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
