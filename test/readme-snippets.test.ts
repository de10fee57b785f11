/**
 * Every code snippet of README.md and of the pages under docs/ works as written: each TypeScript snippet type-checks
 * with the compiler options of a `cdk init app --language typescript` project (a CommonJS package: no top-level
 * `await`), against this repository's sources; each Python snippet compiles (`compile()`, as `python -m py_compile`
 * does).
 *
 * A snippet may be preceded by one marker line (blank lines between are allowed):
 * - `<!-- snippet: in-stack -->`: the snippet is code inside a Stack's constructor, where `this`/`stack` is the
 *   stack and `vpc`, `bucket` and `calm3` (a lowCost SageMakerRealtimeInference) exist; its `import` lines go to
 *   the top of the file. It is checked in that context.
 * - `<!-- snippet: skip <reason> -->`: deliberately partial, not checked. Keep these few.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as ts from 'typescript';

const ROOT = path.join(__dirname, '..');
/** The Markdown files whose snippets are checked: README.md and every page under docs/, as paths from the root. */
export const DOCUMENTS = ['README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter(f => f.endsWith('.md')).sort().map(f => `docs/${f}`)];

type Mode = 'module' | 'in-stack' | 'skip';

export interface Snippet {
  readonly language: 'typescript' | 'python';
  /** The Markdown file it is in, from the repository root. */
  readonly file: string;
  /** The line of that file where the code starts (1-based). */
  readonly line: number;
  readonly code: string;
  readonly mode: Mode;
}

const LANGUAGES: Record<string, Snippet['language']> = { ts: 'typescript', typescript: 'typescript', python: 'python', py: 'python' };
const MARKER = /^<!-- snippet: (in-stack|skip)(?: [^>]*)? -->$/;

/** The TypeScript and Python snippets of a Markdown text, with the mode their marker gives. */
export function extractSnippets(markdown: string, file: string = 'README.md'): Snippet[] {
  const lines = markdown.split('\n');
  const snippets: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const fence = /^```(\w*)\s*$/.exec(lines[i]);
    if (!fence) continue;
    const end = lines.findIndex((l, j) => j > i && /^```\s*$/.test(l));
    if (end < 0) throw new Error(`${file}:${i + 1}: a code fence that is never closed`);
    const language = LANGUAGES[fence[1]];
    if (language) {
      let before = i - 1;
      while (before >= 0 && lines[before].trim() === '') before--;
      const marker = before >= 0 ? MARKER.exec(lines[before].trim()) : null;
      if (lines[before]?.startsWith('<!-- snippet:') && !marker) {
        throw new Error(`${file}:${before + 1}: unknown snippet marker '${lines[before]}'`);
      }
      snippets.push({ language, file, line: i + 2, code: lines.slice(i + 1, end).join('\n'), mode: (marker?.[1] as Mode) ?? 'module' });
    }
    i = end;
  }
  return snippets;
}

const IMPORT_LINE = /^import .* from '[^']+';$/;

/** The names an import line declares. */
function importedNames(line: string): string[] {
  const namespace = /^import \* as (\w+) from/.exec(line);
  if (namespace) return [namespace[1]];
  const named = /^import (?:(\w+)\s*,?\s*)?(?:\{([^}]*)\})? from/.exec(line);
  if (!named) return [];
  const members = (named[2] ?? '').split(',').map(m => m.trim()).filter(Boolean).map(m => m.split(/\s+as\s+/).pop()!);
  return [...(named[1] ? [named[1]] : []), ...members];
}

// What an in-stack snippet may use without importing or declaring it.
const IN_STACK_IMPORTS: Array<[string, string]> = [
  ['App', "import { App } from 'aws-cdk-lib';"],
  ['Stack', "import { Stack } from 'aws-cdk-lib';"],
  ['ec2', "import * as ec2 from 'aws-cdk-lib/aws-ec2';"],
  ['s3', "import * as s3 from 'aws-cdk-lib/aws-s3';"],
  ['Construct', "import { Construct } from 'constructs';"],
  ['calm3chat22b', "import { calm3chat22b } from 'aws-cdk-neuronx-models';"],
];
const IN_STACK_OPEN = `class SnippetStack extends Stack {
  constructor(scope: Construct, id: string) {
    super(scope, id);
    const stack = this;
    const vpc = new ec2.Vpc(this, 'Vpc', { maxAzs: 2, natGateways: 1 });
    const bucket = new s3.Bucket(this, 'Bucket', { enforceSSL: true });
    const calm3 = new calm3chat22b.SageMakerRealtimeInference(this, 'Calm3Chat', {
      bucket, compileVpc: vpc, instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy.lowCost,
    });
    void stack; void calm3;
    {`;
