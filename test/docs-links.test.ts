/**
 * The README and the pages under docs/ hold together: every relative link in README.md and docs/*.md points at a file
 * or folder of this repository, and a link with an anchor into a Markdown file points at a heading that file has
 * (GitHub's heading ids). The README stays short enough to read in ten minutes, and the tested-versions note in
 * docs/development.md names the versions that test:compat really pins.
 */
import * as fs from 'fs';
import * as path from 'path';

const ROOT = path.join(__dirname, '..');
const DOCUMENTS = ['README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter(f => f.endsWith('.md')).sort().map(f => `docs/${f}`)];

/** The Markdown text outside code fences, line by line (blank in place of fenced lines, so line numbers hold). */
function outsideFences(markdown: string): string[] {
  let fenced = false;
  return markdown.split('\n').map(line => {
    if (/^\s*```/.test(line)) {
      fenced = !fenced;
      return '';
    }
    return fenced ? '' : line;
  });
}

/** GitHub's id for a heading: lower case, markup and punctuation dropped, spaces to hyphens; repeats get -1, -2, ... */
export function headingIds(markdown: string): Set<string> {
  const ids = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of outsideFences(markdown)) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const text = heading[1]
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // a link keeps its text
      .replace(/<[^>]+>/g, '');
    const base = text.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    ids.add(count === 0 ? base : `${base}-${count}`);
  }
  return ids;
}

export interface Link {
  readonly file: string;
  readonly line: number;
  readonly target: string;
}

/** The relative links of a Markdown file: inline `[text](target)` outside code fences and code spans. */
export function relativeLinks(markdown: string, file: string): Link[] {
  const links: Link[] = [];
  outsideFences(markdown).forEach((line, i) => {
    const text = line.replace(/`[^`]*`/g, '``');
    for (const match of text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
      const target = match[1];
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:, ...
      links.push({ file, line: i + 1, target });
    }
  });
  return links;
}

/** What is wrong with a link, or undefined when it resolves. */
export function brokenLink(link: Link, root: string = ROOT): string | undefined {
  const [targetPath, anchor] = link.target.split('#', 2) as [string, string | undefined];
  const resolved = targetPath === '' ? path.join(root, link.file) : path.resolve(path.dirname(path.join(root, link.file)), decodeURI(targetPath));
  if (!resolved.startsWith(root)) return `${link.file}:${link.line}: ${link.target} leaves the repository`;
  if (!fs.existsSync(resolved)) return `${link.file}:${link.line}: ${link.target}: no such file or folder`;
  if (anchor !== undefined && resolved.endsWith('.md') && !headingIds(fs.readFileSync(resolved, 'utf-8')).has(anchor)) {
    return `${link.file}:${link.line}: ${link.target}: ${path.relative(root, resolved)} has no heading #${anchor}`;
  }
  return undefined;
}

const links = DOCUMENTS.flatMap(file => relativeLinks(fs.readFileSync(path.join(ROOT, file), 'utf-8'), file));

describe('links of README.md and docs/', () => {
  test('there are links to check, in the README and in docs/', () => {
    expect(links.filter(l => l.file === 'README.md').length).toBeGreaterThanOrEqual(20);
    expect(links.filter(l => l.file.startsWith('docs/')).length).toBeGreaterThanOrEqual(10);
  });

  test('every relative link resolves to a file or folder, and every anchor to a heading', () => {
    expect(links.map(l => brokenLink(l)).filter(Boolean)).toEqual([]);
  });

  test('every page under docs/ is linked from the README', () => {
    const fromReadme = new Set(links.filter(l => l.file === 'README.md').map(l => l.target.split('#')[0]));
    expect(DOCUMENTS.filter(d => d.startsWith('docs/') && !fromReadme.has(d))).toEqual([]);
  });
});

describe('the README as a newcomer reads it', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf-8');

  test('is under 350 lines', () => {
    expect(readme.split('\n').length).toBeLessThan(350);
  });

  test('links every heading of its table of contents', () => {
    const contents = readme.slice(readme.indexOf('## Contents'), readme.indexOf('\n## ', readme.indexOf('## Contents') + 1));
    const listed = [...contents.matchAll(/\]\(#([^)]+)\)/g)].map(m => m[1]);
    const sections = outsideFences(readme).filter(l => /^## /.test(l) && l !== '## Contents');
    expect(listed.length).toBe(sections.length);
  });
});

test('docs/development.md names the aws-cdk-lib, constructs and cdk-nag versions test:compat pins', () => {
  const pinned = JSON.parse(fs.readFileSync(path.join(ROOT, 'tools', 'compat', 'package.json'), 'utf-8')).dependencies as Record<string, string>;
  const note = fs.readFileSync(path.join(ROOT, 'docs', 'development.md'), 'utf-8');
  const versions = [pinned['aws-cdk-lib'], pinned.constructs, pinned['cdk-nag'], pinned['cdk-nag-v2'].replace(/^npm:cdk-nag@/, '')];
  expect(versions.filter(v => !note.includes(v))).toEqual([]);
});

describe('the link checker', () => {
  test('finds GitHub\'s heading ids, ignoring fenced lines and numbering repeats', () => {
    const ids = headingIds('# A title\n## Status: what has been tested, and what has not\n```\n# not a heading\n```\n'
      + '## Python, Java and .NET\n## Repeat\n## Repeat\n### `code` and [a link](x.md)\n');
    expect([...ids]).toEqual(['a-title', 'status-what-has-been-tested-and-what-has-not', 'python-java-and-net', 'repeat', 'repeat-1', 'code-and-a-link']);
  });

  test('reports a missing file and a missing anchor, and skips absolute addresses and code', () => {
    const found = relativeLinks('[a](README.md#nowhere) [b](docs/none.md) [c](https://example.com/x) `[d](no.md)`\n'
      + '```\n[e](no.md)\n```\n[f](#install)', 'README.md');
    expect(found.map(l => l.target)).toEqual(['README.md#nowhere', 'docs/none.md', '#install']);
    expect(found.map(l => brokenLink(l))).toEqual([
      expect.stringMatching(/README\.md has no heading #nowhere/),
      expect.stringMatching(/docs\/none\.md: no such file/),
      undefined,
    ]);
  });
});
