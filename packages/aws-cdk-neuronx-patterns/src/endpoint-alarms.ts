import { Duration, Token } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { Construct } from 'constructs';
import { INVOCATION_LIMIT } from './private/endpoint-configuration';
import { throwIfProblems } from './private/problems';
import type { TransformersNeuronxSageMakerRealtimeInferenceEndpointBase } from './transformers-neuronx-sagemaker-realtime-inference-endpoint-base';

/**
 * Options of an endpoint's alarms.
 */
export interface EndpointAlarmsOptions {
  /**
   * An action every alarm takes when it goes into ALARM and when it returns to OK (e.g. a
   * `cloudwatch_actions.SnsAction`).
   *
   * @default - no action: the alarms only show in the CloudWatch console
   */
  readonly action?: cloudwatch.IAlarmAction;

  /**
   * The share of requests answered with a 5XX error, over 5 minutes, at which the server errors alarm goes off
   * (more than 0, at most 1).
   *
   * @default 0.05
   */
  readonly serverErrorRateThreshold?: number;

  /**
   * The 99th percentile of the model latency, over 5 minutes, at which the latency alarm goes off (at most
   * SageMaker's 60 second invocation limit).
   *
   * @default - the endpoint's generation time limit (`generationTimeLimit`, 50 seconds by default): an answer that takes this long was cut short
   */
  readonly modelLatencyThreshold?: Duration;
}

/**
 * Properties of EndpointAlarms.
 */
export interface EndpointAlarmsProps extends EndpointAlarmsOptions {
  /** The endpoint to watch. */
  readonly endpoint: TransformersNeuronxSageMakerRealtimeInferenceEndpointBase;
}

const DEFAULT_SERVER_ERROR_RATE = 0.05;
const PERIOD = Duration.minutes(5);
// Instances publish their utilization metrics every minute (SageMaker developer guide, "Amazon SageMaker AI metrics in
// Amazon CloudWatch"); five minutes without one from any instance means none is running.
const INSTANCE_PERIOD = Duration.minutes(1);
const INSTANCE_EVALUATION_PERIODS = 5;

/**
 * The alarms an operator of a transformers-neuronx endpoint wants: server errors, answers running into the time limit,
 * and no instance running. Create them with `endpoint.addAlarms(...)`.
 */
export class EndpointAlarms extends Construct {
  /**
   * Goes off when at least `serverErrorRateThreshold` of the requests in 5 minutes were answered with a 5XX error
   * (Invocation5XXErrors, Average: SageMaker sends 1 for each 5XX and 0 for any other answer). No requests: OK.
   */
  public readonly serverErrors: cloudwatch.Alarm;

  /**
   * Goes off when the 99th percentile of ModelLatency over 5 minutes reaches `modelLatencyThreshold`: answers are
   * being cut short by the generation time limit, or come close to SageMaker's 60 second limit. No requests: OK.
   */
  public readonly modelLatency: cloudwatch.Alarm;

  /**
   * Goes off when no instance of the endpoint has published its utilization metrics for 5 minutes: none is running
   * (SageMaker is replacing failed instances, or cannot start one). Missing data counts as breaching.
   */
  public readonly noInstance: cloudwatch.Alarm;

  /** Every alarm above. */
  public readonly alarms: cloudwatch.Alarm[];

  /**
   * Creates the alarms and adds the action to each.
   *
   * @param scope the scope of the alarms
   * @param id the id of the alarms in their scope
   * @param props the endpoint, the action and the thresholds
   */
  constructor(scope: Construct, id: string, props: EndpointAlarmsProps) {
    // Checked before the construct exists, so that a failed call leaves nothing behind.
    const { endpoint } = props;
    const errorRate = props.serverErrorRateThreshold ?? DEFAULT_SERVER_ERROR_RATE;
    const latency = props.modelLatencyThreshold ?? endpoint.generationTimeLimit;
    throwIfProblems(`The alarms of '${endpoint.node.path}'`, [
      ...(!Token.isUnresolved(errorRate) && !(errorRate > 0 && errorRate <= 1)
        ? [`serverErrorRateThreshold is ${errorRate}: it is a share of the requests, more than 0 and at most 1 (e.g. ${DEFAULT_SERVER_ERROR_RATE} for 5%).`]
        : []),
      ...(latency.isUnresolved() || (latency.toMilliseconds() > 0 && latency.toMilliseconds() <= INVOCATION_LIMIT.toMilliseconds())
        ? []
        : [`modelLatencyThreshold is ${latency.toHumanString()}: it must be more than 0 and at most ${INVOCATION_LIMIT.toHumanString()}, SageMaker's invocation limit (e.g. ${endpoint.generationTimeLimit.toHumanString()}, the handler's generation time limit).`]),
    ]);
    super(scope, id);

    this.serverErrors = new cloudwatch.Alarm(this, 'ServerErrors', {
      alarmDescription: `${endpoint.node.path}: at least ${+(errorRate * 100).toFixed(2)}% of the requests in 5 minutes were answered with a 5XX error. See the endpoint's log group /aws/sagemaker/Endpoints/<endpoint name>.`,
      metric: endpoint.metricInvocation5XXErrors({ statistic: cloudwatch.Stats.AVERAGE, period: PERIOD }),
      threshold: errorRate,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.modelLatency = new cloudwatch.Alarm(this, 'ModelLatency', {
      alarmDescription: `${endpoint.node.path}: 1% of the answers in 5 minutes took ${latency.toHumanString()} or more; SageMaker ends a request after ${INVOCATION_LIMIT.toHumanString()}. Ask for fewer new tokens or shorter prompts, or add instances.`,
      metric: endpoint.metricModelLatency({ statistic: cloudwatch.Stats.p(99), period: PERIOD }),
      // ModelLatency is in microseconds (SageMaker developer guide, "Amazon SageMaker AI metrics in Amazon CloudWatch").
      threshold: latency.toMilliseconds() * 1000,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.noInstance = new cloudwatch.Alarm(this, 'NoInstance', {
      alarmDescription: `${endpoint.node.path}: no instance has published metrics for ${INSTANCE_EVALUATION_PERIODS} minutes; requests cannot be answered. See the endpoint's events and log group.`,
      metric: endpoint.metricMemoryUtilization({ statistic: cloudwatch.Stats.SAMPLE_COUNT, period: INSTANCE_PERIOD }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: INSTANCE_EVALUATION_PERIODS,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
    this.alarms = [this.serverErrors, this.modelLatency, this.noInstance];
    if (props.action) {
      for (const alarm of this.alarms) {
        alarm.addAlarmAction(props.action);
        alarm.addOkAction(props.action);
      }
    }
  }
}
