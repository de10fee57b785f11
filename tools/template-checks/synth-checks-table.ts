/**
 * Renders the table "What the library checks at synth" (docs/synth-checks.md) from synth-checks.json, whose every row
 * synth-checks.test.ts proves against the error the library really throws.
 *
 *   npx ts-node tools/template-checks/synth-checks-table.ts                  rewrite the table in docs/synth-checks.md
 *   npx ts-node tools/template-checks/synth-checks-table.ts --check          exit 1 when it is out of date
 *   npx ts-node tools/template-checks/synth-checks-table.ts [--check] FILE   the same for another Markdown file
 */
import * as fs from 'fs';
import * as path from 'path';

/** One configuration the library rejects at synth, with the sentence it answers with. */
export interface SynthCheck {
  /** Stable id: synth-checks.test.ts has one builder for each. */
  readonly id: string;
  /** The construct or factory that rejects it. */
  readonly construct: string;
  /** The prop (or props) the configuration sets. */
  readonly prop: string;
  /** The configuration, in words. */
  readonly configuration: string;
  /** An example value that is rejected. */
  readonly example: string;
  /** What the error says for the example: a sentence the thrown message contains verbatim. */
  readonly message: string;
}

export const START_MARKER = '<!-- synth-checks:start -->';
export const END_MARKER = '<!-- synth-checks:end -->';
export const CHECKS_FILE = path.join(__dirname, 'synth-checks.json');
/** The page that shows the table, from the repository root. */
export const TABLE_DOCUMENT = 'docs/synth-checks.md';

export function loadChecks(file: string = CHECKS_FILE): SynthCheck[] {
  return JSON.parse(fs.readFileSync(file, 'utf-8')).checks;
}

function cell(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** The markdown table, one row per check, in the file's order. */
export function renderTable(checks: SynthCheck[]): string {
  const lines = [
    '| Construct | Prop | Rejected configuration | Example | Message (excerpt) |',
    '|---|---|---|---|---|',
    ...checks.map(c => `| ${cell(c.construct)} | \`${cell(c.prop)}\` | ${cell(c.configuration)} | \`${cell(c.example)}\` | ${cell(c.message)} |`),
  ];
  return [
    '<!-- Generated from tools/template-checks/synth-checks.json by tools/template-checks/synth-checks-table.ts; do not edit. -->',
    ...lines,
  ].join('\n');
}

/** `document` with the text between the markers replaced by `table`. */
export function replaceSection(document: string, table: string): string {
  const start = document.indexOf(START_MARKER);
  const end = document.indexOf(END_MARKER);
  if (start < 0 || end < start) {
    throw new Error(`The document has no '${START_MARKER}' ... '${END_MARKER}' section for the synth checks table.`);
  }
  return `${document.slice(0, start + START_MARKER.length)}\n${table}\n${document.slice(end)}`;
}

function main(args: string[]): number {
  const check = args.includes('--check');
  const given = args.filter(a => a !== '--check');
  const files = given.length > 0 ? given : [path.join(__dirname, '..', '..', TABLE_DOCUMENT)];
  if (files.length !== 1) {
    process.stderr.write(`usage: synth-checks-table.ts [--check] [${TABLE_DOCUMENT}]\n`);
    return 2;
  }
  const [file] = files;
  const current = fs.readFileSync(file, 'utf-8');
  const updated = replaceSection(current, renderTable(loadChecks()));
  if (check) {
    if (updated !== current) {
      process.stderr.write(`${file}: the synth checks table is out of date: run npx ts-node tools/template-checks/synth-checks-table.ts ${file}\n`);
      return 1;
    }
    return 0;
  }
  if (updated !== current) fs.writeFileSync(file, updated);
  return 0;
}

if (require.main === module) {
  process.exitCode = main(process.argv.slice(2));
}
