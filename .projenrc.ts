import { awscdk, javascript } from 'projen';

// aws-cdk-lib floor: the newest release for which @aws-cdk/integ-tests-alpha is published
// (the alpha is not released for every aws-cdk-lib version), so integ tests pin the same version.
const CDK_VERSION = '2.245.0';
const INTEG_TESTS_ALPHA_VERSION = `${CDK_VERSION}-alpha.0`;
const CONSTRUCTS_VERSION = '10.5.1';
// jsii 6.0 is the line the design card was tried with; `~` keeps us on that minor (jsii is not semver).
const JSII_VERSION = '~6.0.16';
const TYPESCRIPT_VERSION = '~5.9.3';
// Both packages are released together at one version; the models package depends on exactly it.
const VERSION = '0.1.0';

const PATTERNS_NAME = 'aws-cdk-neuronx-patterns';
const PATTERNS_DIR = `packages/${PATTERNS_NAME}`;

/** Options that must be the same in both jsii packages (pacmak fails when targets differ). */
function commonOptions(kind: 'models' | 'patterns') {
  const name = `aws-cdk-neuronx-${kind}`;
  const pascal = kind === 'models' ? 'Models' : 'Patterns';
  return {
    name,
    author: 'aws-cdk-neuronx contributors',
    authorAddress: 'https://github.com/aws-cdk-neuronx',
    repositoryUrl: 'https://github.com/aws-cdk-neuronx/aws-cdk-neuronx-models.git',
    license: 'Apache-2.0',
    defaultReleaseBranch: 'main',
    cdkVersion: CDK_VERSION,
    constructsVersion: CONSTRUCTS_VERSION,
    jsiiVersion: JSII_VERSION,
    typescriptVersion: TYPESCRIPT_VERSION,
    projenrcTs: kind === 'models',
    packageManager: javascript.NodePackageManager.NPM,
    minNodeVersion: '20.0.0',
    github: false,
    release: false,
    depsUpgrade: false,
    pullRequestTemplate: false,
    sampleCode: false,
    keywords: ['aws-cdk', 'cdk', 'sagemaker', 'inferentia2', 'trainium', 'neuron', 'llm'],
    publishToPypi: { distName: name, module: name.replace(/-/g, '_') },
    publishToMaven: {
      javaPackage: `io.github.awscdkneuronx.${kind}`,
      mavenGroupId: 'io.github.aws-cdk-neuronx',
      mavenArtifactId: name,
    },
    publishToNuget: { dotNetNamespace: `AwsCdkNeuronx.${pascal}`, packageId: `AwsCdkNeuronx.${pascal}` },
    // Source maps: see the package ignores below.
    tsconfig: { compilerOptions: { resolveJsonModule: true, sourceMap: true, inlineSourceMap: false, inlineSources: true } },
    // Snapshots are assertions: CI must fail on a changed template, never rewrite it. No coverage in the build: nothing
    // reads the report and collecting it doubled the jest time (`npx jest --coverage` when you want one).
    jestOptions: { updateSnapshot: javascript.UpdateSnapshot.NEVER, jestConfig: { collectCoverage: false } },
  };
}

const project = new awscdk.AwsCdkConstructLibrary({
  ...commonOptions('models'),
  description: 'AWS CDK constructs that put open LLMs on SageMaker real-time endpoints on AWS Inferentia2 and Trainium.',
  peerDeps: [`${PATTERNS_NAME}@${VERSION}`],
  devDeps: [
    `${PATTERNS_NAME}@${VERSION}`,
    `@aws-cdk/integ-tests-alpha@${INTEG_TESTS_ALPHA_VERSION}`,
    'cdk-nag@2.37.55',
    // Bundles the patterns package's Lambda handlers. Declared here, at the workspace root that installs
    // everything: declared in the sub-project, projen cannot resolve it there (its install is a no-op) and drops it.
    'esbuild@0.25.9',
    // integ-runner verifies the committed integ snapshots (snapshot mode needs no AWS account).
    '@aws-cdk/integ-runner@2.197.10',
    // The CLI that synthesizes the example apps: aws-cdk-lib 2.245's cloud assembly schema needs 2.1125 or later.
    'aws-cdk@2.1148.1',
    // check:imports: the circular-import check over both packages' sources.
    'dpdm@4.3.0',
  ],
  gitignore: [
    '/examples/**/cdk.out', '/cdk.out', '.venv', '.venv.lock', '__pycache__', '.pytest_cache', 'target/',
    // build-tools/background.sh: the background steps' output and status.
    '/.build/',
    // integ-runner copies every staged asset into the snapshot; the templates carry their content hashes, so
    // verification needs only the templates (a changed asset still shows as CHANGED) and the copies stay out of git.
    '**/*.snapshot/asset.*',
  ],
});
project.package.addVersion(VERSION);
project.package.addField('workspaces', [PATTERNS_DIR]);
// The published package is the library: not its examples, build tools or CI.
for (const p of ['/examples/', '/tools/', '/build-tools/', '/.ci/', '/docs/', '/.venv/', '/packages/']) project.addPackageIgnore(p);

