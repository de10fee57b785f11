import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, CfnParameter, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import * as ts from 'typescript';
import {
  NeuronxInstanceType, NeuronxRuntime, QuantDtype, TransformersNeuronxSageMakerInferenceModelData,
} from '../src';
import {
  calm3, compileFixture, ENV, flatten, logicalId, resourcesOf, statementsAllowing, statementsOfRole,
} from './fixtures';
import { CONTRACT } from '../src/private/contract';

function role(scope: Stack, id = 'Role'): iam.Role {
  return new iam.Role(scope, id, { assumedBy: new iam.ServicePrincipal('sagemaker.amazonaws.com') });
}

/** The library's handler: its entry script and its modules (runtime/inference/*.py), all placed in code/. */
const HANDLER_FILES = [
  'inference.py', 'neuronx_admission.py', 'neuronx_answer.py', 'neuronx_chat.py', 'neuronx_loading.py', 'neuronx_openai.py',
  'neuronx_request.py', 'neuronx_scheduler.py',
];

const tempDirs: string[] = [];
afterAll(() => tempDirs.forEach(dir => fs.rmSync(dir, { recursive: true, force: true })));

/** An inference.py that defines the TorchServe entry, with `body` to tell versions apart. */
function handler(body: string): string {
  return `${body}\n\ndef handle(data, context):\n    return []\n`;
}

/** The Names of a placement's Files: each file in code/<hash>/, and the entry code/neuronx_code_<hash>.py, last. */
function placedNames(files: { Name: string }[], hash: string): { inFolder: string[]; entry: string } {
  const names = files.map(f => f.Name);
  const inFolder = names.slice(0, -1);
  expect(inFolder.every(name => name.startsWith(`${hash}/`))).toBe(true);
  return { inFolder: inFolder.map(name => name.slice(hash.length + 1)).sort(), entry: names[names.length - 1] };
}

function codeDir(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'neuronx-code-'));
  tempDirs.push(dir);
  for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), content);
  return dir;
}

