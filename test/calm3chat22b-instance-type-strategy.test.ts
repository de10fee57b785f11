import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { CompileOptions, NeuronxInstanceType, OptLevel, QuantDtype } from 'aws-cdk-neuronx-patterns';
import { calm3chat22b } from '../src';

const { InstanceTypeStrategy } = calm3chat22b;

function deploy(instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy): Stack {
  const stack = new Stack(new App(), 'Stack', { env: { account: '123456789012', region: 'us-east-1' } });
  new calm3chat22b.SageMakerRealtimeInference(stack, 'Calm3', {
    bucket: new s3.Bucket(stack, 'Bucket'),
    compileVpc: new ec2.Vpc(stack, 'Vpc'),
    instanceTypeStrategy,
  });
  return stack;
}

describe('InstanceTypeStrategy presets', () => {
  test('lowCost: ml.trn1.2xlarge, compiled on inf2.8xlarge, tp 2, 1024 positions, int8, -O3, continuous batching over 6 slots', () => {
    expect(InstanceTypeStrategy.lowCost).toMatchObject({
      instanceType: NeuronxInstanceType.TRN1_2XLARGE,
      instanceTypeForCompile: NeuronxInstanceType.INF2_8XLARGE,
      tpDegree: 2,
      nPositions: 1024,
      quantDtype: QuantDtype.S8,
      optLevel: OptLevel.BEST_EXECUTION,
      batchSize: 6,
      continuousBatching: true,
    });
  });

  test('highPerformance: ml.inf2.24xlarge, compiled on inf2.24xlarge, tp 12, default positions, bf16, -O3, continuous batching over 8 slots', () => {
    expect(InstanceTypeStrategy.highPerformance).toMatchObject({
      instanceType: NeuronxInstanceType.INF2_24XLARGE,
      instanceTypeForCompile: NeuronxInstanceType.INF2_24XLARGE,
      tpDegree: 12,
      optLevel: OptLevel.BEST_EXECUTION,
      batchSize: 8,
      continuousBatching: true,
    });
    expect(InstanceTypeStrategy.highPerformance.nPositions).toBeUndefined();
    expect(InstanceTypeStrategy.highPerformance.quantDtype).toBeUndefined();
  });

  test('each carries its options whole as compileOptions, as given (no defaults applied)', () => {
    expect(InstanceTypeStrategy.lowCost.compileOptions).toEqual({
      tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8, optLevel: OptLevel.BEST_EXECUTION, batchSize: 6, continuousBatching: true,
    });
    expect(InstanceTypeStrategy.highPerformance.compileOptions).toEqual({
      tpDegree: 12, optLevel: OptLevel.BEST_EXECUTION, batchSize: 8, continuousBatching: true,
    });
  });
});

