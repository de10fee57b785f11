import { App, Aspects, CfnResource, Stack } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import { IConstruct } from 'constructs';
import {
  NeuronxInstanceType, QuantDtype, TransformersNeuronxSageMakerInferenceModelData,
  TransformersNeuronxSageMakerRealtimeInferenceEndpoint,
} from '../src';
import { calm3, compileFixture, endpointFixture, ENV, HIGH_PERFORMANCE_PROPS, kmsEndpointFixture, network } from './fixtures';

interface Finding {
  readonly path: string;
  readonly message: string;
}

/** Applies the AwsSolutions pack and returns its unsuppressed errors and warnings. */
function nagFindings(stack: Stack): Finding[] {
  Aspects.of(stack).add(new AwsSolutionsChecks({ verbose: true }));
  const annotations = Annotations.fromStack(stack);
  const rule = Match.stringLikeRegexp('AwsSolutions-.*');
  return [...annotations.findError('*', rule), ...annotations.findWarning('*', rule)]
    .map(m => ({ path: m.id, message: String(m.entry.data).split(':')[0] }));
}

function under(findings: Finding[], constructPath: string): Finding[] {
  return findings.filter(f => f.path.startsWith(`/${constructPath}/`));
}

describe('cdk-nag AwsSolutions', () => {
  test('the checks run (a non-compliant bucket is reported), so an empty result means compliance', () => {
    const stack = new Stack(new App(), 'Control', { env: ENV });
    new s3.Bucket(stack, 'Plain');
    expect(nagFindings(stack).map(f => f.message)).toEqual(expect.arrayContaining(['AwsSolutions-S1', 'AwsSolutions-S10']));
  });

  test('a NeuronxCompile stack has no unsuppressed finding', () => {
    const { stack, compile } = compileFixture();
    const findings = nagFindings(stack);
    expect(under(findings, compile.node.path)).toEqual([]);
    expect(findings).toEqual([]); // the test's own VPC and buckets are compliant too
  });

  test('a NeuronxCompile on Spot for inf2 serving has no unsuppressed finding', () => {
    const { stack } = compileFixture({ props: { ...HIGH_PERFORMANCE_PROPS, spot: true } });
    expect(nagFindings(stack)).toEqual([]);
  });

  test('an endpoint stack (compile + trn1 endpoint) has no unsuppressed finding', () => {
    const { stack, endpoint } = endpointFixture();
    const findings = nagFindings(stack);
    expect(under(findings, endpoint.node.path)).toEqual([]);
    expect(findings).toEqual([]);
  });

  test('an endpoint stack on inf2 (with a storage volume) has no unsuppressed finding', () => {
    const { stack } = endpointFixture({ props: HIGH_PERFORMANCE_PROPS });
    expect(nagFindings(stack)).toEqual([]);
  });

  test('an endpoint on artifacts already in S3 has no unsuppressed finding', () => {
    const stack = new Stack(new App(), 'FromBucket', { env: ENV });
    const { bucket } = network(stack);
    new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(stack, 'Endpoint', {
      modelData: TransformersNeuronxSageMakerInferenceModelData.fromBucket(bucket, 'compiled/calm3', {
        model: calm3(), tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8,
      }),
      instanceType: NeuronxInstanceType.TRN1_2XLARGE,
    });
    expect(nagFindings(stack)).toEqual([]);
  });

  describe('AwsSolutions-IAM5 suppressions name each wildcard they cover (appliesTo), so a new one is reported', () => {
    function iam5AppliesTo(construct: IConstruct): Array<string[] | undefined> {
      const resource = construct.node.defaultChild as CfnResource;
      const rules = (resource.getMetadata('cdk_nag')?.rules_to_suppress ?? []) as Array<{ id: string; applies_to?: string[] }>;
      return rules.filter(r => r.id === 'AwsSolutions-IAM5').map(r => r.applies_to);
    }

    test('the endpoint role and the code placer (the compile\'s function) list exactly their wildcards', () => {
      const { stack, endpoint, bucket, compile } = endpointFixture();
      const bucketArn = `<${stack.getLogicalId(bucket.node.defaultChild as CfnResource)}.Arn>`;
      const prefix = compile.compiledArtifactS3Prefix;
      const rolePolicy = endpoint.role.node.findChild('DefaultPolicy');
      expect(iam5AppliesTo(rolePolicy).flat().sort()).toEqual([
        'Resource::*',
        `Resource::${bucketArn}/${prefix}*`,
        'Resource::arn:<AWS::Partition>:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/*',
      ]);
      // The compile's function places the code: its policy gets a suppression of its own for the code/ writes.
      const codePolicy = compile.node.findChild('LifecycleFunctionRole').node.findChild('DefaultPolicy');
      const suppressions = iam5AppliesTo(codePolicy);
      expect(suppressions).toHaveLength(2);
      expect(suppressions[1]).toEqual([`Resource::${bucketArn}/${prefix}code/*`]);
    });

    test('a wildcard added later to the endpoint role or the code placer is reported', () => {
      const { stack, endpoint, compile } = endpointFixture();
      const codeRole = compile.node.findChild('LifecycleFunctionRole') as iam.Role;
      for (const r of [endpoint.role, codeRole]) {
        r.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: ['arn:aws:s3:::other-bucket/*'] }));
      }
      const findings = nagFindings(stack).filter(f => f.message.startsWith('AwsSolutions-IAM5[')).map(f => f.path).sort();
      expect(findings).toEqual([
        `/${endpoint.role.node.path}/DefaultPolicy/Resource`,
        `/${codeRole.node.path}/DefaultPolicy/Resource`,
      ].sort());
    });

    test('a KMS-encrypted bucket and a volume key, in an environment-agnostic stack, have no unsuppressed finding', () => {
      const { stack, endpoint } = kmsEndpointFixture();
      const applied = iam5AppliesTo(endpoint.role.node.findChild('DefaultPolicy')).flat();
      expect(applied).toEqual(expect.arrayContaining(['Action::kms:ReEncrypt*', 'Action::kms:GenerateDataKey*',
        'Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/Endpoints/*']));
      expect(nagFindings(stack)).toEqual([]);
    });
  });
});
