// Two NeuronxCompiles in one stack that would compile the same artifacts into the same bucket and prefix: the
// second fails at synth, naming the first and how to share it; NeuronxCompile.findInStack finds the first.
import { App, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { NeuronxCompile, NeuronxCompileProps } from '../src';
import { calm3, ENV, HIGH_PERFORMANCE_PROPS, LOW_COST } from './fixtures';

interface Twins {
  readonly stack: Stack;
  readonly first: NeuronxCompile;
  readonly firstProps: NeuronxCompileProps;
  readonly second: () => NeuronxCompile;
  readonly secondProps: NeuronxCompileProps;
}

/** A stack with one compile, and the props (changed by `second`) of another. */
function twins(second: Partial<NeuronxCompileProps> = {}, secondBucket?: (stack: Stack) => s3.IBucket): Twins {
  const stack = new Stack(new App(), 'Stack', { env: ENV });
  const firstProps = { vpc: new ec2.Vpc(stack, 'Vpc'), bucket: s3.Bucket.fromBucketName(stack, 'Bucket', 'artifacts'), model: calm3(), ...HIGH_PERFORMANCE_PROPS };
  const first = new NeuronxCompile(stack, 'First', firstProps);
  const secondProps = { ...firstProps, ...(secondBucket ? { bucket: secondBucket(stack) } : {}), ...second };
  return { stack, first, firstProps, secondProps, second: () => new NeuronxCompile(stack, 'Second', secondProps) };
}

test('the same artifacts into the same prefix twice: the second fails, naming the first and what to do', () => {
  expect(twins().second).toThrow(new RegExp(
    "^NeuronxCompile 'Stack/Second' cannot work:\n- writes the same artifacts as NeuronxCompile 'Stack/First' \\(the same bucket and prefix "
    + 'neuronx-compile/cyberagent--calm3-22b-chat/[0-9a-f]{16}/\\): two Batch jobs would compile the same thing into one prefix at '
    + ".*from 'Stack/First' \\(TransformersNeuronxSageMakerInferenceModelData\\.fromNeuronxCompile; NeuronxCompile\\.findInStack "
    + 'finds it\\), or give this one another artifactRootPrefix\\.'));
});

test('findInStack finds the compile that writes the same artifacts, from any construct of the stack', () => {
  const { stack, first, secondProps } = twins();
  expect(NeuronxCompile.findInStack(stack, secondProps)).toBe(first);
  expect(NeuronxCompile.findInStack(first, secondProps)).toBe(first);
});

test('another handle on the same bucket is the same bucket', () => {
  const t = twins({}, stack => s3.Bucket.fromBucketName(stack, 'Imported', 'artifacts'));
  expect(t.second).toThrow(/writes the same artifacts as NeuronxCompile 'Stack\/First'/);
  expect(NeuronxCompile.findInStack(t.stack, t.secondProps)).toBe(t.first);
});

test.each([
  ['other artifacts', { servingInstanceType: LOW_COST.serving, compileInstanceType: LOW_COST.compile, compileOptions: LOW_COST.options }, undefined],
  ['another prefix', { artifactRootPrefix: 'copy/' }, undefined],
  ['another bucket', {}, (stack: Stack) => new s3.Bucket(stack, 'Other')],
])('%s: compiles side by side, and findInStack finds none', (_name, second, secondBucket) => {
  const t = twins(second, secondBucket);
  expect(NeuronxCompile.findInStack(t.stack, t.secondProps)).toBeUndefined();
  expect(t.second().compiledArtifactS3Prefix).toMatch(/^(neuronx-compile|copy)\//);
});

test('the same prefix in two stacks: each stack has its own compile', () => {
  const app = new App();
  for (const id of ['A', 'B']) {
    const stack = new Stack(app, id, { env: ENV });
    const props = { vpc: new ec2.Vpc(stack, 'Vpc'), bucket: s3.Bucket.fromBucketName(stack, 'Bucket', 'artifacts'), model: calm3(), ...HIGH_PERFORMANCE_PROPS };
    expect(NeuronxCompile.findInStack(stack, props)).toBeUndefined();
    expect(() => new NeuronxCompile(stack, 'Compile', props)).not.toThrow();
  }
});
