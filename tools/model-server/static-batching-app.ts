// The model-server test's third endpoint: calm3 on a custom strategy that batches statically over several workers
// (both presets batch continuously, on one worker each). Static batching is what the library does for any strategy
// without continuousBatching, and the only batching an instance with more than one worker can have, so it is served
// for real as well: tools/model-server/test_batching.py. Synthesized by `npx projen test:model-server` into
// examples/typescript/cdk.out/staticBatching, where serving_stack.read_deployment('staticBatching') reads it.
import { App, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { calm3chat22b } from '../../src';
import { NeuronxInstanceType, OptLevel } from 'aws-cdk-neuronx-patterns';

const app = new App();
const stack = new Stack(app, 'StaticBatchingStack', { env: { region: 'us-east-1' } });
new calm3chat22b.SageMakerRealtimeInference(stack, 'Calm3Chat', {
  bucket: new s3.Bucket(stack, 'ModelBucket'),
  compileVpc: new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 }),
  // highPerformance's instance with three workers of four NeuronCores, each batching two requests.
  instanceTypeStrategy: new calm3chat22b.InstanceTypeStrategy(NeuronxInstanceType.INF2_24XLARGE, NeuronxInstanceType.INF2_24XLARGE, {
    tpDegree: 4, optLevel: OptLevel.BEST_EXECUTION, batchSize: 2,
  }),
});
