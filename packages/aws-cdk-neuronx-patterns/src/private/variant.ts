import { Stack } from 'aws-cdk-lib';

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
