import { Stack, Token } from 'aws-cdk-lib';

/**
 * The endpoint's one production variant: it takes all traffic. Its name is in the variant's CloudWatch dimensions
 * (VariantName) and in the Application Auto Scaling resource id (endpoint/<name>/variant/<variant>).
 */
export const VARIANT_NAME = 'AllTraffic';

/**
 * The ARN of Application Auto Scaling's service-linked role for SageMaker variants, which it creates on first use
 * (Application Auto Scaling user guide, "Service-linked roles").
 */
export function scalingRoleArn(stack: Stack): string {
  return stack.formatArn({
    service: 'iam',
    region: '',
    resource: 'role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com',
    resourceName: 'AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint',
  });
}

/**
 * The InitialInstanceCount of an autoscaled variant: registering the scalable target moves the count into
 * [minCapacity, maxCapacity] at once, so the endpoint starts at minCapacity, and no change of the limits or of
 * `instanceCount` touches the (create-only) endpoint config.
 */
export const AUTOSCALED_INITIAL_INSTANCE_COUNT = 1;

/** Why the capacity bounds cannot work. */
export function capacityProblems(minCapacity: number, maxCapacity: number): string[] {
  if (Token.isUnresolved(minCapacity) || Token.isUnresolved(maxCapacity)) return [];
  const problems: string[] = [];
  for (const [prop, value] of [['minCapacity', minCapacity], ['maxCapacity', maxCapacity]] as const) {
    if (!Number.isInteger(value) || value < 1) {
      // A variant keeps at least one instance (SageMaker developer guide, "Register a model": min and max at least 1).
      problems.push(`${prop} is ${value}: it must be a whole number of instances, at least 1.`);
    }
  }
  if (problems.length > 0) return problems;
  if (maxCapacity < minCapacity) {
    problems.push(`maxCapacity (${maxCapacity}) is less than minCapacity (${minCapacity}): raise maxCapacity to at least ${minCapacity}.`);
  }
  return problems;
}