const patterns = new awscdk.AwsCdkConstructLibrary({
  ...commonOptions('patterns'),
  parent: project,
  outdir: PATTERNS_DIR,
  description: 'AWS CDK patterns that compile LLMs with transformers-neuronx on AWS Batch and serve them on SageMaker.',
  devDeps: [
    `@aws-cdk/integ-tests-alpha@${INTEG_TESTS_ALPHA_VERSION}`,
    'cdk-nag@2.37.55',
    'aws-sdk-client-mock@^4.1.0',
    '@aws-sdk/client-batch@^3.700.0',
    '@aws-sdk/client-s3@^3.700.0',
    // The job-state handler reads the wait handle's URL from CloudFormation (DescribeStackResource) at signal time.
    '@aws-sdk/client-cloudformation@^3.700.0',
    '@types/aws-lambda@^8.10.145',
  ],
  // The handlers are bundled here and deployed by src/private/handler-function.ts, which stages their code
  // without projen's generated Function classes (their Code.fromAsset loads aws-cdk-lib's region facts, the
  // largest single cost of synthesizing these constructs).
  lambdaAutoDiscover: false,
});
// All code that runs in Lambda is in src/handlers/. It imports the AWS SDK, which the Lambda runtime provides: a
// devDependency of the package.
patterns.eslint?.allowDevDeps('src/handlers/**');
// One bundle for all handlers (src/handlers/index.ts, written to assets/handlers/index/): one asset to stage and
// upload.
patterns.bundler.addBundle('src/handlers/index.ts', {
  platform: 'node',
  // The oldest runtime the functions get (OLDEST_HANDLER_RUNTIME in src/private/handler-function.ts, which picks
  // the newest the stack's region has): a bundle for Node.js 24 runs on 24 and every later runtime.
  target: 'node24',
  externals: ['@aws-sdk/*'],
});
// The compile job's program as one zip (build-tools/compile-code-zip.js says why), built with the handler bundle.
patterns.bundler.bundleTask.exec('node build-tools/compile-code-zip.js', { name: 'compile job program (assets/compile-code.zip)' });
// The handler bundle as the zip Lambda deploys (build-tools/handlers-zip.js says why), after the bundle.
patterns.bundler.bundleTask.exec('node build-tools/handlers-zip.js', { name: 'Lambda handlers (assets/handlers.zip)' });
patterns.package.addVersion(VERSION);
// The package is the constructs, the Lambda bundles and the programs that run in AWS: not their tests or tools.
for (const p of ['/benchmark/', '/build-tools/', '/runtime/tests/', '/runtime/pytest.ini', '/runtime/requirements-test.txt']) patterns.addPackageIgnore(p);
// The workspace root installs everything once; a nested `npm install` here would fork node_modules.
for (const t of ['install', 'install:ci']) {
  patterns.tasks.tryFind(t)?.reset('echo "installed by the workspace root"');
}

// Source maps in .js.map files beside the JavaScript (sources included), not inline: jsii's default inlines them,
// which tripled the size of lib/ that every `cdk synth` reads and parses (about 10 ms of the patterns package's
// load). Node reads the files only when asked to (--enable-source-maps).
// (compilerOptions in commonOptions).
for (const p of [project, patterns]) p.addPackageIgnore('!/lib/**/*.js.map');

// In the sub-package jsii-docgen cannot find the assemblies the workspace hoists to the root;
// build-tools/docgen.js points it there. (The root package's own jsii-docgen finds everything.)
patterns.tasks.tryFind('docgen')!.reset('node ../../build-tools/docgen.js .');