const IN_STACK_CLOSE = `
    }
  }
}
new SnippetStack(new App(), 'SnippetStack');`;

/** The source file that checks a TypeScript snippet, and the Markdown file and line of its first line. */
export function typescriptSource(snippet: Snippet): { text: string; file: string; firstLine: number } {
  if (snippet.mode !== 'in-stack') {
    // As a file of its own: a module, as every file of a cdk init app is (`export {}` adds nothing else).
    return { text: `${snippet.code}\nexport {};\n`, file: snippet.file, firstLine: snippet.line };
  }
  const lines = snippet.code.split('\n');
  const imports = lines.filter(l => IMPORT_LINE.test(l));
  const own = new Set(imports.flatMap(importedNames));
  const prelude = [...IN_STACK_IMPORTS.filter(([name]) => !own.has(name)).map(([, line]) => line), ...imports, IN_STACK_OPEN];
  // Import lines are blanked in place, so that line numbers still match the Markdown file.
  const body = lines.map(l => (IMPORT_LINE.test(l) ? '' : l));
  const preludeText = prelude.join('\n');
  return { text: `${preludeText}\n${body.join('\n')}${IN_STACK_CLOSE}\n`, file: snippet.file, firstLine: snippet.line - preludeText.split('\n').length };
}

/** The compiler options of `cdk init app --language typescript` (aws-cdk CLI 2.1148), checking only. */
const CDK_INIT_OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  lib: ['lib.es2022.d.ts'],
  strict: true,
  noImplicitAny: true,
  strictNullChecks: true,
  noImplicitThis: true,
  alwaysStrict: true,
  noImplicitReturns: true,
  experimentalDecorators: true,
  strictPropertyInitialization: false,
  skipLibCheck: true,
  isolatedModules: true,
  noEmit: true,
  types: ['node'],
  // The published package is this repository's source.
  paths: { 'aws-cdk-neuronx-models': [path.join(ROOT, 'src', 'index.ts')] },
};

