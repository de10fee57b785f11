import { Duration, Resource, Stack, Token } from 'aws-cdk-lib';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sagemaker from 'aws-cdk-lib/aws-sagemaker';
import { aws_sagemaker as sagemakerRefs } from 'aws-cdk-lib/interfaces';
import { EndpointAlarms, EndpointAlarmsOptions } from './endpoint-alarms';
import { throwIfProblems } from './private/sizing';
import { VARIANT_NAME } from './private/variant';
import { ScalableInstanceCount } from './scalable-instance-count';

// Metric namespaces (SageMaker developer guide, "Amazon SageMaker AI metrics in Amazon CloudWatch",
// https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html): the invocation metrics of a variant are
// in AWS/SageMaker, the utilization of its instances in /aws/sagemaker/Endpoints; both take the dimensions
// EndpointName and VariantName.
const INVOCATION_NAMESPACE = 'AWS/SageMaker';
const INSTANCE_NAMESPACE = '/aws/sagemaker/Endpoints';

/**
 * What a TransformersNeuronxSageMakerRealtimeInferenceEndpoint offers besides its resources: aws-cdk-lib's
 * `sagemaker.IEndpoint` (so `apigateway.SagemakerIntegration` and other integrations take it), its CloudWatch metrics,
 * alarms and the autoscaling of its instance count.
 */
export abstract class TransformersNeuronxSageMakerRealtimeInferenceEndpointBase extends Resource implements sagemaker.IEndpoint {
  /** The endpoint's name. */
  public abstract readonly endpointName: string;
  /** The endpoint's ARN. */
  public abstract readonly endpointArn: string;
  /** Model copies (workers) on each instance. */
  public abstract readonly workersPerInstance: number;
  /** The number of instances the endpoint is deployed with. */
  public abstract readonly instanceCount: number;
  /** How long SageMaker may take to copy the model data to a new instance. */
  public abstract readonly modelDataDownloadTimeout: Duration;
  /** How long a new instance's container may take to load the model and pass its first health check. */
  public abstract readonly containerStartupHealthCheckTimeout: Duration;

  private scalableInstanceCount?: ScalableInstanceCount;

  /** A reference to this endpoint, for aws-cdk-lib's `IEndpointRef`. */
  public get endpointRef(): sagemakerRefs.EndpointReference {
    return { endpointArn: this.endpointArn };
  }

  /** The name of the endpoint's one production variant, the `VariantName` dimension of its metrics. */
  public get variantName(): string {
    return VARIANT_NAME;
  }