describe('TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile', () => {
  test('gives the compile\'s prefix and options, and depends on the compile', () => {
    const { stack, compile } = compileFixture();
    const config = TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(compile).bind(stack, role(stack));
    expect(flatten(stack.resolve(config.s3Uri))).toBe(flatten(stack.resolve(compile.compiledArtifactS3Url)));
    expect(config).toMatchObject({ tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8, compiledFor: NeuronxInstanceType.TRN1_2XLARGE });
    expect(config.runtime).toBe(compile.runtime);
    expect(config.model).toBe(compile.model);
    expect(config.dependencies).toContain(compile);
    expect(config.environment.NEURONX_CODE_HASH).toMatch(/^[0-9a-f]{16}$/);
  });

  test('grants reading only the compile\'s prefix', () => {
    const { stack, compile, bucket } = compileFixture();
    const grantee = role(stack);
    TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(compile).bind(stack, grantee);
    const statements = statementsOfRole(Template.fromStack(stack), logicalId(stack, grantee));
    const bucketArn = `\${${logicalId(stack, bucket)}.Arn}`;
    expect(statementsAllowing(statements, 's3:GetObject').flatMap(resourcesOf)).toEqual([`${bucketArn}/${compile.compiledArtifactS3Prefix}*`]);
    expect(statementsAllowing(statements, 's3:PutObject')).toEqual([]);
    const lists = statementsAllowing(statements, 's3:ListBucket');
    expect(lists.map(s => s.Condition)).toEqual([{ StringLike: { 's3:prefix': [`${compile.compiledArtifactS3Prefix}*`] } }]);
  });

  test('places inference.py and its modules, neuronx_common.py, contract.json and the /ping plugin under <prefix>code/<hash>/ and the entry as code/neuronx_code_<hash>.py, through the compile\'s own function, which may write only under code/', () => {
    const { stack, compile, bucket } = compileFixture();
    const config = TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(compile).bind(stack, role(stack));
    const template = Template.fromStack(stack);
    const resources = Object.values(template.findResources('Custom::NeuronxInferenceCode'));
    expect(resources).toHaveLength(1);
    const props = resources[0].Properties;
    expect(props.DestinationPrefix).toBe(`${compile.compiledArtifactS3Prefix}code/`);
    expect(props.DestinationBucket).toEqual({ Ref: logicalId(stack, bucket) });
    // Content-addressed: every file in the folder the hash names; the model names the same hash.
    expect(config.codeHash).toBe(config.environment.NEURONX_CODE_HASH);
    const placed = placedNames(props.Files, config.codeHash!);
    expect(placed.inFolder).toEqual(['contract.json', ...HANDLER_FILES, 'neuronx_common.py', 'readiness-ping.jar'].sort());
    expect(placed.entry).toBe(`neuronx_code_${config.codeHash}.py`);
    // The compile's function serves it: no function of its own.
    expect(props.ServiceToken).toEqual({ 'Fn::GetAtt': [logicalId(stack, compile.node.findChild('LifecycleFunction')), 'Arn'] });
    expect(stack.node.tryFindChild('InferenceCode')?.node.tryFindChild('Function')).toBeUndefined();
    expect(Object.keys(template.findResources('AWS::Lambda::Function'))).toHaveLength(1);

    const statements = statementsOfRole(template, logicalId(stack, compile.node.findChild('LifecycleFunctionRole')));
    expect(statementsAllowing(statements, 's3:PutObject').flatMap(resourcesOf))
      .toEqual([`\${${logicalId(stack, bucket)}.Arn}/${compile.compiledArtifactS3Prefix}code/*`]);
    // It reads the two code objects, not the whole CDK asset bucket (and, for the compile, its own prefix).
    const reads = statementsAllowing(statements, 's3:GetObject').flatMap(resourcesOf);
    expect(reads).toEqual([
      `\${${logicalId(stack, bucket)}.Arn}/${compile.compiledArtifactS3Prefix}*`,
      ...props.Files.map((file: { SourceBucket: string; SourceKey: string }) => `arn:\${AWS::Partition}:s3:::${file.SourceBucket}/${file.SourceKey}`),
    ]);
  });

  test('in another stack than the compile, the model data places its code with a function of its own', () => {
    const { app, compile } = compileFixture();
    const other = new Stack(app, 'Serving', { env: ENV });
    TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(compile).bind(other, role(other));
    const template = Template.fromStack(other);
    const [placed] = Object.values(template.findResources('Custom::NeuronxInferenceCode'));
    const fn = other.node.findChild('InferenceCode').node.findChild('Function');
    expect(placed.Properties.ServiceToken).toEqual({ 'Fn::GetAtt': [logicalId(other, fn), 'Arn'] });
    const statements = statementsOfRole(template, logicalId(other, other.node.findChild('InferenceCode').node.findChild('FunctionRole')));
    expect(statementsAllowing(statements, 's3:PutObject').flatMap(resourcesOf).map(flatten))
      .toEqual([expect.stringMatching(new RegExp(`/${compile.compiledArtifactS3Prefix}code/\\*$`))]);
    // The marker is checked after the compile's whole stack, with its wait, is deployed.
    const compileStack = Stack.of(compile);
    const [waitId] = Object.keys(Template.fromStack(compileStack).findResources('AWS::CloudFormation::WaitCondition'));
    expect(placed.Properties.CompileWait).toBe(waitId);
    expect(other.dependencies).toContain(compileStack);
  });
});

test('each of the library\'s functions waits for its role\'s policy, with no DependsOn on the role it references (cfn-lint W3005)', () => {
  const { stack, compile, bucket } = compileFixture();
  TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(compile).bind(stack, role(stack));
  // Model data from a bucket places its code with a function of its own.
  const other = new Construct(stack, 'Other');
  TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'compiled/', { model: calm3(), tpDegree: 2 }).bind(other, role(stack, 'OtherRole'));
  const template = Template.fromStack(stack);
  const policies = template.findResources('AWS::IAM::Policy');
  const functions = Object.entries(template.findResources('AWS::Lambda::Function'));
  // The compile's function and the other code placer, both made by handlerFunction.
  expect(functions.map(([id]) => id)).toEqual(expect.arrayContaining([
    logicalId(stack, compile.node.findChild('LifecycleFunction')), expect.stringMatching(/^OtherInferenceCodeFunction/),
  ]));
  expect(functions).toHaveLength(2);
  for (const [, fn] of functions) {
    const roleId: string = fn.Properties.Role['Fn::GetAtt'][0];
    const policyIds = Object.entries(policies)
      .filter(([, p]) => p.Properties.Roles.some((r: { Ref?: string }) => r.Ref === roleId))
      .map(([id]) => id);
    expect(policyIds).toHaveLength(1);
    expect(fn.DependsOn).toEqual(expect.arrayContaining(policyIds));
    expect(fn.DependsOn).not.toContain(roleId);
  }
});

