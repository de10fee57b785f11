// A CDK app that deploys cyberagent/calm3-22b-chat on a SageMaker endpoint.
//
//   cd examples/typescript && npx cdk synth                          # lowCost (ml.trn1.2xlarge)
//   cd examples/typescript && npx cdk synth -c preset=highPerformance   # ml.inf2.24xlarge
//
// In your own app, import from the published package instead:
//   import { calm3chat22b } from 'aws-cdk-neuronx-models';
import { App, Aspects, CfnOutput, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks, NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';
import { calm3chat22b } from '../../src';

const PRESETS: Record<string, calm3chat22b.InstanceTypeStrategy> = {
  lowCost: calm3chat22b.InstanceTypeStrategy.lowCost,
  highPerformance: calm3chat22b.InstanceTypeStrategy.highPerformance,
};

interface Calm3ChatStackProps extends StackProps {
  readonly instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy;
}

class Calm3ChatStack extends Stack {
  constructor(scope: Construct, id: string, props: Calm3ChatStackProps) {
    super(scope, id, props);

    // The compile instance downloads the model from Hugging Face: it needs a private subnet with a NAT gateway.
    const vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: 1,
      flowLogs: { all: { destination: ec2.FlowLogDestination.toCloudWatchLogs(), trafficType: ec2.FlowLogTrafficType.ALL } },
    });

    const accessLogs = new s3.Bucket(this, 'AccessLogs', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      versioned: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    NagSuppressions.addResourceSuppressions(accessLogs, [{
      id: 'AwsSolutions-S1',
      reason: 'This bucket receives the server access logs of the model bucket; logging it to itself would loop.',
    }]);

    // Compiled artifacts (about 45 GB) are kept when the stack is deleted: a new deploy with the same inputs
    // reuses them instead of compiling again.
    const bucket = new s3.Bucket(this, 'ModelBucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'model-bucket/',
      versioned: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    const inference = new calm3chat22b.SageMakerRealtimeInference(this, 'Calm3Chat', {
      bucket,
      compileVpc: vpc,
      instanceTypeStrategy: props.instanceTypeStrategy,
    });

    new CfnOutput(this, 'EndpointName', {
      value: inference.endpoint.endpointName,
      description: "The SageMaker endpoint to call: InvokeEndpoint's EndpointName (README: Calling the endpoint)",
    });
    new CfnOutput(this, 'CompiledArtifacts', { value: inference.compile.compiledArtifactS3Url });
  }
}

const app = new App();
const presetName: string = app.node.tryGetContext('preset') ?? 'lowCost';
const instanceTypeStrategy = PRESETS[presetName];
if (!instanceTypeStrategy) {
  throw new Error(`Unknown preset '${presetName}': use -c preset=lowCost or -c preset=highPerformance.`);
}
new Calm3ChatStack(app, 'Calm3ChatStack', {
  // Both presets' instance types (ml.trn1.2xlarge, ml.inf2.24xlarge, inf2.8xlarge, inf2.24xlarge) exist in us-east-1.
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: app.node.tryGetContext('region') ?? 'us-east-1' },
  description: `cyberagent/calm3-22b-chat on a SageMaker real-time endpoint (${presetName})`,
  instanceTypeStrategy,
});
Aspects.of(app).add(new AwsSolutionsChecks());
