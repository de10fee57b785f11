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

export /** Why the capacity bounds cannot work with an endpoint deployed on `instanceCount` instances. */
function capacityProblems(minCapacity: number, maxCapacity: number, instanceCount: number): string[] {
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
  // Registering the target moves the instance count into [min, max] at once (RegisterScalableTarget API reference).
  if (minCapacity > instanceCount) {
    problems.push(`minCapacity is ${minCapacity}, more than the endpoint's instanceCount (${instanceCount}): set instanceCount to at least ${minCapacity}, or lower minCapacity.`);
  }
  if (maxCapacity < instanceCount) {
    problems.push(`maxCapacity is ${maxCapacity}, less than the endpoint's instanceCount (${instanceCount}): raise maxCapacity to at least ${instanceCount}, or lower instanceCount.`);
  }
  return problems;
}