describe('TransformersNeuronxSageMakerInferenceModelData.fromBucket', () => {
  test('defaults: a trailing slash, 4096 positions, bf16, the default runtime, and no compiled-for instance', () => {
    const stack = new Stack(new App(), 'S', { env: ENV });
    const bucket = new s3.Bucket(stack, 'B');
    const config = TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'compiled/calm3', { model: calm3(), tpDegree: 4 })
      .bind(stack, role(stack));
    expect(flatten(stack.resolve(config.s3Uri))).toBe(`s3://\${${logicalId(stack, bucket)}}/compiled/calm3/`);
    expect(config).toMatchObject({ tpDegree: 4, nPositions: 4096, quantDtype: undefined, compiledFor: undefined });
    expect(config.runtime).toBe(NeuronxRuntime.DEFAULT);
    expect(config.dependencies).toHaveLength(1); // only the placed code: there is no compile to wait for
  });

  test('your own code directory is placed instead, and a change of it changes the code hash', () => {
    const hashOf = (dir: string) => {
      const stack = new Stack(new App(), 'S', { env: ENV });
      const bucket = new s3.Bucket(stack, 'B');
      const config = TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'p/', { model: calm3(), tpDegree: 4, code: dir })
        .bind(stack, role(stack));
      const files = Object.values(Template.fromStack(stack).findResources('Custom::NeuronxInferenceCode'))[0].Properties.Files;
      return { hash: config.codeHash!, ...placedNames(files, config.codeHash!), entrySource: files[files.length - 1].SourceKey };
    };
    const a = hashOf(codeDir({ 'inference.py': handler('v1'), 'requirements.txt': 'x' }));
    const b = hashOf(codeDir({ 'inference.py': handler('v2'), 'requirements.txt': 'x' }));
    // The library's shared module, its handler's modules, the contract and the /ping plugin (TorchServe's, whatever the
    // handler) are placed beside it, always.
    expect(a.inFolder).toEqual(['contract.json', ...HANDLER_FILES, 'neuronx_common.py', 'readiness-ping.jar', 'requirements.txt'].sort());
    // Two contents, two folders and two entries: neither deploy overwrites the other's code.
    expect(a.hash).not.toEqual(b.hash);
    expect([a.entry, b.entry]).toEqual([`neuronx_code_${a.hash}.py`, `neuronx_code_${b.hash}.py`]);
    // The entry is the library's one file, the same text whatever the hash.
    expect(a.entrySource).toEqual(b.entrySource);
    expect(hashOf(codeDir({ 'inference.py': handler('v1'), 'requirements.txt': 'x' })).hash).toEqual(a.hash);
  });

  test('a code directory with a subdirectory fails at synth (its files would be missing on the endpoint)', () => {
    const stack = new Stack(new App(), 'S', { env: ENV });
    const bucket = new s3.Bucket(stack, 'B');
    const dir = codeDir({ 'inference.py': handler('import helpers.x') });
    fs.mkdirSync(path.join(dir, 'helpers'));
    fs.writeFileSync(path.join(dir, 'helpers', 'x.py'), '');
    expect(() => TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'p/', { model: calm3(), tpDegree: 4, code: dir }).bind(stack, role(stack)))
      .toThrow(/code is '.*', which has the subdirectory 'helpers': only the files directly in it are placed under code\/<hash>\/; move them up beside inference\.py/);
  });

  test.each(['neuronx_common.py', 'neuronx_scheduler.py', 'contract.json', 'readiness-ping.jar', 'model-config.yaml'])('a code directory with its own %s fails at synth (the library places its own)', (name) => {
    const stack = new Stack(new App(), 'S', { env: ENV });
    const bucket = new s3.Bucket(stack, 'B');
    const dir = codeDir({ 'inference.py': handler('v1'), [name]: 'x' });
    expect(() => TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'p/', { model: calm3(), tpDegree: 4, code: dir }).bind(stack, role(stack)))
      .toThrow(new RegExp(`code is '.*', which has a file '${name.replace('.', '\\.')}': the library places its own ${name.replace('.', '\\.')} under code/<hash>/ beside the handler; remove or rename yours`));
  });

  test('every module of the library\'s runtime the library\'s handler imports is placed beside it', () => {
    const runtime = path.join(__dirname, '..', 'runtime');
    // Followed from inference.py through every module of the library's that it imports, and they through theirs.
    const dirOf = (file: string) => ['common', 'compile', 'inference'].find(dir => fs.existsSync(path.join(runtime, dir, file)));
    const ours = new Set<string>();
    const visit = (file: string) => {
      const source = fs.readFileSync(path.join(runtime, dirOf(file)!, file), 'utf-8');
      for (const m of source.matchAll(/^(?:from|import) (\w+)/gm)) {
        const imported = `${m[1]}.py`;
        if (dirOf(imported) && !ours.has(imported)) {
          ours.add(imported);
          visit(imported);
        }
      }
    };
    visit('inference.py');
    expect([...ours].sort()).toEqual([...HANDLER_FILES.filter(f => f !== 'inference.py'), 'neuronx_common.py'].sort());
    const stack = new Stack(new App(), 'S', { env: ENV });
    TransformersNeuronxSageMakerInferenceModelData.fromBucket(new s3.Bucket(stack, 'B'), 'p/', { model: calm3(), tpDegree: 4 }).bind(stack, role(stack));
    const files = Object.values(Template.fromStack(stack).findResources('Custom::NeuronxInferenceCode'))[0].Properties.Files;
    expect(files.map((f: { Name: string }) => f.Name.replace(/^[0-9a-f]{16}\//, ''))).toEqual(expect.arrayContaining([...ours]));
  });

  test('a code directory without inference.py fails at synth', () => {
    const stack = new Stack(new App(), 'S', { env: ENV });
    const bucket = new s3.Bucket(stack, 'B');
    const dir = codeDir({ 'handler.py': '' });
    expect(() => TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'p/', { model: calm3(), tpDegree: 4, code: dir }).bind(stack, role(stack)))
      .toThrow(/code is '.*', which has no inference\.py: the SageMaker toolkit would not find a handler; add it or leave code unset/);
  });

  // TorchServe calls inference.py's handle itself (TS_DEFAULT_SERVICE_HANDLER): code written for the toolkit's
  // model_fn/predict_fn path would deploy and fail on the first request.
  test.each([
    ['only the toolkit functions', 'def model_fn(model_dir):\n    pass\n\ndef predict_fn(data, model):\n    pass\n'],
    ['handle as a method, not at the top level', 'class Handler:\n    def handle(self, data, context):\n        pass\n'],
    ['handle only in a comment', '# def handle(data, context) comes later\n'],
  ])('a code directory whose inference.py has %s fails at synth, saying what to add', (_, content) => {
    const stack = new Stack(new App(), 'S', { env: ENV });
    const bucket = new s3.Bucket(stack, 'B');
    const dir = codeDir({ 'inference.py': content });
    expect(() => TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'p/', { model: calm3(), tpDegree: 4, code: dir }).bind(stack, role(stack)))
      .toThrow(new RegExp(`^The inference code of 'S' cannot work:\n- code is '${dir}', whose inference\\.py defines no top-level 'def handle\\(data, context\\)': TorchServe calls its handle `
        + 'for every batch of requests \\(TS_DEFAULT_SERVICE_HANDLER=neuronx_code_<hash>:handle\\).*add it, e\\.g\\. starting from the library\'s runtime/inference/inference\\.py'));
  });

  test('a subdirectory and a missing entry are reported together', () => {
    const stack = new Stack(new App(), 'S', { env: ENV });
    const bucket = new s3.Bucket(stack, 'B');
    const dir = codeDir({ 'inference.py': 'def model_fn(model_dir):\n    pass\n' });
    fs.mkdirSync(path.join(dir, 'helpers'));
    expect(() => TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'p/', { model: calm3(), tpDegree: 4, code: dir }).bind(stack, role(stack)))
      .toThrow(/subdirectory 'helpers'.*\n- code is '.*', whose inference\.py defines no top-level 'def handle/);
  });
});

