// Compiles TinyLlama for inf2 on an inf2.8xlarge during deploy, then checks the completion marker is in S3.
import { ExpectedResult, IntegTest, Match } from '@aws-cdk/integ-tests-alpha';
import { App, Duration, Stack } from 'aws-cdk-lib';
import { NeuronxCompile, NeuronxInstanceType, OptLevel } from '../src';
import { network, tinyLlama } from './fixtures';

const app = new App();
const stack = new Stack(app, 'NeuronxCompileInteg');
const { vpc, bucket } = network(stack, { autoDeleteObjects: true });

const compile = new NeuronxCompile(stack, 'Compile', {
  vpc,
  bucket,
  model: tinyLlama(),
  instanceType: NeuronxInstanceType.INF2_8XLARGE,
  servingInstanceType: NeuronxInstanceType.INF2_XLARGE,
  compileOptions: { tpDegree: 2, nPositions: 2048, optLevel: OptLevel.MINIMIZE_COMPILE_TIME },
  timeout: Duration.hours(2),
});

const integ = new IntegTest(app, 'NeuronxCompileIntegTest', {
  testCases: [stack],
});

// The deploy succeeded only if the job signalled success; the manifest (completion marker) must be there and
// record the serving family. (getObject, not headObject: integ-tests would grant the non-existent s3:HeadObject.)
integ.assertions.awsApiCall('S3', 'getObject', {
  Bucket: bucket.bucketName,
  Key: `${compile.compiledArtifactS3Prefix}neuronx-compile-manifest.json`,
}).expect(ExpectedResult.objectLike({ Body: Match.stringLikeRegexp('"compilerTarget":\\s*"inf2"') }));