// Python: one virtualenv at the root for everything Python the build runs (the runtime programs' tests,
// the template linters, the Python bindings check), with pinned requirements.
const PYTHON_REQUIREMENTS = [
  `${PATTERNS_DIR}/runtime/requirements-test.txt`,
];
const setupPython = project.addTask('setup:python', {
  description: 'Create the virtualenvs and install the pinned Python requirements',
  steps: [
    { exec: 'python3 -m venv .venv' }, // idempotent: an existing venv is kept
    { exec: `.venv/bin/python -m pip install --quiet --disable-pip-version-check ${PYTHON_REQUIREMENTS.map(r => `-r ${r}`).join(' ')}` },
    // The template checkers have a venv of their own: checkov pins a boto3 the runtime tests cannot share.
    { exec: 'bash tools/template-checks/setup.sh' },
    // The model-server test has one too: the serving image's Python (3.10) and versions (tools/model-server), about
    // 5 GB, mostly a download: installed in the background while the packages build (build-tools/background.sh); the
    // model-server test waits for it.
    { exec: 'bash build-tools/background.sh start model-server-env bash tools/model-server/setup.sh', name: 'the model server\'s environment (in the background)' },
  ],
});
patterns.testTask.exec('../../.venv/bin/python -m pytest runtime -q -p no:cacheprovider', { name: 'runtime tests (pytest)' });

patterns.addTask('benchmark', {
  description: 'Synthesis time and memory of NeuronxCompile + endpoint against the same stack without them',
  exec: 'node benchmark/synth-benchmark.js',
  receiveArgs: true,
});

// Integration tests: the committed snapshots must match what the integ apps synthesize now.
const INTEG = 'integ-runner --directory test --parallel-regions us-east-1';
for (const p of [project, patterns]) {
  p.addTask('integ:update', {
    description: 'Synthesize the integ apps and update their snapshots',
    env: { AWS_REGION: 'us-east-1' }, // without it integ-runner waits ~8 s on instance metadata
    // --dry-run: synthesize and write snapshots only. Without it integ-runner deploys the tests it updates.
    exec: `${INTEG} --update-on-failed --force --dry-run`,
  });
  p.testTask.spawn(p.addTask('integ:verify', {
    description: 'Fail when an integ app no longer synthesizes its committed snapshot',
    env: { AWS_REGION: 'us-east-1' },
    exec: INTEG,
  }));
}

// The construct tests of both packages against the newest aws-cdk-lib as well as the floor (the packages' own test
// runs, at CDK_VERSION), and the library's resources under cdk-nag 3, which reads aws-cdk-lib's Validations (2.257
// and later) instead of the cdk_nag metadata. tools/compat pins the versions in its lock file; tools/compat/jest.config.js
// says how every import is mapped to them. After the compile: the root tests load the patterns package's lib/.
const testCompat = project.addTask('test:compat', {
  description: 'Construct tests against the newest aws-cdk-lib pinned in tools/compat, with cdk-nag 2 and 3',
  steps: [
    { exec: 'npm ci --prefix tools/compat --no-audit --no-fund --ignore-scripts', name: 'the pinned aws-cdk-lib, constructs and cdk-nag 2 and 3' },
    { exec: 'jest --config tools/compat/jest.config.js --ci' },
  ],
});

