// The library's resources under cdk-nag 3.x, which runs as an aws-cdk-lib validation plugin and reads only the
// acknowledgements of aws-cdk-lib's Validations (aws-cdk-lib 2.257 and later), never the `cdk_nag` metadata that
// cdk-nag 2.x reads (cdk-nag 3.0.2 README, "Migrating from v2"). Run by test:compat (jest.config.js).
import * as fs from 'fs';
import * as path from 'path';
import { App, CfnResource, Stack, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import { IConstruct } from 'constructs';
import {
  NeuronxInstanceType, QuantDtype, TransformersNeuronxSageMakerInferenceModelData,
  TransformersNeuronxSageMakerRealtimeInferenceEndpoint,
} from '../../../packages/aws-cdk-neuronx-patterns/src';
import {
  calm3, compileFixture, endpointFixture, ENV, HIGH_PERFORMANCE_PROPS, kmsEndpointFixture, network,
} from '../../../packages/aws-cdk-neuronx-patterns/test/fixtures';
import { calm3chat22b } from '../../../src';

/** One AwsSolutions finding that nothing acknowledged: the rule id (`AwsSolutions-IAM5[<finding>]`) and the resource. */
interface Finding {
  readonly rule: string;
  readonly path: string;
}

/**
 * Registers the AwsSolutions pack the way cdk-nag 3 documents (Validations.of(app).addPlugins), synthesizes, and
 * returns what the validation report lists for it. Synth fails on error findings: that failure is expected here and
 * the report it writes is what is read.
 */
function nagFindings(app: App): Finding[] {
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return reportedFindings(app, 'AwsSolutions');
}

/** Synthesizes `app` and returns the findings its validation report lists for one plugin. */
function reportedFindings(app: App, pluginName: string): Finding[] {
  try {
    app.synth();
  } catch (e) {
    if (!String(e).startsWith('ValidationFailed')) throw e;
  }
  const reportFile = path.join(app.outdir, 'validation-report.json');
  const report = JSON.parse(fs.readFileSync(reportFile, 'utf8')) as {
    pluginReports: Array<{ pluginName: string; violations: Array<{ ruleName: string; violatingConstructs: Array<{ constructPath: string }> }> }>;
  };
  return report.pluginReports.filter(r => r.pluginName === pluginName)
    .flatMap(r => r.violations)
    .flatMap(v => v.violatingConstructs.map(c => ({ rule: v.ruleName, path: c.constructPath })));
}

const appOf = (stack: Stack) => stack.node.root as App;

describe('cdk-nag 3 AwsSolutions, with aws-cdk-lib Validations', () => {
  test('the checks run (a non-compliant bucket is reported), so an empty result means compliance', () => {
    const stack = new Stack(new App(), 'Control', { env: ENV });
    new s3.Bucket(stack, 'Plain');
    expect(nagFindings(appOf(stack))).toEqual(expect.arrayContaining([
      { rule: 'AwsSolutions-S1', path: 'Control/Plain/Resource' },
      { rule: 'AwsSolutions-S10', path: 'Control/Plain/Resource' },
    ]));
  });

  test('a NeuronxCompile stack has no unacknowledged finding', () => {
    expect(nagFindings(compileFixture().app)).toEqual([]);
  });

  test('a NeuronxCompile on Spot for inf2 serving has no unacknowledged finding', () => {
    expect(nagFindings(compileFixture({ props: { ...HIGH_PERFORMANCE_PROPS, spot: true } }).app)).toEqual([]);
  });

  test('an endpoint stack (compile + trn1 endpoint) has no unacknowledged finding', () => {
    expect(nagFindings(endpointFixture().app)).toEqual([]);
  });

  test('an endpoint stack on inf2 (with a storage volume) has no unacknowledged finding', () => {
    expect(nagFindings(endpointFixture({ props: HIGH_PERFORMANCE_PROPS }).app)).toEqual([]);
  });

  test('an endpoint on KMS-encrypted artifacts already in S3, with a volume key, environment-agnostic, has none', () => {
    const { stack } = kmsEndpointFixture();
    expect(nagFindings(appOf(stack))).toEqual([]);
  });

  // A finding id names the user's S3 prefix; aws-cdk-lib's acknowledge() rejects unbalanced brackets in an id and
  // turns spaces into '-', so these are acknowledged another way (src/private/nag.ts), not left to fail synth.
  test.each(['compiled/calm3 (v1)/', 'compiled/a(b/', 'compiled/a]b/'])('artifacts under the S3 prefix %j: no finding, synth works', prefix => {
    const stack = new Stack(new App(), 'Prefix', { env: ENV });
    const { bucket } = network(stack);
    new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(stack, 'Endpoint', {
      modelData: TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, prefix, {
        model: calm3(), tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8,
      }),
      instanceType: NeuronxInstanceType.TRN1_2XLARGE,
    });
    expect(nagFindings(appOf(stack))).toEqual([]);
  });

  test.each([
    ['lowCost', calm3chat22b.InstanceTypeStrategy.lowCost],
    ['highPerformance', calm3chat22b.InstanceTypeStrategy.highPerformance],
  ])('calm3chat22b.SageMakerRealtimeInference (%s) has no unacknowledged finding of its own', (_, instanceTypeStrategy) => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    new calm3chat22b.SageMakerRealtimeInference(stack, 'Calm3', {
      bucket: new s3.Bucket(stack, 'Bucket'),
      compileVpc: new ec2.Vpc(stack, 'Vpc'),
      instanceTypeStrategy,
    });
    // The test's own bucket and VPC are not compliant: only the construct's findings count. The construct comes from
    // the patterns package's compiled lib/, which is acknowledged under cdk-nag 3 only if it too loaded the pinned
    // aws-cdk-lib (the floor has no Validations): this also proves the mapping reaches lib/.
    expect(nagFindings(appOf(stack)).filter(f => f.path.startsWith('Stack/Calm3/'))).toEqual([]);
  });

  // aws-cdk-lib 2.278.0 lists nodejs26.x, which its region facts give no region yet: the handlers run on nodejs24.x
  // and the construct acknowledges AwsSolutions-L1 on its function itself (src/private/handler-function.ts).
  test('the lifecycle function is on the region\'s newest runtime, and the construct acknowledges L1 on it with the reason', () => {
    const { compile } = compileFixture();
    const fn = compile.node.findChild('LifecycleFunction') as CfnResource;
    const acks = fn.node.metadata.filter(m => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap(m => Object.entries(m.data as Record<string, string>))
      .filter(([id]) => /AwsSolutions-L1$/.test(id));
    expect(acks).toHaveLength(1);
    expect(acks[0][1]).toMatch(/^nodejs24\.x is the newest Node\.js runtime .* region us-east-1; nodejs26\.x, the newest this aws-cdk-lib lists/);
  });

  test('a wildcard added later to the endpoint role or the code placer is reported, by its own finding id', () => {
    const { app, endpoint, compile } = endpointFixture();
    const codeRole = compile.node.findChild('LifecycleFunctionRole') as iam.Role;
    for (const r of [endpoint.role, codeRole]) {
      r.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: ['arn:aws:s3:::other-bucket/*'] }));
    }
    expect(nagFindings(app).sort((a, b) => a.path.localeCompare(b.path))).toEqual([
      { rule: 'AwsSolutions-IAM5[Resource::arn:aws:s3:::other-bucket/*]', path: `${codeRole.node.path}/DefaultPolicy/Resource` },
      { rule: 'AwsSolutions-IAM5[Resource::arn:aws:s3:::other-bucket/*]', path: `${endpoint.role.node.path}/DefaultPolicy/Resource` },
    ].sort((a, b) => a.path.localeCompare(b.path)));
  });

  describe('every acknowledgement is the cdk-nag 2 suppression of the same resource, one per finding, same reason', () => {
    /**
     * The AwsSolutions acknowledgements recorded on one construct, as `id -> reason` (cdk-nag 3 strips the
     * `Annotation::` prefix). aws-cdk-lib acknowledges warnings of its own on the test's stack, VPC and buckets.
     */
    function acknowledgements(construct: IConstruct): Record<string, string> {
      const entries = construct.node.metadata.filter(m => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY);
      return Object.fromEntries(entries.flatMap(m => Object.entries(m.data as Record<string, string>))
        .map(([id, reason]) => [id.replace(/^annotation::/i, ''), reason])
        .filter(([id]) => id.startsWith('AwsSolutions-')));
    }

    /** The cdk-nag 2 suppressions of a resource, spelled as cdk-nag 3 ids. */
    function suppressionsAsIds(resource: CfnResource): Record<string, string> {
      const rules = (resource.getMetadata('cdk_nag')?.rules_to_suppress ?? []) as Array<{ id: string; reason: string; applies_to?: string[] }>;
      return Object.fromEntries(rules.flatMap(r => (r.applies_to ?? [undefined])
        .map(finding => [finding === undefined ? r.id : `${r.id}[${finding}]`, r.reason])));
    }

    test.each([
      ['an endpoint stack', () => endpointFixture().stack],
      ['an endpoint stack on inf2', () => endpointFixture({ props: HIGH_PERFORMANCE_PROPS }).stack],
    ])('%s', (_, make) => {
      const stack = make();
      const acknowledged = stack.node.findAll().filter(c => Object.keys(acknowledgements(c)).length > 0);
      // Only CloudFormation resources carry acknowledgements: none on a construct, the stack or the app.
      expect(acknowledged.filter(c => !CfnResource.isCfnResource(c)).map(c => c.node.path)).toEqual([]);
      expect(acknowledged.length).toBeGreaterThan(0);
      for (const resource of stack.node.findAll().filter(CfnResource.isCfnResource)) {
        expect({ path: resource.node.path, ids: acknowledgements(resource) })
          .toEqual({ path: resource.node.path, ids: suppressionsAsIds(resource) });
      }
    });
  });
});

// Newer aws-cdk-lib releases validate every template against CloudFormation's resource schemas and rules at synth
// (the "CloudFormation Validate" plugin in the same report), reporting what they find as warnings.
describe('aws-cdk-lib\'s built-in CloudFormation validation', () => {
  test('runs (a stack with no resource is reported), so an empty result means a clean template', () => {
    const stack = new Stack(new App(), 'Empty');
    expect(reportedFindings(appOf(stack), 'CloudFormation Validate')).toEqual([{ rule: 'F0001', path: 'Empty' }]);
  });

  test.each([
    ['trn1', () => endpointFixture().app],
    ['inf2', () => endpointFixture({ props: HIGH_PERFORMANCE_PROPS }).app],
  ])('finds nothing in an endpoint stack on %s (compile + endpoint)', (_, make) => {
    expect(reportedFindings(make(), 'CloudFormation Validate')).toEqual([]);
  });
});
