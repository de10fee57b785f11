import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { Construct } from 'constructs';
import type { EndpointDashboardOptions, TransformersNeuronxSageMakerRealtimeInferenceEndpointBase } from '../transformers-neuronx-sagemaker-realtime-inference-endpoint-base';

const PERIOD = Duration.minutes(1);
const WIDTH = 12;

/**
 * The CloudWatch dashboard of an endpoint, four graphs: requests and errors, model latency against the generation
 * time limit, concurrent requests against the workers per instance, and instance utilization.
 *
 * @param scope the scope of the dashboard
 * @param id the id of the dashboard in its scope
 * @param endpoint the endpoint to show
 * @param options the dashboard's name
 */
export function endpointDashboard(
  scope: Construct, id: string, endpoint: TransformersNeuronxSageMakerRealtimeInferenceEndpointBase, options: EndpointDashboardOptions,
): cloudwatch.Dashboard {
  const opts = { period: PERIOD };
  return new cloudwatch.Dashboard(scope, id, {
    dashboardName: options.dashboardName,
    widgets: [[
      new cloudwatch.GraphWidget({
        title: 'Requests and errors (per minute)',
        width: WIDTH,
        left: [
          endpoint.metricInvocations({ ...opts, label: 'Invocations' }),
          endpoint.metricInvocation4XXErrors({ ...opts, label: '4XX' }),
          endpoint.metricInvocation5XXErrors({ ...opts, label: '5XX' }),
          endpoint.metricInvocationModelErrors({ ...opts, label: 'Model errors' }),
        ],
      }),
      new cloudwatch.GraphWidget({
        title: 'Model latency (microseconds)',
        width: WIDTH,
        left: [
          endpoint.metricModelLatency({ ...opts, statistic: cloudwatch.Stats.p(50), label: 'p50' }),
          endpoint.metricModelLatency({ ...opts, statistic: cloudwatch.Stats.p(99), label: 'p99' }),
        ],
        // ModelLatency is in microseconds; the handler ends a generation at its time limit.
        leftAnnotations: [{ value: endpoint.generationTimeLimit.toMilliseconds() * 1e3, label: 'Generation time limit' }],
      }),
    ], [
      new cloudwatch.GraphWidget({
        title: 'Concurrent requests per instance',
        width: WIDTH,
        left: [endpoint.metricConcurrentRequestsPerModel({ ...opts, label: 'Maximum' })],
        leftAnnotations: [{ value: endpoint.workersPerInstance * endpoint.batchSize, label: 'Generated at once (workers x batch size)' }],
      }),
      new cloudwatch.GraphWidget({
        title: 'Instance utilization (%)',
        width: WIDTH,
        left: [
          endpoint.metricCpuUtilization({ ...opts, label: 'CPU (100 per vCPU)' }),
          endpoint.metricMemoryUtilization({ ...opts, label: 'Memory' }),
          endpoint.metricDiskUtilization({ ...opts, label: 'Disk' }),
        ],
      }),
    ]],
  });
}
