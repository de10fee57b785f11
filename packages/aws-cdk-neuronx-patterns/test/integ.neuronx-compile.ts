// Compiles TinyLlama for inf2 on an inf2.8xlarge during deploy, then checks the completion marker is in S3.
import { ExpectedResult, IntegTest, Match } from '@aws-cdk/integ-tests-alpha';
import { App, Stack } from 'aws-cdk-lib';
import { network, tinyLlamaCompile } from './fixtures';

const app = new App();
const stack = new Stack(app, 'NeuronxCompileInteg');
const { vpc, bucket } = network(stack, { autoDeleteObjects: true });

const compile = tinyLlamaCompile(stack, vpc, bucket);

const integ = new IntegTest(app, 'NeuronxCompileIntegTest', {
  testCases: [stack],
});

// The deploy succeeded only if the job signalled success; the manifest (completion marker) must be there and
// record the serving family. (getObject, not headObject: integ-tests would grant the non-existent s3:HeadObject.)
integ.assertions.awsApiCall('S3', 'getObject', {
  Bucket: bucket.bucketName,
  Key: `${compile.compiledArtifactS3Prefix}neuronx-compile-manifest.json`,
}).expect(ExpectedResult.objectLike({ Body: Match.stringLikeRegexp('"compilerTarget":\\s*"inf2"') }));
