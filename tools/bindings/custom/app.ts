// Reference app for the custom-strategy check (tools/bindings/check.sh): a custom InstanceTypeStrategy built
// with CompileOptions in TypeScript. app.py builds the same strategy and stack with the Python bindings; the
// check asserts both synthesize the same template. Keep the two files in step.
import { App, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { NeuronxInstanceType, OptLevel, QuantDtype } from 'aws-cdk-neuronx-patterns';
import { calm3chat22b } from '../../../src';

const app = new App();
const stack = new Stack(app, 'Calm3ChatCustomStrategyStack', { env: { region: 'us-east-1' } });
const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
const bucket = new s3.Bucket(stack, 'ModelBucket', { enforceSSL: true });

// Serve on inf2.48xlarge (24 NeuronCores: 3 workers of 8), compile on inf2.24xlarge; every compile option set,
// each to a value no preset uses, so a field lost between languages changes the template.
const strategy = new calm3chat22b.InstanceTypeStrategy(
  NeuronxInstanceType.INF2_48XLARGE,
  NeuronxInstanceType.INF2_24XLARGE,
  { tpDegree: 8, nPositions: 2048, quantDtype: QuantDtype.S8, optLevel: OptLevel.MINIMIZE_COMPILE_TIME },
);
new calm3chat22b.SageMakerRealtimeInference(stack, 'Calm3Chat', { bucket, compileVpc: vpc, instanceTypeStrategy: strategy });
