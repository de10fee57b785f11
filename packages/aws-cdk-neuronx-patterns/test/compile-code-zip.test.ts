import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readZip } from './fixtures';

const PACKAGE_DIR = path.join(__dirname, '..');
const RUNTIME_DIR = path.join(PACKAGE_DIR, 'runtime');
const BUILDER = path.join(PACKAGE_DIR, 'build-tools', 'compile-code-zip.js');
const HANDLERS_BUILDER = path.join(PACKAGE_DIR, 'build-tools', 'handlers-zip.js');

function build(output: string): Buffer {
  execFileSync(process.execPath, [BUILDER, output], { encoding: 'utf-8' });
  return fs.readFileSync(output);
}

describe('assets/compile-code.zip (build-tools/compile-code-zip.js)', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'compile-code-zip-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('holds the compile program, the module it shares with the handler (beside it) and the contract, byte for byte', () => {
    const file = path.join(dir, 'code.zip');
    build(file);
    const entries = readZip(file);
    const compileFiles = fs.readdirSync(path.join(RUNTIME_DIR, 'compile')).filter(n => n.endsWith('.py')).map(n => `compile/${n}`);
    expect(Object.keys(entries).sort()).toEqual([...compileFiles, 'compile/neuronx_common.py', 'contract.json'].sort());
    const source = (name: string) => (name === 'compile/neuronx_common.py' ? 'common/neuronx_common.py' : name);
    for (const [name, bytes] of Object.entries(entries)) {
      expect(bytes.equals(fs.readFileSync(path.join(RUNTIME_DIR, source(name))))).toBe(true);
    }
  });

  test('is the same bytes whenever and wherever it is built: the asset hash depends on the sources only', () => {
    const first = build(path.join(dir, 'a.zip'));
    // A checkout gives the files new modification times; they must not reach the zip.
    const later = new Date(Date.now() + 86_400_000);
    const source = path.join(RUNTIME_DIR, 'contract.json');
    const { atime, mtime } = fs.statSync(source);
    fs.utimesSync(source, later, later);
    try {
      expect(build(path.join(dir, 'b.zip')).equals(first)).toBe(true);
    } finally {
      fs.utimesSync(source, atime, mtime);
    }
  });

  test('the zip the constructs stage (assets/) is the one the current sources make: the bundle task ran', () => {
    expect(fs.readFileSync(path.join(PACKAGE_DIR, 'assets', 'compile-code.zip')).equals(build(path.join(dir, 'now.zip')))).toBe(true);
  });
});

describe('assets/handlers.zip (build-tools/handlers-zip.js)', () => {
  test('is the bundle the build wrote, stored the same reproducible way: the bundle task ran', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'handlers-zip-'));
    try {
      const output = path.join(dir, 'handlers.zip');
      execFileSync(process.execPath, [HANDLERS_BUILDER, output], { encoding: 'utf-8' });
      expect(fs.readFileSync(path.join(PACKAGE_DIR, 'assets', 'handlers.zip')).equals(fs.readFileSync(output))).toBe(true);
      expect(Object.keys(readZip(output))).toEqual(['index.js']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
