import * as fs from 'fs';
import * as path from 'path';
import { endpointFixture } from './fixtures';

const MAX_TOTAL_BYTES = 1024 * 1024;

function sizeOnDisk(p: string): number {
  const stat = fs.statSync(p);
  if (!stat.isDirectory()) return stat.size;
  return fs.readdirSync(p).reduce((sum, name) => sum + sizeOnDisk(path.join(p, name)), 0);
}

interface AssetManifest {
  readonly files?: Record<string, { source: { path?: string; packaging?: string; executable?: string[] }; displayName?: string }>;
  readonly dockerImages?: Record<string, unknown>;
}

describe('assets of a stack with one NeuronxCompile and one endpoint', () => {
  let manifest: AssetManifest;
  let outdir: string;
  beforeAll(() => {
    const { app, stack } = endpointFixture();
    const assembly = app.synth();
    outdir = assembly.directory;
    const artifact = assembly.getStackByName(stack.stackName);
    const assetsFile = assembly.artifacts
      .filter(a => a.id === `${artifact.id}.assets`)
      .map(a => path.join(outdir, (a.manifest.properties as { file: string }).file))[0];
    manifest = JSON.parse(fs.readFileSync(assetsFile, 'utf-8'));
  });

  test('there is no Docker image to build or push: the Neuron DLC image is pulled as it is', () => {
    expect(Object.keys(manifest.dockerImages ?? {})).toEqual([]);
  });

  test('the file assets are the Lambda bundles and the Python programs, together under 1 MB', () => {
    const files = Object.values(manifest.files ?? {}).filter(f => f.source.path !== undefined);
    // The three handler bundles, the compile program (zip), inference.py and contract.json (the template itself is
    // an asset too when the stack is deployed through the bootstrap bucket).
    expect(files.length).toBeGreaterThanOrEqual(6);
    const sizes = files.map(f => ({ path: f.source.path!, bytes: sizeOnDisk(path.join(outdir, f.source.path!)) }));
    const total = sizes.reduce((sum, s) => sum + s.bytes, 0);
    expect(total).toBeLessThan(MAX_TOTAL_BYTES);
    expect(files.every(f => f.source.executable === undefined)).toBe(true);
  });

  test('the compile program asset holds only the compile code and the contract, no tests or caches', () => {
    const dirs = Object.values(manifest.files ?? {})
      .map(f => path.join(outdir, f.source.path ?? ''))
      .filter(p => fs.existsSync(path.join(p, 'contract.json')) && fs.existsSync(path.join(p, 'compile')));
    expect(dirs).toHaveLength(1);
    const list = (dir: string, prefix = ''): string[] => fs.readdirSync(dir).flatMap(name => {
      const full = path.join(dir, name);
      return fs.statSync(full).isDirectory() ? list(full, `${prefix}${name}/`) : [`${prefix}${name}`];
    });
    const contents = list(dirs[0]);
    expect(contents).toContain('contract.json');
    expect(contents).toContain('compile/compile_job.py');
    // Not the Python tests, the inference handler or the README. (runtime/.gitignore slips through the exclude
    // globs, which do not match dotfiles; it is a few bytes and harmless.)
    expect(contents.filter(f => !f.startsWith('compile/') && f !== 'contract.json' && !f.startsWith('.'))).toEqual([]);
    expect(contents.filter(f => f.includes('__pycache__') || f.endsWith('.pyc'))).toEqual([]);
  });
});