test('fromBucket checks the completion marker before the model is made: its code placer may read the marker object, and list only its key', () => {
  const stack = new Stack(new App(), 'S', { env: ENV });
  const bucket = new s3.Bucket(stack, 'B');
  TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'compiled/calm3', { model: calm3(), tpDegree: 4 }).bind(stack, role(stack));
  const template = Template.fromStack(stack);
  const MARKER = `compiled/calm3/${CONTRACT.layout.marker}`;
  const [placement] = Object.values(template.findResources('Custom::NeuronxInferenceCode'));
  expect(placement.Properties.MarkerKey).toBe(MARKER);
  const statements = statementsOfRole(template, logicalId(stack, stack.node.findChild('InferenceCode').node.findChild('FunctionRole')));
  const bucketArn = `\${${logicalId(stack, bucket)}.Arn}`;
  const reads = statementsAllowing(statements, 's3:GetObject').flatMap(resourcesOf);
  expect(reads).toContain(`${bucketArn}/${MARKER}`);
  expect(reads.filter(r => r.startsWith(bucketArn))).toEqual([`${bucketArn}/${MARKER}`]);
  const lists = statementsAllowing(statements, 's3:ListBucket');
  expect(lists.flatMap(resourcesOf)).toEqual([bucketArn]);
  expect(lists[0].Condition).toEqual({ StringEquals: { 's3:prefix': MARKER } });
});