  /**
   * Grants invoking this endpoint: `sagemaker:InvokeEndpoint` on its ARN. The same action allows
   * InvokeEndpointWithResponseStream (its API reference); the inference handler answers in one response.
   *
   * @param grantee the principal that calls the endpoint
   */
  public grantInvoke(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['sagemaker:InvokeEndpoint'],
      resourceArns: [this.endpointArn],
    });
  }

  /**
   * A metric of this endpoint's variant in the AWS/SageMaker namespace (the invocation metrics).
   *
   * @param metricName the metric's name, e.g. `Invocations`
   * @param props options of the metric
   * @default - sum over 5 minutes
   */
  public metric(metricName: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.variantMetric(INVOCATION_NAMESPACE, metricName, cloudwatch.Stats.SUM, props);
  }

  /**
   * The number of InvokeEndpoint requests.
   *
   * @param props options of the metric
   * @default - sum over 5 minutes
   */
  public metricInvocations(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('Invocations', props);
  }

  /**
   * The number of requests answered with a 4XX code (1 per such request, 0 per other request: Average is their share).
   *
   * @param props options of the metric
   * @default - sum over 5 minutes
   */
  public metricInvocation4XXErrors(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('Invocation4XXErrors', props);
  }

  /**
   * The number of requests answered with a 5XX code (1 per such request, 0 per other request: Average is their share).
   *
   * @param props options of the metric
   * @default - sum over 5 minutes
   */
  public metricInvocation5XXErrors(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('Invocation5XXErrors', props);
  }

  /**
   * The number of requests the model did not answer with 2XX: 4XX and 5XX answers, but also socket errors, malformed
   * responses and requests that ran past SageMaker's 60 second limit.
   *
   * @param props options of the metric
   * @default - sum over 5 minutes
   */
  public metricInvocationModelErrors(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('InvocationModelErrors', props);
  }

  /**
   * The number of requests per instance (each request counts 1 / the number of instances).
   *
   * @param props options of the metric
   * @default - sum over 5 minutes
   */
  public metricInvocationsPerInstance(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('InvocationsPerInstance', props);
  }

  /**
   * The time the model took to answer, as SageMaker saw it, in microseconds.
   *
   * @param props options of the metric
   * @default - average over 5 minutes
   */
  public metricModelLatency(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.variantMetric(INVOCATION_NAMESPACE, 'ModelLatency', cloudwatch.Stats.AVERAGE, props);
  }

  /**
   * The time SageMaker added to the model latency (authentication, payload transfer), in microseconds.
   *
   * @param props options of the metric
   * @default - average over 5 minutes
   */
  public metricOverheadLatency(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.variantMetric(INVOCATION_NAMESPACE, 'OverheadLatency', cloudwatch.Stats.AVERAGE, props);
  }

  /**
   * The number of requests a model container (one per instance) is answering or holding in its queue; published
   * every 10 seconds. An instance answers `workersPerInstance` requests at once.
   *
   * @param props options of the metric
   * @default - maximum over 5 minutes (SageMaker publishes Minimum and Maximum)
   */
  public metricConcurrentRequestsPerModel(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.variantMetric(INVOCATION_NAMESPACE, 'ConcurrentRequestsPerModel', cloudwatch.Stats.MAXIMUM, props);
  }

  /**
   * The CPU utilization of the instances' containers, in percent: the sum over the vCPUs (up to 100 per vCPU).
   *
   * @param props options of the metric
   * @default - average over 5 minutes
   */
  public metricCpuUtilization(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.variantMetric(INSTANCE_NAMESPACE, 'CPUUtilization', cloudwatch.Stats.AVERAGE, props);
  }

  /**
   * The share of the instances' host memory the containers use, in percent (not the accelerators' memory).
   *
   * @param props options of the metric
   * @default - average over 5 minutes
   */
  public metricMemoryUtilization(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.variantMetric(INSTANCE_NAMESPACE, 'MemoryUtilization', cloudwatch.Stats.AVERAGE, props);
  }

  /**
   * The share of the instances' disk the containers use, in percent.
   *
   * @param props options of the metric
   * @default - average over 5 minutes
   */
  public metricDiskUtilization(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.variantMetric(INSTANCE_NAMESPACE, 'DiskUtilization', cloudwatch.Stats.AVERAGE, props);
  }

  /**
   * Lets Application Auto Scaling change the instance count between `minCapacity` and `maxCapacity`; add policies to
   * the result (`scaleOnConcurrentRequests`, `scaleOnInvocations`, `scaleOnSchedule`). Once per endpoint.
   *
   * @param props the capacity bounds: `minCapacity` (default 1) at most the endpoint's `instanceCount`, `maxCapacity` at least it
   */
  public autoScaleInstanceCount(props: appscaling.EnableScalingProps): ScalableInstanceCount {
    const minCapacity = props.minCapacity ?? 1;
    const { maxCapacity } = props;
    this.checkUsage([
      ...(this.scalableInstanceCount
        ? ['autoScaleInstanceCount was called before: an endpoint has one scalable instance count; add more policies to the one it returned.']
        : []),
      ...capacityProblems(minCapacity, maxCapacity, this.instanceCount),
    ]);
    this.scalableInstanceCount = new ScalableInstanceCount(this, 'InstanceCount', {
      serviceNamespace: appscaling.ServiceNamespace.SAGEMAKER,
      // Resource id and scalable dimension of a variant (SageMaker developer guide, "Register a model").
      resourceId: `endpoint/${this.endpointName}/variant/${this.variantName}`,
      dimension: 'sagemaker:variant:DesiredInstanceCount',
      role: this.scalingRole(),
      minCapacity,
      maxCapacity,
      workersPerInstance: this.workersPerInstance,
      // A new instance serves once SageMaker has copied the model data and the container has loaded the model.
      instanceWarmup: this.modelDataDownloadTimeout.plus(this.containerStartupHealthCheckTimeout),
    });
    return this.scalableInstanceCount;
  }

  /**
   * Adds CloudWatch alarms on server errors, answers running into the time limit and no instance running, with an
   * optional action on each. Once per endpoint.
   *
   * @param options the action and the thresholds
   */
  public addAlarms(options: EndpointAlarmsOptions = {}): EndpointAlarms {
    const id = 'Alarms';
    this.checkUsage(this.node.tryFindChild(id) ? ['addAlarms was called before: use the alarms it returned (their `alarms` list).'] : []);
    return new EndpointAlarms(this, id, { ...options, endpoint: this });
  }

  private variantMetric(namespace: string, metricName: string, statistic: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace,
      metricName,
      dimensionsMap: { EndpointName: this.endpointName, VariantName: this.variantName },
      statistic,
      ...props,
    });
  }

  /**
   * Application Auto Scaling's service-linked role for SageMaker variants, which it creates on first use (Application
   * Auto Scaling user guide, "Service-linked roles").
   */
  private scalingRole(): iam.IRole {
    return iam.Role.fromRoleArn(this, 'ScalingRole', Stack.of(this).formatArn({
      service: 'iam',
      region: '',
      resource: 'role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com',
      resourceName: 'AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint',
    }));
  }

  private checkUsage(problems: string[]): void {
    throwIfProblems(`TransformersNeuronxSageMakerRealtimeInferenceEndpoint '${this.node.path}'`, problems);
  }
}

/** Why the capacity bounds cannot work with an endpoint deployed on `instanceCount` instances. */
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