/** Type errors of each source, as `<file>:<line>: <message>`. Sources live in memory beside package.json (CommonJS). */
export function typeErrors(sources: Array<{ text: string; file: string; firstLine: number }>): string[][] {
  const files = sources.map((_, i) => path.join(ROOT, 'readme-snippets', `snippet${i}.ts`));
  const virtual = new Map(files.map((f, i) => [f, sources[i].text]));
  const host = ts.createCompilerHost(CDK_INIT_OPTIONS);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  const readFile = host.readFile.bind(host);
  host.fileExists = f => virtual.has(f) || fileExists(f);
  host.readFile = f => virtual.get(f) ?? readFile(f);
  host.getSourceFile = (f, languageVersion, onError) => {
    const text = virtual.get(f);
    return text !== undefined ? ts.createSourceFile(f, text, languageVersion) : getSourceFile(f, languageVersion, onError);
  };
  const program = ts.createProgram(files, CDK_INIT_OPTIONS, host);
  return files.map((f, i) => {
    const sourceFile = program.getSourceFile(f)!;
    return [...program.getSyntacticDiagnostics(sourceFile), ...program.getSemanticDiagnostics(sourceFile)].map(d => {
      const line = d.start !== undefined ? sourceFile.getLineAndCharacterOfPosition(d.start).line : 0;
      return `${sources[i].file}:${sources[i].firstLine + line}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
  });
}

/** Syntax errors of each Python snippet, as Python's compile() reports them. */
export function pythonErrors(snippets: Snippet[]): string[][] {
  const program = [
    'import json, sys',
    'errors = []',
    'for s in json.load(sys.stdin):',
    '    try:',
    '        compile(s["code"], s["file"], "exec")',
    '        errors.append([])',
    '    except SyntaxError as e:',
    '        errors.append(["%s:%d: %s" % (s["file"], s["line"] + (e.lineno or 1) - 1, e.msg)])',
    'print(json.dumps(errors))',
  ].join('\n');
  const result = spawnSync('python3', ['-c', program], { input: JSON.stringify(snippets), encoding: 'utf-8' });
  if (result.status !== 0) throw new Error(`python3 failed: ${result.stderr}`);
  return JSON.parse(result.stdout);
}

const snippets = DOCUMENTS.flatMap(file => extractSnippets(fs.readFileSync(path.join(ROOT, file), 'utf-8'), file));
const checked = snippets.filter(s => s.mode === 'module' || s.mode === 'in-stack');
const name = (s: Snippet) => `${s.language} at ${s.file}:${s.line}${s.mode === 'in-stack' ? ' (in a stack)' : ''}`;

// The checker's own cases, type-checked in the same program as the documents' (one program: aws-cdk-lib's types load once).
const sample = (code: string, mode: Mode = 'module'): Snippet => ({ language: 'typescript', file: 'README.md', line: 10, code, mode });
const CHECKER_CASES = {
  topLevelAwait: sample("import { setTimeout } from 'timers/promises';\nawait setTimeout(1);"),
  wrongProp: sample("new calm3chat22b.SageMakerRealtimeInference(this, 'X', { bucket, compileVpc: vpc, instanceTypeStrategy: 1 });", 'in-stack'),
  inStack: sample("import { Duration } from 'aws-cdk-lib';\nnew calm3chat22b.SageMakerRealtimeInference(this, 'X', {\n"
    + '  bucket, compileVpc: vpc, instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy.lowCost,\n'
    + '  modelDataDownloadTimeout: Duration.minutes(20),\n});', 'in-stack'),
};

const typescript = checked.filter(s => s.language === 'typescript');
const python = checked.filter(s => s.language === 'python');
let tsErrors: string[][] = [];
let caseErrors: Record<keyof typeof CHECKER_CASES, string[]>;
beforeAll(() => {
  const cases = Object.entries(CHECKER_CASES);
  const errors = typeErrors([...typescript, ...cases.map(([, s]) => s)].map(typescriptSource));
  tsErrors = errors.slice(0, typescript.length);
  caseErrors = Object.fromEntries(cases.map(([key], i) => [key, errors[typescript.length + i]])) as typeof caseErrors;
}, 120_000);

describe('README and docs/ snippets', () => {
  let pyErrors: string[][] = [];
  beforeAll(() => {
    pyErrors = pythonErrors(python);
  });

  test('README.md and docs/ have TypeScript and Python snippets, and few are left unchecked', () => {
    expect(DOCUMENTS).toEqual(expect.arrayContaining(['README.md', 'docs/calling-the-endpoint.md']));
    expect(typescript.filter(s => s.file === 'README.md').length).toBeGreaterThanOrEqual(2);
    expect(python.filter(s => s.file === 'README.md').length).toBeGreaterThanOrEqual(1);
    expect(typescript.length).toBeGreaterThanOrEqual(10);
    expect(python.length).toBeGreaterThanOrEqual(5);
    expect(snippets.filter(s => s.mode === 'skip').length).toBeLessThanOrEqual(2);
  });

  test.each(typescript.map((s, i) => [name(s), i] as const))('%s type-checks in a cdk init app', (_name, i) => {
    expect(tsErrors[i]).toEqual([]);
  });

  test.each(python.map((s, i) => [name(s), i] as const))('%s compiles', (_name, i) => {
    expect(pyErrors[i]).toEqual([]);
  });
});

describe('the snippet checker', () => {
  test('rejects top-level await in a CommonJS app and reports the file and line', () => {
    expect(caseErrors.topLevelAwait).toEqual([expect.stringMatching(/^README\.md:11: .*await/)]);
  });

  test('rejects a wrong prop of the library, and accepts in-stack code that uses the stack\'s vpc and bucket', () => {
    expect(caseErrors.wrongProp).toEqual([expect.stringMatching(/^README\.md:10: Type 'number' is not assignable to type 'InstanceTypeStrategy'/)]);
    expect(caseErrors.inStack).toEqual([]);
  });

  test('reads the marker before a fence, rejects an unknown one, and names the file', () => {
    const modes = extractSnippets('<!-- snippet: in-stack -->\n\n```ts\nx\n```\n```python\ny\n```\n<!-- snippet: skip partial -->\n```ts\nz\n```\n')
      .map(s => [s.line, s.mode]);
    expect(modes).toEqual([[4, 'in-stack'], [7, 'module'], [11, 'skip']]);
    expect(() => extractSnippets('<!-- snippet: partial -->\n```ts\nx\n```\n', 'docs/x.md')).toThrow(/^docs\/x\.md:1: unknown snippet marker/);
  });

  test('finds a Python syntax error on its file and line', () => {
    expect(pythonErrors([{ language: 'python', file: 'docs/x.md', line: 20, code: 'x = 1\nif x\n', mode: 'module' }])[0]).toEqual([expect.stringMatching(/^docs\/x\.md:21: /)]);
  });
});
