import { Annotations, Stack } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';

/**
 * One NeuronxCompile per bucket and artifact prefix in a stack. Two would be two Batch jobs compiling the same
 * thing into the same prefix at the same time (the prefix is a hash of what determines the artifacts), each deploy
 * wait signalled by whichever finishes. Endpoints that need the same artifacts serve one compile instead
 * (calm3chat22b.SageMakerRealtimeInference shares one by itself).
 */
const CLAIMS = new WeakMap<Stack, Map<string, string>>();

/** Records that `compile` writes `prefix` of `bucket`; warns on `compile`, naming the first, when a compile in its stack already does. */
export function claimArtifactPrefix(compile: Construct, bucket: s3.IBucket, prefix: string): void {
  const stack = Stack.of(compile);
  const claims = CLAIMS.get(stack) ?? new Map<string, string>();
  CLAIMS.set(stack, claims);
  // By the bucket's name as the template has it: two handles on one bucket are one bucket.
  const key = `${JSON.stringify(stack.resolve(bucket.bucketName))}/${prefix}`;
  const first = claims.get(key);
  if (first !== undefined) {
    Annotations.of(compile).addWarningV2('aws-cdk-neuronx-patterns:sameArtifactsTwice',
      `compiles the same artifacts into the same bucket and prefix as '${first}' (${prefix}): two jobs would compile the same `
      + `thing into one prefix at the same time. Serve every endpoint that needs these artifacts from '${first}' `
      + '(TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile), or give this one another artifactRootPrefix.');
    return;
  }
  claims.set(key, compile.node.path);
}
