// Deploys both presets and asks each endpoint one chat question, then a full batch at once and a streamed answer
// (integ-serving-check/serving_check.py, run as a Lambda function beside the endpoint).
//
//   snapshot (no AWS):  AWS_REGION=us-east-1 npx integ-runner --directory test --update-on-failed --dry-run
//   deploy (hours, costs money, needs the Inf/Trn quotas in the README):
//                       AWS_REGION=us-east-1 npx integ-runner --directory test --update-on-failed --force
import * as fs from 'fs';
import * as path from 'path';
import { ExpectedResult, IntegTest } from '@aws-cdk/integ-tests-alpha';
import { App, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { calm3chat22b } from '../src';

const app = new App();

function presetStack(name: string, instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy) {
  // Environment-agnostic like the assertion stack, which reads the endpoint name from it; the runner picks the region.
  const stack = new Stack(app, `IntegCalm3Chat22b${name}`);
  const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
  // An integ test cleans up after itself; a real deployment keeps the compiled artifacts.
  const accessLogs = new s3.Bucket(stack, 'AccessLogs', {
    encryption: s3.BucketEncryption.S3_MANAGED,
    enforceSSL: true,
    blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
    versioned: true,
    autoDeleteObjects: true,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const bucket = new s3.Bucket(stack, 'Bucket', {
    encryption: s3.BucketEncryption.S3_MANAGED,
    enforceSSL: true,
    blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
    versioned: true,
    serverAccessLogsBucket: accessLogs,
    serverAccessLogsPrefix: 'model-bucket/',
    autoDeleteObjects: true,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const inference = new calm3chat22b.SageMakerRealtimeInference(stack, 'Calm3Chat', { bucket, compileVpc: vpc, instanceTypeStrategy });
  const endpoint = inference.endpoint;
  // Inline, so the snapshot holds the code it runs (python3.12's boto3 has InvokeEndpointWithResponseStream).
  const servingCheck = new lambda.Function(stack, 'ServingCheck', {
    runtime: lambda.Runtime.PYTHON_3_12,
    handler: 'index.handler',
    code: lambda.Code.fromInline(fs.readFileSync(path.join(__dirname, 'integ-serving-check', 'serving_check.py'), 'utf8')),
    // The batch's answers (32 tokens) and the streamed one (128) at about 80 ms a token, within the 50 s limit each.
    timeout: Duration.seconds(100),
    environment: {
      ENDPOINT_NAME: endpoint.endpointName,
      // Every worker of the instance gets a full batch.
      REQUESTS_AT_ONCE: String(endpoint.workersPerInstance * endpoint.batchSize),
    },
  });
  endpoint.grantInvoke(servingCheck);
  return { stack, endpoint, servingCheck };
}

const presets = [
  presetStack('LowCost', calm3chat22b.InstanceTypeStrategy.lowCost),
  presetStack('HighPerformance', calm3chat22b.InstanceTypeStrategy.highPerformance),
];

const integ = new IntegTest(app, 'IntegCalm3Chat22b', {
  testCases: presets.map(p => p.stack),
  regions: ['us-east-1'],
  // Compiling takes hours: never let the runner re-deploy the previous snapshot first.
  stackUpdateWorkflow: false,
});

for (const { endpoint } of presets) {
  const invoke = integ.assertions.awsApiCall('SageMakerRuntime', 'invokeEndpoint', {
    EndpointName: endpoint.endpointName,
    ContentType: 'application/json',
    Accept: 'application/json',
    Body: JSON.stringify({
      messages: [{ role: 'user', content: 'AIによって私たちの暮らしはどのように変わりますか？' }],
      max_new_tokens: 64,
    }),
  });
  // The SDK's service prefix (sagemaker-runtime) is not the IAM one (sagemaker).
  invoke.provider.addToRolePolicy({ Effect: 'Allow', Action: ['sagemaker:InvokeEndpoint'], Resource: [endpoint.endpointArn] });
  invoke.assertAtPath('Body.generated_text', ExpectedResult.stringLikeRegexp('.+'));
}
for (const { servingCheck } of presets) {
  // The function raises, naming what failed, unless every check passed.
  integ.assertions.invokeFunction({ functionName: servingCheck.functionName }).expect(ExpectedResult.objectLike({ Payload: '"ok"' }));
}
