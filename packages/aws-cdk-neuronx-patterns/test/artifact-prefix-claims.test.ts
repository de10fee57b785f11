// Two NeuronxCompiles in one stack that compile the same artifacts into the same bucket and prefix get a warning
// at synth (cdk synth --strict fails on it) that names the first and says how to share it.
import { App, Stack } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { NeuronxCompile, NeuronxCompileProps } from '../src';
import { calm3, ENV, HIGH_PERFORMANCE_PROPS, LOW_COST } from './fixtures';

/** The warnings on the second of two compiles in one stack. */
function secondCompileWarnings(second: Partial<NeuronxCompileProps> = {}, secondBucket?: (stack: Stack) => s3.IBucket): string[] {
  const stack = new Stack(new App(), 'Stack', { env: ENV });
  const common = { vpc: new ec2.Vpc(stack, 'Vpc'), bucket: s3.Bucket.fromBucketName(stack, 'Bucket', 'artifacts'), model: calm3(), ...HIGH_PERFORMANCE_PROPS };
  new NeuronxCompile(stack, 'First', common);
  new NeuronxCompile(stack, 'Second', { ...common, ...(secondBucket ? { bucket: secondBucket(stack) } : {}), ...second });
  return Annotations.fromStack(stack).findWarning('/Stack/Second', Match.stringLikeRegexp('sameArtifactsTwice')).map(w => String(w.entry.data));
}

test('the same artifacts into the same prefix twice: a warning on the second that names the first and what to do', () => {
  const warnings = secondCompileWarnings();
  expect(warnings).toHaveLength(1);
  expect(warnings[0]).toMatch(
    /^compiles the same artifacts into the same bucket and prefix as 'Stack\/First' \(neuronx-compile\/cyberagent--calm3-22b-chat\/[0-9a-f]{16}\/\): two jobs would compile the same thing into one prefix at the same time\. .*fromNeuronxCompile\), or give this one another artifactRootPrefix\./);
});

test('another handle on the same bucket is the same bucket', () => {
  expect(secondCompileWarnings({}, stack => s3.Bucket.fromBucketName(stack, 'Imported', 'artifacts'))).toHaveLength(1);
});

test('other artifacts, another prefix or another bucket compile side by side without a warning', () => {
  const lowCost = { servingInstanceType: LOW_COST.serving, instanceType: LOW_COST.compile, compileOptions: LOW_COST.options };
  expect(secondCompileWarnings(lowCost)).toEqual([]);
  expect(secondCompileWarnings({ artifactRootPrefix: 'copy/' })).toEqual([]);
  expect(secondCompileWarnings({}, stack => new s3.Bucket(stack, 'Other'))).toEqual([]);
});

test('the same prefix in two stacks: no warning', () => {
  const app = new App();
  const stacks = ['A', 'B'].map(id => {
    const stack = new Stack(app, id, { env: ENV });
    new NeuronxCompile(stack, 'Compile', { vpc: new ec2.Vpc(stack, 'Vpc'), bucket: s3.Bucket.fromBucketName(stack, 'Bucket', 'artifacts'), model: calm3(), ...HIGH_PERFORMANCE_PROPS });
    return stack;
  });
  for (const stack of stacks) {
    expect(Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('sameArtifactsTwice'))).toHaveLength(0);
  }
});
