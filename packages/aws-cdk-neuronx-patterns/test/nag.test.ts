import { App, Aspects, Stack } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import {
  NeuronxInstanceType, QuantDtype, TransformersNeuronxSageMakerInferenceModelData,
  TransformersNeuronxSageMakerRealtimeInferenceEndpoint,
} from '../src';
import { calm3, compileFixture, endpointFixture, ENV, HIGH_PERFORMANCE_PROPS, network } from './fixtures';

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
});