test('fromBucket rejects a prefix that is empty or starts with /', () => {
  const stack = new Stack();
  const bucket = new s3.Bucket(stack, 'Artifacts');
  for (const prefix of ['', '/compiled/calm3/']) {
    expect(() => TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, prefix, { model: calm3(), tpDegree: 2 }))
      .toThrow(/TransformersNeuronxSageMakerInferenceModelData\.fromBucket: prefix '.*' must name a folder/);
  }
});

test('fromBucket with a token prefix (a CfnParameter) reads and places code under <prefix>/, not <prefix>*', () => {
  const stack = new Stack(new App(), 'S', { env: ENV });
  const bucket = new s3.Bucket(stack, 'B');
  const prefix = new CfnParameter(stack, 'CompiledPrefix', { type: 'String' }).valueAsString;
  const grantee = role(stack);
  const config = TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, prefix, { model: calm3(), tpDegree: 4 }).bind(stack, grantee);
  const bucketRef = `\${${logicalId(stack, bucket)}}`;
  expect(flatten(stack.resolve(config.s3Uri))).toBe(`s3://${bucketRef}/\${CompiledPrefix}/`);
  const template = Template.fromStack(stack);
  const reads = statementsAllowing(statementsOfRole(template, logicalId(stack, grantee)), 's3:GetObject').flatMap(resourcesOf);
  expect(reads).toEqual([`\${${logicalId(stack, bucket)}.Arn}/\${CompiledPrefix}/*`]);
  const placed = Object.values(template.findResources('Custom::NeuronxInferenceCode'))[0].Properties;
  expect(flatten(placed.DestinationPrefix)).toBe('${CompiledPrefix}/code/');
});

test('every optional prop of the public API says its @default (the API reference shows it)', () => {
  const srcDir = path.join(__dirname, '..', 'src');
  const missing: string[] = [];
  for (const name of fs.readdirSync(srcDir).filter(f => f.endsWith('.ts'))) {
    const file = path.join(srcDir, name);
    const source = ts.createSourceFile(file, fs.readFileSync(file, 'utf-8'), ts.ScriptTarget.Latest, true);
    for (const statement of source.statements) {
      if (!ts.isInterfaceDeclaration(statement)) continue;
      if (!statement.modifiers?.some(m => m.kind === ts.SyntaxKind.ExportKeyword)) continue;
      for (const member of statement.members) {
        if (ts.isPropertySignature(member) && member.questionToken
          && !ts.getJSDocTags(member).some(tag => tag.tagName.text === 'default')) {
          missing.push(`${name}: ${statement.name.text}.${member.name.getText(source)}`);
        }
      }
    }
  }
  expect(missing).toEqual([]);
});

