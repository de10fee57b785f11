// Which Lambda runtime the library's handler functions get, on whichever aws-cdk-lib is loaded: the packages' own
// floor (2.245.0) in their unit runs, the newest pinned in tools/compat in test:compat. What each version's region
// facts say was read from the installed packages (aws-lambda/lib/runtime.js, region-info built-ins) and is recorded
// in KNOWN below, so that a new aws-cdk-lib in tools/compat makes this file say what changed.
import * as fs from 'fs';
import * as path from 'path';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Fact, FactName } from 'aws-cdk-lib/region-info';
import { compileFixture, ENV } from './fixtures';
import { handlerRuntime, OLDEST_HANDLER_RUNTIME } from '../src/private/handler-function';

const CDK_VERSION = (lambda.Runtime as unknown as Record<symbol, { version: string }>)[Symbol.for('jsii.rtti')].version;

/**
 * Per aws-cdk-lib version: what `determineLatestNodeRuntime(scope)` returns in us-east-1 (a module function of
 * aws-lambda in both, not a static of Runtime), the newest Node.js runtime `Runtime.ALL` lists (what cdk-nag's
 * AwsSolutions-L1 compares with), and what the handlers get.
 */
const KNOWN: Record<string, { determineLatest: string; newestListed: string; handlers: string }> = {
  // The floor: the region facts say nodejs22.x in every region, older than the nodejs24.x it already knows.
  '2.245.0': { determineLatest: 'nodejs22.x', newestListed: 'nodejs24.x', handlers: 'nodejs24.x' },
  // The newest (tools/compat): nodejs26.x is listed, but the region facts give no region more than nodejs24.x.
  '2.278.0': { determineLatest: 'nodejs24.x', newestListed: 'nodejs26.x', handlers: 'nodejs24.x' },
};

const nodeMajor = (name: string) => Number(/^nodejs(\d+)/.exec(name)?.[1] ?? 0);
const newestListed = () => lambda.Runtime.ALL.filter(r => r.family === lambda.RuntimeFamily.NODEJS)
  .map(r => r.name).reduce((a, b) => (nodeMajor(b) > nodeMajor(a) ? b : a));

describe(`handler runtime on aws-cdk-lib ${CDK_VERSION}`, () => {
  const known = KNOWN[CDK_VERSION];

  test('the aws-cdk-lib under test is one whose facts are recorded here', () => {
    expect(Object.keys(KNOWN)).toContain(CDK_VERSION);
  });

  test('what determineLatestNodeRuntime and Runtime.ALL say is what was recorded', () => {
    const determine = (lambda as unknown as { determineLatestNodeRuntime: (s: Stack) => lambda.Runtime }).determineLatestNodeRuntime;
    expect(determine(new Stack(new App(), 'S', { env: ENV })).name).toBe(known.determineLatest);
    expect(newestListed()).toBe(known.newestListed);
  });

  test('the compile\'s lifecycle function runs on the recorded runtime, never older than the bundle\'s target', () => {
    const { compile, stack } = compileFixture();
    const template = Template.fromStack(stack);
    const fn = compile.node.findChild('LifecycleFunction') as lambda.CfnFunction;
    expect(template.findResources('AWS::Lambda::Function')[stack.getLogicalId(fn)].Properties.Runtime).toBe(known.handlers);
    expect(nodeMajor(known.handlers)).toBeGreaterThanOrEqual(nodeMajor(OLDEST_HANDLER_RUNTIME));
  });

  test('AwsSolutions-L1 is acknowledged on that one function exactly when it is not on the newest listed runtime, with the reason', () => {
    const template = Template.fromStack(compileFixture().stack);
    const suppressed = Object.entries(template.toJSON().Resources as Record<string, { Type: string; Metadata?: any }>)
      .filter(([, r]) => (r.Metadata?.cdk_nag?.rules_to_suppress ?? []).some((s: { id: string }) => s.id === 'AwsSolutions-L1'));
    if (known.handlers === known.newestListed) {
      expect(suppressed).toEqual([]);
    } else {
      expect(suppressed.map(([, r]) => r.Type)).toEqual(['AWS::Lambda::Function']);
      const reason = suppressed[0][1].Metadata.cdk_nag.rules_to_suppress.find((s: { id: string }) => s.id === 'AwsSolutions-L1').reason;
      expect(reason).toContain(`${known.handlers} is the newest Node.js runtime`);
      expect(reason).toContain('region us-east-1');
      expect(reason).toContain(`${known.newestListed}, the newest this aws-cdk-lib lists`);
    }
  });

  test('an environment-agnostic stack gets one literal runtime, not a region mapping', () => {
    const stack = new Stack(new App(), 'Agnostic');
    expect(handlerRuntime(stack).name).toBe(known.handlers);
    expect(handlerRuntime(stack).notNewestReason ?? '').not.toContain('region us-');
  });

  test('the handler bundle is built for the oldest runtime the functions get (esbuild target), so it runs on every one', () => {
    const tasks = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '.projen', 'tasks.json'), 'utf8'));
    const targets = JSON.stringify(tasks).match(/--target=node\d+/g) ?? [];
    expect(targets.length).toBeGreaterThan(0);
    expect([...new Set(targets)]).toEqual([`--target=node${nodeMajor(OLDEST_HANDLER_RUNTIME)}`]);
  });
});

// Last in this file: these register runtimes and facts that a later aws-cdk-lib would bring, and Runtime.ALL keeps
// every Runtime ever constructed.
describe('on an aws-cdk-lib that lists a newer runtime than the bundle\'s target', () => {
  const future = `nodejs${Math.max(nodeMajor(newestListed()), nodeMajor(OLDEST_HANDLER_RUNTIME)) + 2}.x`;
  const stackIn = (region: string) => new Stack(new App(), 'S', { env: { region } });

  beforeAll(() => {
    new lambda.Runtime(future, lambda.RuntimeFamily.NODEJS);
    Fact.register({ region: 'test-future-1', name: FactName.LATEST_NODE_RUNTIME, value: future }, true);
    Fact.register({ region: 'test-past-1', name: FactName.LATEST_NODE_RUNTIME, value: 'nodejs20.x' }, true);
  });

  test('a region whose facts list it gets it, and there is nothing to acknowledge', () => {
    expect(handlerRuntime(stackIn('test-future-1'))).toEqual({ name: future });
  });

  test('a region whose facts list an older one gets the newest it has, never older than the target, with the reason', () => {
    const runtime = handlerRuntime(stackIn('test-past-1'));
    expect(runtime.name).toBe(OLDEST_HANDLER_RUNTIME);
    expect(runtime.notNewestReason).toMatch(new RegExp(`^${OLDEST_HANDLER_RUNTIME} is the newest .* region test-past-1; ${future}, the newest this aws-cdk-lib lists`));
  });

  test('an environment-agnostic stack gets the newest every region has', () => {
    const runtime = handlerRuntime(new Stack(new App(), 'Agnostic'));
    expect(runtime.name).toBe(OLDEST_HANDLER_RUNTIME);
    expect(runtime.notNewestReason).toContain('every region (the stack\'s region is not known at synth)');
  });
});