// The example app (both presets) and every integ snapshot must pass cfn-lint, checkov and cdk-nag with no finding
// outside tools/template-checks/allowlist.yaml; the gates' own tests prove each gate fails on a bad template.
const EXAMPLE_OUT = 'examples/typescript/cdk.out';
const synthExample = project.addTask('synth:example', {
  description: 'Synthesize the example app for both presets (no AWS account needed)',
  cwd: 'examples/typescript',
  steps: [
    { exec: 'cdk synth -q -o cdk.out/lowCost -c preset=lowCost' },
    { exec: 'cdk synth -q -o cdk.out/highPerformance -c preset=highPerformance' },
  ],
});
// The gates over the templates synth:example wrote (the test task synthesizes once, first, for these gates and the
// model-server test alike); check:templates synthesizes and runs them.
const templateGates = project.addTask('check:template-gates', {
  description: 'cfn-lint, checkov and cdk-nag over the example templates synth:example wrote and the integ snapshots',
  steps: [
    { exec: 'tools/template-checks/.venv/bin/python -m pytest tools/template-checks -q -p no:cacheprovider', name: 'the gates fail on bad templates' },
    // The integ test's Lambda check of a deployed endpoint (a full batch, a streamed answer), on a stand-in runtime client.
    { exec: 'tools/template-checks/.venv/bin/python -m pytest test/integ-serving-check -q -p no:cacheprovider', name: 'the integ endpoint check fails on bad answers' },
    { exec: `tools/template-checks/run.sh --require-nag-report ${EXAMPLE_OUT}/lowCost ${EXAMPLE_OUT}/highPerformance` },
    { exec: `tools/template-checks/run.sh test/integ.calm3chat22b.ts.snapshot ${PATTERNS_DIR}/test/integ.endpoint.ts.snapshot ${PATTERNS_DIR}/test/integ.neuronx-compile.ts.snapshot` },
  ],
});
project.addTask('check:templates', {
  description: 'Synthesize the example, then cfn-lint, checkov and cdk-nag over the example and integ templates',
  steps: [{ spawn: synthExample.name }, { spawn: templateGates.name }],
});

// Updates CloudFormation accepts: pairs of apps that differ as real updates do (each compile and endpoint prop, the
// bucket, the artifact root, the preset, the revision), checked against the resource schemas cfn-lint ships: no
// create-only change under a fixed name, no change to a WaitCondition, a new wait for new artifacts, pinned launch
// template versions. The checker's own tests prove it catches each fault on a hand-made pair.
const checkUpdates = project.addTask('check:updates', {
  description: 'Synthesize pairs of apps that differ as updates do and check each against CloudFormation\'s resource schemas',
  steps: [
    { exec: 'tools/template-checks/.venv/bin/python -m pytest tools/update-checks -q -p no:cacheprovider', name: 'the update check fails on bad pairs' },
    { exec: 'tools/update-checks/run.sh' },
  ],
});

// The example's endpoint served for real on this machine: TorchServe and the SageMaker toolkit at the serving image's
// versions, started as the image starts them, with the container environment read from the templates that
// synth:example writes and only the Neuron device faked (tools/model-server/README.md). setup.sh waits for the
// environment if the build is still installing it.
const testModelServer = project.addTask('test:model-server', {
  description: 'The example endpoint on the serving image\'s TorchServe and SageMaker toolkit, with a fake Neuron device',
  steps: [
    { exec: 'bash tools/model-server/setup.sh' },
    // The third endpoint served: a custom strategy of three workers that batch statically (both presets batch
    // continuously on one worker). Type-checked as the example app is (a few seconds, beside the jest run).
    {
      exec: `cdk synth -q --app "npx ts-node tools/model-server/static-batching-app.ts" -o ${EXAMPLE_OUT}/staticBatching`,
      name: 'the static-batching endpoint\'s template',
    },
    { exec: 'tools/model-server/.venv/bin/python -m pytest tools/model-server -q' },
  ],
});

// The root test task. The model-server test spends most of its time waiting on the simulated device, so it runs in the
// background (build-tools/background.sh) from the moment the example's templates exist until the task's last step,
// while the suites that need the two cores run.
const projenSteps = project.testTask.steps; // jest, eslint, integ:verify
project.testTask.reset();
project.testTask.spawn(synthExample); // first: the model-server test serves what it writes
project.testTask.exec(`bash build-tools/background.sh start model-server npx projen ${testModelServer.name}`, { name: 'the model-server test (in the background)' });
project.testTask.addSteps(...projenSteps);
project.testTask.spawn(testCompat);
project.testTask.spawn(templateGates);
project.testTask.spawn(checkUpdates);
project.testTask.exec('bash build-tools/background.sh wait model-server', { name: 'the model-server test\'s result' });

// The inner loop: the unit suites of both packages and the runtime's tests, after compiling the patterns package (the
// root tests load its lib/); the templates' gates, the compat run, the model server and the bindings are the build's.
// Needs the environments of one `npx projen build` (or `npx projen setup:python`).
project.addTask('test:fast', {
  description: 'Unit tests of both packages and the runtime\'s pytest: the inner loop (about 2 minutes)',
  steps: [
    { exec: 'npx projen pre-compile && npx projen compile', cwd: PATTERNS_DIR, name: 'the patterns package (bundles and jsii)' },
    { exec: 'jest --passWithNoTests --ci', cwd: PATTERNS_DIR },
    { exec: '.venv/bin/python -m pytest packages/aws-cdk-neuronx-patterns/runtime -q -p no:cacheprovider', name: 'runtime tests (pytest)' },
    { exec: 'jest --passWithNoTests --ci' },
  ],
});

