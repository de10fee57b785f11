import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { Template } from 'aws-cdk-lib/assertions';
import { endpointFixture, readZip } from './fixtures';

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
  let template: Template;
  beforeAll(() => {
    const { app, stack } = endpointFixture();
    template = Template.fromStack(stack);
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
    // One bundle for all handlers, the compile program (zip), inference.py, neuronx_common.py and contract.json (the template itself is
    // an asset too when the stack is deployed through the bootstrap bucket).
    expect(files.length).toBeGreaterThanOrEqual(6);
    const sizes = files.map(f => ({ path: f.source.path!, bytes: sizeOnDisk(path.join(outdir, f.source.path!)) }));
    const total = sizes.reduce((sum, s) => sum + s.bytes, 0);
    expect(total).toBeLessThan(MAX_TOTAL_BYTES);
    expect(files.every(f => f.source.executable === undefined)).toBe(true);
  });

  test('every library asset is one file with a content hash: a zip for the handlers, no directory to walk', () => {
    const files = Object.values(manifest.files ?? {}).filter(f => f.source.path !== undefined && !f.source.path.endsWith('.template.json'));
    expect(files.every(f => f.source.packaging === 'file')).toBe(true);
    const [fn] = Object.values(template.findResources('AWS::Lambda::Function'));
    // The staged file is asset.<S3Key>, the key being <hash>.zip.
    const handlers = files.filter(f => path.basename(f.source.path!) === `asset.${fn.Properties.Code.S3Key}`);
    expect(handlers).toHaveLength(1);
    // The zip holds the esbuild bundle of src/handlers/index.ts, byte for byte.
    const bundleDir = path.join(__dirname, '..', 'assets', 'handlers', 'index');
    const entries = readZip(path.join(outdir, handlers[0].source.path!));
    expect(Object.keys(entries)).toEqual(fs.readdirSync(bundleDir).sort());
    for (const [name, bytes] of Object.entries(entries)) expect(bytes.equals(fs.readFileSync(path.join(bundleDir, name)))).toBe(true);
  });

  test('synthesizing the stack never fingerprints or walks a directory (aws-cdk-lib\'s fs/fingerprint is not even loaded)', () => {
    // In a fresh Node process: jest's module registry would hide what a real synth loads.
    const script = `
      const { App, Stack } = require('aws-cdk-lib');
      const ec2 = require('aws-cdk-lib/aws-ec2'); const s3 = require('aws-cdk-lib/aws-s3');
      const p = require(${JSON.stringify(path.join(__dirname, '..'))});
      const app = new App({ outdir: require('fs').mkdtempSync(require('path').join(require('os').tmpdir(), 'fp-')) });
      const stack = new Stack(app, 'S', { env: { account: '111111111111', region: 'us-east-1' } });
      const compile = new p.NeuronxCompile(stack, 'C', { vpc: new ec2.Vpc(stack, 'V'), bucket: new s3.Bucket(stack, 'B'),
        model: p.Model.fromHuggingFace('cyberagent/calm3-22b-chat', { revision: 'r' }), compileInstanceType: p.NeuronxInstanceType.INF2_24XLARGE });
      new p.TransformersNeuronxSageMakerRealtimeInferenceEndpoint(stack, 'E', { modelData: p.TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(compile) });
      app.synth();
      console.log(JSON.stringify(Object.keys(require.cache).filter(k => /aws-cdk-lib[\\/]core[\\/]lib[\\/]fs[\\/]/.test(k))));`;
    const loaded = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf-8', cwd: path.join(__dirname, '..') }).trim().split('\n').pop()!);
    expect(loaded).toEqual([]);
  });

  test('the compile program is one zip of the compile code, the module it shares with the handler and the contract, no tests or caches', () => {
    const zips = Object.values(manifest.files ?? {})
      .filter(f => f.source.packaging === 'file' && f.source.path?.endsWith('.zip'))
      .map(f => path.join(outdir, f.source.path!))
      // The other zip is the handler bundle (its own test above).
      .filter(z => !Object.keys(readZip(z)).includes('index.js'));
    expect(zips).toHaveLength(1);
    const contents = Object.keys(readZip(zips[0]));
    expect(contents).toContain('contract.json');
    expect(contents).toContain('compile/compile_job.py');
    // The compile job builds the model with the function the handler uses (runtime/common/neuronx_common.py), not the handler.
    expect(contents).toContain('compile/neuronx_common.py');
    // Not the handler, the Python tests, the README or dotfiles.
    expect(contents.filter(f => !f.startsWith('compile/') && f !== 'contract.json')).toEqual([]);
    expect(contents.filter(f => f.includes('__pycache__') || f.endsWith('.pyc'))).toEqual([]);
  });

  test('one Lambda function, the compile\'s, from the handler bundle, serves both custom resources and the job-state rule', () => {
    const functions = Object.entries(template.findResources('AWS::Lambda::Function'));
    expect(functions).toHaveLength(1);
    const [[functionId, fn]] = functions;
    expect(fn.Properties.Handler).toBe('index.compileLifecycle');
    const serviceTokens = Object.values(template.toJSON().Resources as Record<string, { Type: string; Properties: { ServiceToken?: unknown } }>)
      .filter(r => r.Type.startsWith('Custom::Neuronx')).map(r => r.Properties.ServiceToken);
    expect(serviceTokens).toEqual([{ 'Fn::GetAtt': [functionId, 'Arn'] }, { 'Fn::GetAtt': [functionId, 'Arn'] }]);
  });
});
