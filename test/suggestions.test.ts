/**
 * Every value a synth error suggests is itself accepted: each configuration below is refused, every value its error
 * suggests for a field is read from the message (not written here), applied, and the field is no longer refused.
 * Where the error suggests values for several fields (nPositions and tpDegree), each value is applied together with
 * the first suggestion for the other fields, and the whole configuration is accepted. The configurations are the
 * rows of tools/template-checks/synth-checks.json whose message suggests a value, the bad strategies of
 * calm3chat22b-instance-type-strategy.test.ts, and the two of issue 23.
 */
import { App, Duration, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import {
  CompileOptions, Model, NeuronxCompile, NeuronxCompileProps, NeuronxInstanceType, QuantDtype,
  TransformersNeuronxSageMakerInferenceModelData, TransformersNeuronxSageMakerRealtimeInferenceEndpoint,
} from 'aws-cdk-neuronx-patterns';
import { calm3chat22b } from '../src';

const { InstanceTypeStrategy } = calm3chat22b;

/** The error a build throws ('' when it builds). */
function thrown(build: () => unknown): string {
  try {
    build();
    return '';
  } catch (e) {
    return String((e as Error).message);
  }
}

/** The values an error suggests, per field. */
interface Suggested {
  tpDegree?: number[];
  nPositions?: number[];
  batchSize?: number[];
  compileInstance?: NeuronxInstanceType[];
}

function suggested(message: string): Suggested {
  const numbers = (re: RegExp) => [...new Set([...message.matchAll(re)].flatMap(m => m[1].split(' or ').map(Number)))];
  const result: Suggested = {};
  const tp = numbers(/use tpDegree ((?:\d+)(?: or \d+)*)/g);
  if (tp.length) result.tpDegree = tp;
  const positions = numbers(/nPositions is \d+ but .*?: use at most (\d+)/g);
  if (positions.length) result.nPositions = positions;
  const batch = numbers(/use batchSize (\d+) or (?:less|more)/g);
  if (batch.length) result.batchSize = batch;
  const compileMatch = /(?:instanceTypeForCompile|compileInstanceType) is [\w.]+, whose .*?: use ((?:[\w.]+)(?: or [\w.]+)*)\./.exec(message);
  if (compileMatch) result.compileInstance = compileMatch[1].split(' or ').map(n => NeuronxInstanceType.of(n));
  return result;
}

/** A strategy: serving and compile instance and options, as InstanceTypeStrategy takes them. */
interface StrategyCase {
  serving: NeuronxInstanceType;
  compile: NeuronxInstanceType;
  options: CompileOptions;
}

const strategyCases: Array<[string, StrategyCase]> = [
  // issue 23: compiles on inf2.24xlarge (12 NeuronCores); the serving instance has 24.
  ['issue 23: tpDegree 5, compiled on inf2.24xlarge', { serving: NeuronxInstanceType.INF2_48XLARGE, compile: NeuronxInstanceType.INF2_24XLARGE, options: { tpDegree: 5 } }],
  ['issue 23: nPositions 100000', { serving: NeuronxInstanceType.INF2_48XLARGE, compile: NeuronxInstanceType.INF2_48XLARGE, options: { tpDegree: 4, nPositions: 100000 } }],
  ['synth-checks calm3-strategy: tpDegree 10', { serving: NeuronxInstanceType.INF2_24XLARGE, compile: NeuronxInstanceType.INF2_24XLARGE, options: { tpDegree: 10 } }],
  ['synth-checks tp-degree-exceeds-cores', { serving: NeuronxInstanceType.TRN1_2XLARGE, compile: NeuronxInstanceType.INF2_8XLARGE, options: { tpDegree: 4, nPositions: 1024, quantDtype: QuantDtype.S8 } }],
  ['synth-checks tp-degree-unsupported', { serving: NeuronxInstanceType.TRN1_32XLARGE, compile: NeuronxInstanceType.TRN1_32XLARGE, options: { tpDegree: 4 } }],
  ['synth-checks n-positions-exceed-model', { serving: NeuronxInstanceType.INF2_48XLARGE, compile: NeuronxInstanceType.INF2_48XLARGE, options: { tpDegree: 24, nPositions: 32768 } }],
  ['synth-checks compile-host-memory', { serving: NeuronxInstanceType.INF2_24XLARGE, compile: NeuronxInstanceType.INF2_XLARGE, options: { tpDegree: 4 } }],
  ['strategy test: tpDegree 32 on inf2.48xlarge', { serving: NeuronxInstanceType.INF2_48XLARGE, compile: NeuronxInstanceType.INF2_48XLARGE, options: { tpDegree: 32 } }],
  ['strategy test: tpDegree 4 on inf2.8xlarge', { serving: NeuronxInstanceType.INF2_8XLARGE, compile: NeuronxInstanceType.INF2_24XLARGE, options: { tpDegree: 4, quantDtype: QuantDtype.S8 } }],
  ['strategy test: continuous batching on three workers', { serving: NeuronxInstanceType.INF2_24XLARGE, compile: NeuronxInstanceType.INF2_24XLARGE, options: { tpDegree: 4, batchSize: 2, continuousBatching: true } }],
  ['strategy test: continuous batching with one slot', { serving: NeuronxInstanceType.INF2_24XLARGE, compile: NeuronxInstanceType.INF2_24XLARGE, options: { tpDegree: 12, batchSize: 1, continuousBatching: true } }],
  ['strategy test: 30 slots of 4096 positions on highPerformance', { serving: NeuronxInstanceType.INF2_24XLARGE, compile: NeuronxInstanceType.INF2_24XLARGE, options: { tpDegree: 12, batchSize: 30, continuousBatching: true } }],
  ['strategy test: batchSize 6 on lowCost', { serving: NeuronxInstanceType.TRN1_2XLARGE, compile: NeuronxInstanceType.INF2_8XLARGE, options: { tpDegree: 2, nPositions: 1024, quantDtype: QuantDtype.S8, batchSize: 6 } }],
];

// Not here: the bad strategies whose errors suggest no value (bf16 or tpDegree 3 on trn1.2xlarge: "no tpDegree works
// on this instance: choose a larger instance type, int8 weights (QuantDtype.S8) or fewer positions").

const build = (c: StrategyCase) => () => new InstanceTypeStrategy(c.serving, c.compile, c.options);

/** The case with one field set to a value and every other suggested field to its first suggestion. */
function applied(c: StrategyCase, s: Suggested, field: keyof Suggested, value: number | NeuronxInstanceType): StrategyCase {
  const first = <T>(values?: T[]) => values?.[0];
  const pick = <T>(f: keyof Suggested, values?: T[]) => (f === field ? value as unknown as T : first(values));
  return {
    serving: c.serving,
    compile: pick('compileInstance', s.compileInstance) ?? c.compile,
    options: {
      ...c.options,
      ...(s.tpDegree || field === 'tpDegree' ? { tpDegree: pick('tpDegree', s.tpDegree) } : {}),
      ...(s.nPositions || field === 'nPositions' ? { nPositions: pick('nPositions', s.nPositions) } : {}),
      ...(s.batchSize || field === 'batchSize' ? { batchSize: pick('batchSize', s.batchSize) } : {}),
    },
  };
}

describe('every value a strategy error suggests is accepted', () => {
  test.each(strategyCases)('%s', (_, c) => {
    const message = thrown(build(c));
    expect(message).not.toBe('');
    const s = suggested(message);
    const fields = Object.keys(s) as Array<keyof Suggested>;
    expect(fields.length).toBeGreaterThan(0);
    for (const field of fields) {
      for (const value of s[field]!) {
        const fixed = applied(c, s, field, value);
        expect({ field, value: String(value), error: thrown(build(fixed)) }).toEqual({ field, value: String(value), error: '' });
      }
    }
  });

  test('issue 23: tpDegree 5 compiled on inf2.24xlarge suggests only what 12 NeuronCores hold', () => {
    const message = thrown(build(strategyCases[0][1]));
    expect(suggested(message).tpDegree).toEqual([4, 6, 8, 12]);
  });

  test('issue 23: nPositions 100000 suggests at most 16384 and the tpDegrees that hold 16384 positions', () => {
    const s = suggested(thrown(build(strategyCases[1][1])));
    expect(s.nPositions).toEqual([16384]);
    expect(s.tpDegree).toEqual([6, 8, 12, 16, 24]);
  });
});

// The other suggestions of the synth-checks table, each applied to the configuration of its row.
function stack(): Stack {
  return new Stack(new App(), 'Test', { env: { region: 'us-east-1' } });
}

const calm3 = (): Model => Model.fromHuggingFace('cyberagent/calm3-22b-chat', {
  revision: '055922aa0f0fb1fbfbc97a2e31134532485ee99b',
  parameterCount: 22.5e9,
  architecture: { modelType: 'llama', numLayers: 48, hiddenSize: 6144, numAttentionHeads: 48, numKeyValueHeads: 48, maxPositionEmbeddings: 16384 },
});

function compile(props: Partial<NeuronxCompileProps>, vpc?: (s: Stack) => ec2.IVpc): NeuronxCompile {
  const s = stack();
  return new NeuronxCompile(s, 'Compile', {
    vpc: vpc ? vpc(s) : new ec2.Vpc(s, 'Vpc'),
    bucket: new s3.Bucket(s, 'Bucket'),
    model: calm3(),
    servingInstanceType: NeuronxInstanceType.INF2_24XLARGE,
    compileInstanceType: NeuronxInstanceType.INF2_24XLARGE,
    compileOptions: { tpDegree: 4 },
    ...props,
  });
}

/** A calm3chat22b.SageMakerRealtimeInference (lowCost) with `props`. */
function calm3Construct(props: Partial<calm3chat22b.SageMakerRealtimeInferenceProps>) {
  const s = stack();
  return new calm3chat22b.SageMakerRealtimeInference(s, 'Calm3', {
    bucket: new s3.Bucket(s, 'Bucket'),
    compileVpc: new ec2.Vpc(s, 'Vpc'),
    instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy.lowCost,
    ...props,
  });
}

/** An endpoint of the patterns package serving the compile above (tpDegree 4, batch 1, no continuous batching). */
function staticEndpoint(generationTimeLimit: Duration) {
  const c = compile({});
  return new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(Stack.of(c), 'Endpoint', {
    modelData: TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(c),
    generationTimeLimit,
  });
}

describe('every other value the synth-checks table suggests is accepted', () => {
  test.each<[string, () => unknown, RegExp, (value: string) => () => unknown]>([
    ['model-id', () => Model.fromHuggingFace('calm3-22b-chat'), /e\.g\. '([^']+)'/, v => () => Model.fromHuggingFace(v)],
    ['model-parameter-count-unknown', () => Model.fromHuggingFace('example-org/my-model'), /e\.g\. ([\d.e]+)\./,
      v => () => Model.fromHuggingFace('example-org/my-model', { parameterCount: Number(v) })],
    ['model-parameter-count-invalid', () => Model.fromHuggingFace('example-org/model-7b', { parameterCount: 0 }), /e\.g\. ([\d.e]+)\./,
      v => () => Model.fromHuggingFace('example-org/model-7b', { parameterCount: Number(v) })],
    ['timeout-exceeds-wait', () => compile({ timeout: Duration.hours(12) }), /use at most (\d+) hours (\d+) minutes/,
      v => () => compile({ timeout: Duration.minutes(Number(v.split(',')[0]) * 60 + Number(v.split(',')[1])) })],
    ['endpoint-generation-time-limit (the lower end)', () => calm3Construct({ generationTimeLimit: Duration.seconds(55) }), /use (\d+) seconds? to \d+ seconds/,
      v => () => calm3Construct({ generationTimeLimit: Duration.seconds(Number(v)) })],
    ['endpoint-generation-time-limit (the upper end)', () => calm3Construct({ generationTimeLimit: Duration.millis(100) }), /use \d+ seconds? to (\d+) seconds/,
      v => () => calm3Construct({ generationTimeLimit: Duration.seconds(Number(v)) })],
    ['endpoint-generation-time-limit-static', () => staticEndpoint(Duration.seconds(25)), /use \d+ seconds? to (\d+) seconds/,
      v => () => staticEndpoint(Duration.seconds(Number(v)))],
  ])('%s', (_, refused, pattern, fixed) => {
    const message = thrown(refused);
    const m = pattern.exec(message);
    expect(m).not.toBeNull();
    expect(thrown(fixed(m!.slice(1).join(',')))).toBe('');
  });
});