// Batch 1 against batched serving on the same stack and fake device (tools/model-server/benchmark_serving.py): about
// 10 minutes with the synth, so not part of test; its last line is one JSON object. Arguments go to the benchmark
// (e.g. `-- --preset highPerformance --batch-size 5 --n-positions 2048` for a custom strategy).
project.addTask('benchmark:serving', {
  description: 'Serving benchmark on the model-server stack (simulated device): batch 1 vs batched, both presets',
  steps: [
    { spawn: synthExample.name },
    { exec: 'tools/model-server/.venv/bin/python tools/model-server/benchmark_serving.py', receiveArgs: true },
  ],
});

// Issue 21's load test (tools/model-server/load_test.py): each preset at its capacity (workers x slots) and at three
// times it for 5 simulated minutes on the model-server stack; about 8 minutes with the synth, so not part of test (the
// model-server suite has a short version, test_load.py). Its last line is one JSON object; it fails when a check does.
project.addTask('test:load', {
  description: 'Load test on the model-server stack (simulated device): capacity and 3x capacity, both presets',
  steps: [
    { spawn: synthExample.name },
    { exec: 'tools/model-server/.venv/bin/python tools/model-server/load_test.py', receiveArgs: true },
  ],
});

// Packaging is the same in CI and locally. The npm package of each is made by its own build; the Python wheels
// and Java jars of both are made here, in one jsii-pacmak call with the patterns package first (pacmak only links
// the patterns jar into the models' Maven build when it builds both). .NET is generated only: this machine has no
// .NET SDK to compile it, and the generated code stays in dist/, out of git.
for (const p of [project, patterns]) {
  p.packageTask.reset();
  p.packageTask.spawn(p.tasks.tryFind('package:js')!);
}
const PACMAK = `jsii-pacmak ${PATTERNS_DIR} . -v --no-parallel`;
project.tasks.tryFind('package:python')!.reset(`${PACMAK} --targets python`);
project.tasks.tryFind('package:java')!.reset(`${PACMAK} --targets java`);
project.tasks.tryFind('package:dotnet')!.reset(`${PACMAK} --code-only --targets dotnet`);
const packageBindings = project.addTask('package:bindings', {
  description: 'Python wheels and Java jars of both packages; .NET code generated, not compiled',
  steps: [
    { exec: `${PACMAK} --targets python java` },
    { spawn: 'package:dotnet' },
  ],
});
project.packageTask.spawn(packageBindings);

// The bindings as a Python or Java user meets them: the freshly built wheels and jars installed into a Python
// venv and Maven, the examples synthesized in TypeScript, Python and Java for both presets and a custom strategy,
// and their templates compared. The last step of packaging (projen locks the build task), on what was packaged.
const testBindings = project.addTask('test:bindings', {
  description: 'Install the built wheels and jars and compare the Python and Java examples\' templates with TypeScript',
  exec: 'bash tools/bindings/check.sh --skip-package',
});
project.packageTask.spawn(testBindings);

// Imports run one way (a construct imports its private helpers; a helper never imports the construct that calls it):
// no circle among the sources of either package, type-only imports included (no -T). After the compile, in every build.
const checkImports = project.addTask('check:imports', {
  description: 'Fail on any circular import in src/ of either package (type-only imports count)',
  exec: `dpdm --no-warning --no-tree --no-progress --exit-code circular:1 'src/**/*.ts' '${PATTERNS_DIR}/src/**/*.ts'`,
});
project.postCompileTask.spawn(checkImports);

// Build the patterns package (compile, test, docs, package) before the models package compiles against it,
// with the Python environment its tests need.
project.preCompileTask.spawn(setupPython);
project.preCompileTask.exec('npx projen build', { cwd: PATTERNS_DIR });

// README snippets (test/readme-snippets.test.ts type-checks every TypeScript snippet of README.md as a `cdk init`
// app would): the calling code imports the SageMaker runtime client, as the reader's own app would install it.
project.addDevDeps('@aws-sdk/client-sagemaker-runtime@^3.700.0');

project.synth();