describe('a custom InstanceTypeStrategy', () => {
  test('that fits is accepted: inf2.48xlarge with tp 8 and 8192 positions runs 3 workers', () => {
    const strategy = new InstanceTypeStrategy(NeuronxInstanceType.INF2_48XLARGE, NeuronxInstanceType.INF2_24XLARGE, {
      tpDegree: 8, nPositions: 8192, optLevel: OptLevel.BEST_EXECUTION,
    });
    const template = Template.fromStack(deploy(strategy));
    template.hasResourceProperties('AWS::SageMaker::EndpointConfig', {
      ProductionVariants: [{ InstanceType: 'ml.inf2.48xlarge' }],
    });
    template.hasResourceProperties('AWS::SageMaker::Model', {
      PrimaryContainer: { Environment: { SAGEMAKER_MODEL_SERVER_WORKERS: '3', NEURON_RT_NUM_CORES: '8', NEURONX_N_POSITIONS: '8192' } },
    });
  });

  test('is rejected when tpDegree does not divide the 48 attention heads', () => {
    const make = () => new InstanceTypeStrategy(NeuronxInstanceType.INF2_48XLARGE, NeuronxInstanceType.INF2_48XLARGE, { tpDegree: 32 });
    expect(make).toThrow(/InstanceTypeStrategy\(ml\.inf2\.48xlarge, inf2\.48xlarge\) cannot serve cyberagent\/calm3-22b-chat \(48 attention heads, 22\.5B parameters\)/);
    expect(make).toThrow(/options\.tpDegree is 32, which does not divide the model's 48 attention heads: use tpDegree 4 or 6 or 8 or 12 or 16 or 24\./);
  });

  test('is rejected when tpDegree exceeds the serving instance\'s NeuronCores', () => {
    const make = () => new InstanceTypeStrategy(NeuronxInstanceType.INF2_8XLARGE, NeuronxInstanceType.INF2_8XLARGE, {
      tpDegree: 4, quantDtype: QuantDtype.S8,
    });
    expect(make).toThrow(/options\.tpDegree is 4 but ml\.inf2\.8xlarge has 2 NeuronCores: use tpDegree 2\./);
    expect(make).toThrow(/instanceTypeForCompile is inf2\.8xlarge with 2 NeuronCores, fewer than tpDegree 4/);
  });

  test('is rejected when the bf16 weights do not fit the NeuronCores of one worker', () => {
    const make = () => new InstanceTypeStrategy(
      NeuronxInstanceType.TRN1_2XLARGE, NeuronxInstanceType.INF2_8XLARGE, { tpDegree: 2, nPositions: 1024 },
    );
    expect(make).toThrow(
      /options: the model needs 43\.0 GiB of accelerator memory per worker \(weights 41\.9 GiB \+ KV cache 1\.1 GiB for 1024 positions\) but tpDegree 2 on ml\.trn1\.2xlarge gives 28\.8 GiB: .*int8 weights \(QuantDtype\.S8\)/,
    );
  });

  test('is rejected when the KV cache of nPositions does not fit beside the weights', () => {
    const make = () => new InstanceTypeStrategy(NeuronxInstanceType.TRN1_2XLARGE, NeuronxInstanceType.INF2_8XLARGE, {
      tpDegree: 2, nPositions: 8192, quantDtype: QuantDtype.S8,
    });
    expect(make).toThrow(/weights 21\.0 GiB \+ KV cache 9\.0 GiB for 8192 positions\) but tpDegree 2 on ml\.trn1\.2xlarge gives 28\.8 GiB: .*fewer positions/);
  });

  test('is rejected when the KV caches of batchSize do not fit beside the weights, naming batchSize', () => {
    const make = () => new InstanceTypeStrategy(NeuronxInstanceType.TRN1_2XLARGE, NeuronxInstanceType.INF2_8XLARGE, {
      tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8, batchSize: 6,
    });
    expect(make).toThrow(/options\.batchSize is 6: .* use batchSize 5 or less/);
  });

  test('three static-batching workers on highPerformance\'s instance at 2048 positions fit a batch of 5 (the README\'s custom strategy), not 6', () => {
    const throughput = (batchSize: number) => new InstanceTypeStrategy(NeuronxInstanceType.INF2_24XLARGE, NeuronxInstanceType.INF2_24XLARGE, {
      tpDegree: 4, optLevel: OptLevel.BEST_EXECUTION, nPositions: 2048, batchSize,
    });
    const template = Template.fromStack(deploy(throughput(5)));
    const [model] = Object.values(template.findResources('AWS::SageMaker::Model'));
    expect(model.Properties.PrimaryContainer.Environment).toMatchObject({
      NEURONX_N_POSITIONS: '2048', NEURONX_BATCH_SIZE: '5', SAGEMAKER_TS_BATCH_SIZE: '5', SAGEMAKER_TS_MIN_WORKERS: '3',
    });
    expect(() => throughput(6)).toThrow(/options\.batchSize is 6: .* use batchSize 5 or less/);
  });

  test('continuous batching counts one KV cache per slot: highPerformance\'s worker fits 29 slots of 4096 positions, not 30', () => {
    const slots = (batchSize: number) => new InstanceTypeStrategy(NeuronxInstanceType.INF2_24XLARGE, NeuronxInstanceType.INF2_24XLARGE, {
      ...InstanceTypeStrategy.highPerformance._compileOptions(), batchSize,
    });
    // 172.8 GiB offered; 41.9 GiB of weights + 29 x 4.5 GiB = 172.4 GiB (static batching would keep a 30th cache for batch 1).
    expect(() => slots(29)).not.toThrow();
    expect(() => slots(30)).toThrow(/options\.batchSize is 30: .*30 KV caches of 4\.5 GiB for 4096 positions: one per slot\).* use batchSize 29 or less/);
  });

  test('continuous batching needs one worker and two slots, and each refusal suggests what is accepted', () => {
    const inf2 = NeuronxInstanceType.INF2_24XLARGE;
    const strategy = (options: CompileOptions) => () => new InstanceTypeStrategy(inf2, inf2, {
      optLevel: OptLevel.BEST_EXECUTION, continuousBatching: true, ...options,
    });
    expect(strategy({ tpDegree: 4, batchSize: 2 })).toThrow(
      /options\.continuousBatching is true but tpDegree 4 on ml\.inf2\.24xlarge makes 3 workers: TorchServe 0\.11\.0 stalls continuous batching with more than one worker per model; use tpDegree 12 \(one worker on 12 of its 12 NeuronCores\) or set continuousBatching to false\./);
    expect(strategy({ tpDegree: 12, batchSize: 1 })).toThrow(/options\.batchSize is 1 with continuousBatching: .* use batchSize 2 or more, or set continuousBatching to false\./);
    expect(strategy({ tpDegree: 12, batchSize: 2 })).not.toThrow();
    expect(strategy({ tpDegree: 4, batchSize: 2, continuousBatching: false })).not.toThrow();
  });

  test('each preset batches continuously on one worker: no TorchServe batching variables, its settings placed beside the code, and the option part of the artifact prefix', () => {
    for (const [strategy, slots] of [[InstanceTypeStrategy.lowCost, 6], [InstanceTypeStrategy.highPerformance, 8]] as const) {
      const template = Template.fromStack(deploy(strategy));
      const [model] = Object.values(template.findResources('AWS::SageMaker::Model'));
      const environment = model.Properties.PrimaryContainer.Environment;
      expect(environment).toMatchObject({ NEURONX_BATCH_SIZE: String(slots), SAGEMAKER_MODEL_SERVER_WORKERS: '1' });
      expect(Object.keys(environment).filter(name => name.startsWith('SAGEMAKER_TS_'))).toEqual([]);
      const [job] = Object.values(template.findResources('AWS::Batch::JobDefinition'));
      expect(job.Properties.ContainerProperties.Environment).toEqual(expect.arrayContaining([
        { Name: 'NEURONX_BATCH_SIZE', Value: String(slots) }, { Name: 'NEURONX_CONTINUOUS_BATCHING', Value: '1' },
      ]));
      const [code] = Object.values(template.findResources('Custom::NeuronxInferenceCode'));
      const objects = Object.fromEntries(code.Properties.Objects.map((o: { Key: string; Body: string }) => [o.Key.replace(/^.*?\/[0-9a-f]{16}\//, ''), o.Body]));
      // The model config is in the served code's own folder (code/<hash>/), which the manifest names.
      const configKey = `code/${environment.NEURONX_CODE_HASH}/model-config.yaml`;
      // TorchServe's batch holds 32 jobs beyond the slots: the handler sees the requests that wait, and refuses at
      // once those that cannot start in time.
      expect(objects[configKey]).toEqual(
        `minWorkers: 1\nmaxWorkers: 1\nbatchSize: ${slots + 32}\nmaxBatchDelay: 20\nresponseTimeout: 3600\ncontinuousBatching: true\n`);
      expect(JSON.parse(objects['MAR-INF/MANIFEST.json'])).toEqual({
        runtime: 'python', model: { modelName: 'model', modelVersion: '1.0', configFile: configKey }, archiverVersion: '0.11.0',
      });
    }
    const static5 = new InstanceTypeStrategy(NeuronxInstanceType.TRN1_2XLARGE, NeuronxInstanceType.INF2_8XLARGE, {
      ...InstanceTypeStrategy.lowCost._compileOptions(), batchSize: 5, continuousBatching: false,
    });
    const continuous5 = new InstanceTypeStrategy(NeuronxInstanceType.TRN1_2XLARGE, NeuronxInstanceType.INF2_8XLARGE, {
      ...InstanceTypeStrategy.lowCost._compileOptions(), batchSize: 5,
    });
    const prefix = (strategy: calm3chat22b.InstanceTypeStrategy) => JSON.stringify(Template.fromStack(deploy(strategy)).findResources('AWS::SageMaker::Model'))
      .match(/neuronx-compile\/[^"]*?\/[0-9a-f]{16}\//)?.[0];
    expect(prefix(static5)).toBeDefined();
    expect(prefix(static5)).not.toEqual(prefix(continuous5));
    expect(prefix(continuous5)).not.toEqual(prefix(InstanceTypeStrategy.lowCost));
    const staticTemplate = Template.fromStack(deploy(static5));
    expect(Object.values(staticTemplate.findResources('Custom::NeuronxInferenceCode'))[0].Properties.Objects).toBeUndefined();
    const [staticJob] = Object.values(staticTemplate.findResources('AWS::Batch::JobDefinition'));
    expect(staticJob.Properties.ContainerProperties.Environment.map((e: { Name: string }) => e.Name)).not.toContain('NEURONX_CONTINUOUS_BATCHING');
  });

  test('is rejected when nPositions exceeds the model\'s 16384 position embeddings', () => {
    const make = () => new InstanceTypeStrategy(NeuronxInstanceType.INF2_48XLARGE, NeuronxInstanceType.INF2_48XLARGE, {
      tpDegree: 24, nPositions: 32768,
    });
    expect(make).toThrow(/options\.nPositions is 32768 but the model has 16384 position embeddings: use at most 16384\./);
  });

  test('is rejected when the compile instance has too little host memory for the checkpoint', () => {
    const make = () => new InstanceTypeStrategy(NeuronxInstanceType.TRN1_2XLARGE, NeuronxInstanceType.INF2_XLARGE, {
      tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8,
    });
    expect(make).toThrow(
      /instanceTypeForCompile is inf2\.xlarge, whose 16\.0 GiB of host memory cannot hold the 62\.9 GiB the compile needs \(bf16 checkpoint plus int8 copy\): use inf2\.8xlarge/,
    );
  });

  test('is rejected when tpDegree is not one the Neuron runtime supports on the serving family', () => {
    // 4 divides the 48 heads and trn1.32xlarge has 32 NeuronCores, but trn1 supports tp 1, 2, 8, 16 or 32 only.
    const make = () => new InstanceTypeStrategy(NeuronxInstanceType.TRN1_32XLARGE, NeuronxInstanceType.TRN1_32XLARGE, { tpDegree: 4 });
    expect(make).toThrow(/options\.tpDegree is 4, which the Neuron runtime does not support on trn1 \(it supports 1, 2, 8, 16 or 32\): use tpDegree 8 or 16/);
  });

  test('is rejected when the serving instance has too little host memory to load the weights', () => {
    // int8 weights and 1024 positions fit the device of an inf2.xlarge, but not its 16 GiB of host memory.
    const make = () => new InstanceTypeStrategy(NeuronxInstanceType.INF2_XLARGE, NeuronxInstanceType.INF2_8XLARGE, {
      tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8,
    });
    expect(make).toThrow(/options: 1 worker\(s\) on ml\.inf2\.xlarge need [\d.]+ GiB of host memory to load the weights but it has 16\.0 GiB/);
  });

  test('is rejected when nPositions or tpDegree is not a positive whole number', () => {
    expect(() => new InstanceTypeStrategy(NeuronxInstanceType.INF2_24XLARGE, NeuronxInstanceType.INF2_24XLARGE, { tpDegree: 4, nPositions: 0 }))
      .toThrow(/options\.nPositions is 0: it must be a positive whole number\./);
    expect(() => new InstanceTypeStrategy(NeuronxInstanceType.INF2_24XLARGE, NeuronxInstanceType.INF2_24XLARGE, { tpDegree: 2.5 }))
      .toThrow(/options\.tpDegree is 2\.5: it must be a positive whole number\./);
  });

  test('the error lists every problem at once, in the terms of the strategy\'s constructor', () => {
    let message = '';
    try {
      new InstanceTypeStrategy(NeuronxInstanceType.INF2_48XLARGE, NeuronxInstanceType.INF2_48XLARGE, { tpDegree: 32 });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message.split('\n').filter(l => l.startsWith('- '))).toHaveLength(3);
    expect(message).not.toMatch(/compileOptions|NeuronxCompile '/);
  });

  test('a rejected strategy never reaches a stack: the construct is not needed to find the problem', () => {
    expect(() => deploy(new InstanceTypeStrategy(NeuronxInstanceType.TRN1_2XLARGE, NeuronxInstanceType.INF2_8XLARGE, { tpDegree: 3 })))
      .toThrow(/options\.tpDegree is 3/);
  });

});