describe('one prefix, many codes: each code has a folder of its own under the shared code/', () => {
  test('two model data of one compile with different code directories place them in two folders, and their models name each its own', () => {
    const { stack, compile } = compileFixture();
    const dir = codeDir({ 'inference.py': handler('mine') });
    const first = TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(compile).bind(new Construct(stack, 'First'), role(stack, 'R1'));
    const second = TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(compile, dir).bind(new Construct(stack, 'Second'), role(stack, 'R2'));
    expect(first.codeHash).not.toEqual(second.codeHash);
    const placements = Object.values(Template.fromStack(stack).findResources('Custom::NeuronxInferenceCode')).map(r => r.Properties);
    expect(placements).toHaveLength(2);
    const keys = placements.map(p => new Set(p.Files.map((f: { Name: string }) => f.Name)));
    // No key is placed by both: neither overwrites the other.
    expect([...keys[0]].filter(k => keys[1].has(k))).toEqual([]);
    expect(placements.map(p => p.Files[0].Name.split('/')[0])).toEqual([first.codeHash, second.codeHash]);
  });

  test('the same code for both is placed at the same keys, and each gets its placement', () => {
    const { stack, compile } = compileFixture();
    const hashes = ['First', 'Second'].map(id =>
      TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(compile).bind(new Construct(stack, id), role(stack, `${id}Role`)).codeHash);
    expect(hashes[0]).toEqual(hashes[1]);
    expect(Object.keys(Template.fromStack(stack).findResources('Custom::NeuronxInferenceCode'))).toHaveLength(2);
  });
});

describe('the compile options carried whole (issue 22)', () => {
  test('a compile exposes its options resolved, and its model data hands them to the endpoint whole', () => {
    const { stack, compile } = compileFixture();
    // toMatchObject: an option added later with a contract default is in them too.
    expect(compile.compileOptions).toMatchObject({
      tpDegree: compile.tpDegree,
      nPositions: compile.nPositions,
      quantDtype: compile.quantDtype,
      batchSize: compile.batchSize,
      optLevel: compile.optLevel,
      continuousBatching: compile.continuousBatching,
    });
    const config = TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(compile).bind(stack, role(stack));
    expect(config.compileOptions).toEqual(compile.compileOptions);
    expect([config.tpDegree, config.nPositions, config.batchSize, config.quantDtype, config.continuousBatching])
      .toEqual([compile.tpDegree, compile.nPositions, compile.batchSize, compile.quantDtype, compile.continuousBatching]);
  });

  test('fromBucket takes a compile\'s options whole, and gives the same config as the separate fields', () => {
    const { stack, compile, bucket } = compileFixture();
    const whole = TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'a/', { model: calm3(), compileOptions: compile.compileOptions })
      .bind(new Construct(stack, 'Whole'), role(stack, 'R1'));
    const fields = TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'a/', {
      model: calm3(),
      tpDegree: compile.tpDegree,
      nPositions: compile.nPositions,
      quantDtype: compile.quantDtype,
      batchSize: compile.batchSize,
      continuousBatching: compile.continuousBatching,
    }).bind(new Construct(stack, 'Fields'), role(stack, 'R2'));
    const { dependencies: _w, ...wholeRest } = whole;
    const { dependencies: _f, compileOptions, ...fieldsRest } = fields;
    expect(wholeRest).toEqual({ ...fieldsRest, compileOptions: compile.compileOptions });
    // What fromBucket knows from the fields: the options the endpoint serves with.
    expect(compileOptions).toEqual({
      tpDegree: compile.tpDegree,
      nPositions: compile.nPositions,
      quantDtype: compile.quantDtype,
      batchSize: compile.batchSize,
      continuousBatching: compile.continuousBatching,
    });
  });

  test('a separate field given with the options takes precedence; without any tpDegree fromBucket refuses', () => {
    const { stack, bucket } = compileFixture();
    const config = TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'a/', { model: calm3(), tpDegree: 4, compileOptions: { tpDegree: 2, nPositions: 2048 } })
      .bind(stack, role(stack));
    expect([config.tpDegree, config.nPositions, config.compileOptions?.tpDegree]).toEqual([4, 2048, 4]);
    expect(() => TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'a/', { model: calm3(), compileOptions: { nPositions: 2048 } }))
      .toThrow(/give tpDegree, or compileOptions with tpDegree/);
  });
});
