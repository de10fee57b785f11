import * as path from 'path';
import { Aspects, Duration } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as sagemaker from 'aws-cdk-lib/aws-sagemaker';
import * as sns from 'aws-cdk-lib/aws-sns';
import { AwsSolutionsChecks } from 'cdk-nag';
import * as ts from 'typescript';
import { EndpointAlarmsOptions, NeuronxInstanceType, TransformersNeuronxSageMakerRealtimeInferenceEndpoint } from '../src';
import { endpointFixture, EndpointFixture, HIGH_PERFORMANCE, HIGH_PERFORMANCE_PROPS, logicalId } from './fixtures';

/** What the template says about the endpoint: its name (a GetAtt of the CfnEndpoint) and its variant's timeouts. */
function endpointName(fixture: EndpointFixture): unknown {
  return { 'Fn::GetAtt': [logicalId(fixture.stack, fixture.endpoint.node.findChild('Endpoint')), 'EndpointName'] };
}

const DIMENSIONS = (fixture: EndpointFixture) => Match.arrayEquals([
  { Name: 'EndpointName', Value: endpointName(fixture) },
  { Name: 'VariantName', Value: 'AllTraffic' },
]);

function variantTimeouts(template: Template): { download: number; startup: number } {
  const config = Object.values(template.findResources('AWS::SageMaker::EndpointConfig'))[0] as any;
  const variant = config.Properties.ProductionVariants[0];
  return { download: variant.ModelDataDownloadTimeoutInSeconds, startup: variant.ContainerStartupHealthCheckTimeoutInSeconds };
}

function errorOf(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('expected a synth error');
}

describe('IEndpoint', () => {
  test('the endpoint is aws-cdk-lib\'s sagemaker.IEndpoint: API Gateway integrates it, with its ARN and environment', () => {
    const fixture = endpointFixture();
    const { stack, endpoint } = fixture;
    const asInterface: sagemaker.IEndpoint = endpoint;
    expect(stack.resolve(asInterface.endpointRef.endpointArn)).toEqual({ Ref: logicalId(stack, endpoint.node.findChild('Endpoint')) });
    expect(asInterface.env).toEqual({ account: '123456789012', region: 'us-east-1' });
    const api = new apigateway.RestApi(stack, 'Api');
    api.root.addMethod('POST', new apigateway.SagemakerIntegration(endpoint));
    const method = Object.values(Template.fromStack(stack).findResources('AWS::ApiGateway::Method'))[0] as any;
    // The integration calls InvokeEndpoint on this endpoint's name.
    expect(JSON.stringify(method.Properties.Integration.Uri)).toContain(JSON.stringify(endpointName(fixture)));
  });

  test('a TypeScript app that passes the endpoint where an IEndpoint is expected type-checks', () => {
    const file = path.join(__dirname, 'iendpoint-usage.generated.ts');
    const source = [
      "import * as apigateway from 'aws-cdk-lib/aws-apigateway';",
      "import * as sagemaker from 'aws-cdk-lib/aws-sagemaker';",
      "import { TransformersNeuronxSageMakerRealtimeInferenceEndpoint } from '../src';",
      'export function wire(endpoint: TransformersNeuronxSageMakerRealtimeInferenceEndpoint, api: apigateway.RestApi): sagemaker.IEndpoint {',
      "  api.root.addMethod('POST', new apigateway.SagemakerIntegration(endpoint));",
      '  return endpoint;',
      '}',
    ].join('\n');
    const options: ts.CompilerOptions = {
      noEmit: true,
      strict: true,
      skipLibCheck: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.CommonJS,
      moduleResolution: ts.ModuleResolutionKind.Node10,
      types: [],
    };
    const host = ts.createCompilerHost(options);
    const readFile = host.readFile.bind(host);
    host.readFile = name => (path.resolve(name) === file ? source : readFile(name));
    const fileExists = host.fileExists.bind(host);
    host.fileExists = name => path.resolve(name) === file || fileExists(name);
    const program = ts.createProgram([file], options, host);
    const errors = ts.getPreEmitDiagnostics(program, program.getSourceFile(file))
      .map(d => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    expect(errors).toEqual([]);
  }, 120_000);
});

describe('metrics', () => {
  let fixture: EndpointFixture;
  let template: Template;
  const cases: Array<[string, (e: TransformersNeuronxSageMakerRealtimeInferenceEndpoint) => cloudwatch.Metric, string, string, string]> = [
    ['metric', e => e.metric('Invocations'), 'AWS/SageMaker', 'Invocations', 'Sum'],
    ['metricInvocations', e => e.metricInvocations(), 'AWS/SageMaker', 'Invocations', 'Sum'],
    ['metricInvocation4XXErrors', e => e.metricInvocation4XXErrors(), 'AWS/SageMaker', 'Invocation4XXErrors', 'Sum'],
    ['metricInvocation5XXErrors', e => e.metricInvocation5XXErrors(), 'AWS/SageMaker', 'Invocation5XXErrors', 'Sum'],
    ['metricInvocationModelErrors', e => e.metricInvocationModelErrors(), 'AWS/SageMaker', 'InvocationModelErrors', 'Sum'],
    ['metricInvocationsPerInstance', e => e.metricInvocationsPerInstance(), 'AWS/SageMaker', 'InvocationsPerInstance', 'Sum'],
    ['metricModelLatency', e => e.metricModelLatency(), 'AWS/SageMaker', 'ModelLatency', 'Average'],
    ['metricOverheadLatency', e => e.metricOverheadLatency(), 'AWS/SageMaker', 'OverheadLatency', 'Average'],
    ['metricConcurrentRequestsPerModel', e => e.metricConcurrentRequestsPerModel(), 'AWS/SageMaker', 'ConcurrentRequestsPerModel', 'Maximum'],
    ['metricCpuUtilization', e => e.metricCpuUtilization(), '/aws/sagemaker/Endpoints', 'CPUUtilization', 'Average'],
    ['metricMemoryUtilization', e => e.metricMemoryUtilization(), '/aws/sagemaker/Endpoints', 'MemoryUtilization', 'Average'],
    ['metricDiskUtilization', e => e.metricDiskUtilization(), '/aws/sagemaker/Endpoints', 'DiskUtilization', 'Average'],
  ];

  beforeAll(() => {
    fixture = endpointFixture();
    cases.forEach(([name, metricOf]) => metricOf(fixture.endpoint).createAlarm(fixture.stack, name, { threshold: 1, evaluationPeriods: 1 }));
    template = Template.fromStack(fixture.stack);
  });

  test.each(cases)('%s: namespace, name, the variant\'s dimensions, statistic, 5 minutes', (name, _metricOf, namespace, metricName, statistic) => {
    const alarm = template.toJSON().Resources[fixture.stack.getLogicalId(fixture.stack.node.findChild(name).node.defaultChild as never)];
    expect(alarm.Properties).toMatchObject({ Namespace: namespace, MetricName: metricName, Statistic: statistic, Period: 300 });
    expect(alarm.Properties.Dimensions).toEqual([
      { Name: 'EndpointName', Value: endpointName(fixture) },
      { Name: 'VariantName', Value: 'AllTraffic' },
    ]);
    // No unit filter: CloudWatch would ignore every datum published with another unit.
    expect(alarm.Properties).not.toHaveProperty('Unit');
  });

  test('options override the defaults', () => {
    const metric = fixture.endpoint.metricModelLatency({ statistic: 'p99', period: Duration.minutes(1) });
    expect(metric.statistic).toBe('p99');
    expect(metric.period.toSeconds()).toBe(60);
  });
});

describe('autoScaleInstanceCount', () => {
  test('registers the variant\'s desired instance count with Application Auto Scaling, through its service-linked role', () => {
    const fixture = endpointFixture({}, { instanceCount: 2 });
    fixture.endpoint.autoScaleInstanceCount({ maxCapacity: 4 });
    const template = Template.fromStack(fixture.stack);
    template.resourceCountIs('AWS::ApplicationAutoScaling::ScalableTarget', 1);
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      ServiceNamespace: 'sagemaker',
      ScalableDimension: 'sagemaker:variant:DesiredInstanceCount',
      ResourceId: { 'Fn::Join': ['', ['endpoint/', endpointName(fixture), '/variant/AllTraffic']] },
      MinCapacity: 1,
      MaxCapacity: 4,
      RoleARN: {
        'Fn::Join': ['', Match.arrayWith([Match.stringLikeRegexp(
          ':iam::123456789012:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint$')])],
      },
    });
    template.resourceCountIs('AWS::IAM::Role', Object.keys(Template.fromStack(endpointFixture().stack).findResources('AWS::IAM::Role')).length);
    // A stack update with a new endpoint config keeps the scaled instance count instead of resetting it to 2.
    template.hasResourceProperties('AWS::SageMaker::Endpoint', { RetainAllVariantProperties: true });
  });

  /** The template's endpoint config and the logical id of its endpoint. */
  function endpointShape(fixture: EndpointFixture): { config: unknown; endpointId: string } {
    const template = Template.fromStack(fixture.stack);
    const config = Object.values(template.findResources('AWS::SageMaker::EndpointConfig'))[0];
    return { config, endpointId: Object.keys(template.findResources('AWS::SageMaker::Endpoint'))[0] };
  }

  test('once autoscaled, instanceCount does not reach the endpoint config: a change of it makes no new config (no blue/green deploy), and a warning names it', () => {
    const shapes = [1, 3].map(instanceCount => {
      const fixture = endpointFixture({}, { instanceCount });
      fixture.endpoint.autoScaleInstanceCount({ minCapacity: 1, maxCapacity: 4 });
      return { fixture, ...endpointShape(fixture) };
    });
    expect(shapes[1].config).toEqual(shapes[0].config);
    expect(shapes[1].endpointId).toBe(shapes[0].endpointId);
    Template.fromStack(shapes[1].fixture.stack).hasResourceProperties('AWS::SageMaker::EndpointConfig', {
      ProductionVariants: [Match.objectLike({ InitialInstanceCount: 1 })],
    });
    Annotations.fromStack(shapes[1].fixture.stack).hasWarning('/TestStack/Endpoint', Match.stringLikeRegexp(
      '^instanceCount is 3, but autoScaleInstanceCount hands the instance count to Application Auto Scaling: the endpoint starts at minCapacity \\(1\\).*set minCapacity and maxCapacity'));
    // Without autoscaling the count is the endpoint config's, and no warning is given.
    const plain = endpointFixture({}, { instanceCount: 3 });
    Template.fromStack(plain.stack).hasResourceProperties('AWS::SageMaker::EndpointConfig', {
      ProductionVariants: [Match.objectLike({ InitialInstanceCount: 3 })],
    });
    expect(Annotations.fromStack(plain.stack).findWarning('*', Match.stringLikeRegexp('instanceCount'))).toHaveLength(0);
  });

  test('once autoscaled, a change of the capacity limits changes only the scalable target, not the endpoint config', () => {
    const [small, large] = [{ minCapacity: 1, maxCapacity: 2 }, { minCapacity: 2, maxCapacity: 5 }].map(limits => {
      const fixture = endpointFixture();
      fixture.endpoint.autoScaleInstanceCount(limits);
      return endpointShape(fixture);
    });
    expect(large).toEqual(small);
  });

  test('once autoscaled, another instance type is another endpoint (SageMaker refuses to change the instance type of a registered variant in place); the model data is not', () => {
    const build = (instanceType: NeuronxInstanceType | undefined, autoscale: boolean, props = HIGH_PERFORMANCE_PROPS) => {
      const fixture = endpointFixture({ props }, { instanceType });
      if (autoscale) fixture.endpoint.autoScaleInstanceCount({ maxCapacity: 2 });
      return { fixture, ...endpointShape(fixture) };
    };
    const before = build(undefined, true);
    const after = build(NeuronxInstanceType.INF2_48XLARGE, true);
    expect(after.endpointId).not.toBe(before.endpointId);
    // The scalable target follows the new endpoint's name (a new ResourceId: CloudFormation registers the new one).
    Template.fromStack(after.fixture.stack).hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      ResourceId: { 'Fn::Join': ['', ['endpoint/', { 'Fn::GetAtt': [after.endpointId, 'EndpointName'] }, '/variant/AllTraffic']] },
    });
    // A new model (other compile options) on the same instance type is allowed in place: the same endpoint.
    const otherModel = build(undefined, true, { ...HIGH_PERFORMANCE_PROPS, compileOptions: { ...HIGH_PERFORMANCE.options, batchSize: 2 } });
    expect(otherModel.endpointId).toBe(before.endpointId);
    const model = (f: EndpointFixture) => Template.fromStack(f.stack).findResources('AWS::SageMaker::Model');
    expect(model(otherModel.fixture)).not.toEqual(model(before.fixture));
    // Without autoscaling SageMaker changes the instance type in place (blue/green): the endpoint keeps its name.
    expect(build(NeuronxInstanceType.INF2_48XLARGE, false).endpointId).toBe(build(undefined, false).endpointId);
  });

  test('scaleOnConcurrentRequests tracks the high-resolution ConcurrentRequestsPerModel at the workers per instance (batch size 1), with cooldowns of an instance warm-up', () => {
    const fixture = endpointFixture({ props: HIGH_PERFORMANCE_PROPS });
    expect(fixture.endpoint.workersPerInstance).toBe(3);
    fixture.endpoint.autoScaleInstanceCount({ maxCapacity: 3 }).scaleOnConcurrentRequests('Concurrency');
    const template = Template.fromStack(fixture.stack);
    const { download, startup } = variantTimeouts(template);
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      PolicyType: 'TargetTrackingScaling',
      TargetTrackingScalingPolicyConfiguration: {
        PredefinedMetricSpecification: { PredefinedMetricType: 'SageMakerVariantConcurrentRequestsPerModelHighResolution' },
        TargetValue: 3,
        ScaleInCooldown: download + startup,
        ScaleOutCooldown: download + startup,
      },
    });
    expect(download + startup).toBeGreaterThan(1800);
  });

  test('scaleOnConcurrentRequests: the default target is the requests an instance generates at once, workers x batch size', () => {
    const fixture = endpointFixture({ props: { ...HIGH_PERFORMANCE_PROPS, compileOptions: { ...HIGH_PERFORMANCE.options, batchSize: 2 } } });
    expect([fixture.endpoint.workersPerInstance, fixture.endpoint.batchSize]).toEqual([3, 2]);
    fixture.endpoint.autoScaleInstanceCount({ maxCapacity: 3 }).scaleOnConcurrentRequests('Concurrency');
    Template.fromStack(fixture.stack).hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: { TargetValue: 6 },
    });
  });

  test('scaleOnConcurrentRequests takes a target and cooldowns', () => {
    const fixture = endpointFixture();
    fixture.endpoint.autoScaleInstanceCount({ maxCapacity: 2 }).scaleOnConcurrentRequests('Concurrency', {
      targetConcurrentRequests: 2, scaleInCooldown: Duration.hours(1), scaleOutCooldown: Duration.minutes(20), disableScaleIn: true,
    });
    Template.fromStack(fixture.stack).hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: { TargetValue: 2, ScaleInCooldown: 3600, ScaleOutCooldown: 1200, DisableScaleIn: true },
    });
  });

  test('scaleOnInvocations tracks InvocationsPerInstance per minute: max requests per second x safety factor x 60', () => {
    const fixture = endpointFixture();
    fixture.endpoint.autoScaleInstanceCount({ maxCapacity: 2 }).scaleOnInvocations('Invocations', { maxRequestsPerSecond: 0.2 });
    Template.fromStack(fixture.stack).hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: {
        PredefinedMetricSpecification: { PredefinedMetricType: 'SageMakerVariantInvocationsPerInstance' },
        TargetValue: 6,
      },
    });
  });

  test('scaleOnSchedule adds a scheduled action to the target', () => {
    const fixture = endpointFixture();
    fixture.endpoint.autoScaleInstanceCount({ maxCapacity: 2 }).scaleOnSchedule('Night', {
      schedule: appscaling.Schedule.cron({ hour: '20', minute: '0' }), maxCapacity: 1,
    });
    Template.fromStack(fixture.stack).hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      ScheduledActions: [Match.objectLike({ Schedule: 'cron(0 20 * * ? *)', ScalableTargetAction: { MaxCapacity: 1 } })],
    });
  });

  test('nothing is added unless asked for', () => {
    const template = Template.fromStack(endpointFixture().stack);
    template.resourceCountIs('AWS::ApplicationAutoScaling::ScalableTarget', 0);
    template.resourceCountIs('AWS::CloudWatch::Alarm', 0);
    template.hasResourceProperties('AWS::SageMaker::Endpoint', { RetainAllVariantProperties: Match.absent() });
  });

  test.each([
    [{ minCapacity: 0, maxCapacity: 2 }, 1, /minCapacity is 0: it must be a whole number of instances, at least 1/],
    [{ maxCapacity: 1.5 }, 1, /maxCapacity is 1.5: it must be a whole number of instances, at least 1/],
    [{ minCapacity: 3, maxCapacity: 2 }, 3, /maxCapacity \(2\) is less than minCapacity \(3\): raise maxCapacity to at least 3/],
  ])('capacity %j with instanceCount %d fails at synth', (props, instanceCount, message) => {
    const { endpoint } = endpointFixture({}, { instanceCount });
    expect(errorOf(() => endpoint.autoScaleInstanceCount(props)))
      .toMatch(new RegExp(`^TransformersNeuronxSageMakerRealtimeInferenceEndpoint 'TestStack/Endpoint' cannot work:\\n- .*${message.source}`, 's'));
  });

  test('a second call fails: one scalable target per variant', () => {
    const { endpoint } = endpointFixture();
    endpoint.autoScaleInstanceCount({ maxCapacity: 2 });
    expect(errorOf(() => endpoint.autoScaleInstanceCount({ maxCapacity: 3 })))
      .toMatch(/autoScaleInstanceCount was called before: an endpoint has one scalable instance count; add more policies to the one it returned/);
  });

  test('bad policy targets fail at synth, naming the prop', () => {
    const { endpoint } = endpointFixture();
    const count = endpoint.autoScaleInstanceCount({ maxCapacity: 2 });
    expect(errorOf(() => count.scaleOnInvocations('A', { maxRequestsPerSecond: 0 }))).toMatch(/maxRequestsPerSecond is 0: it must be more than 0/);
    expect(errorOf(() => count.scaleOnInvocations('B', { maxRequestsPerSecond: 1, safetyFactor: 1.5 }))).toMatch(/safetyFactor is 1.5: it must be more than 0 and at most 1/);
    expect(errorOf(() => count.scaleOnConcurrentRequests('C', { targetConcurrentRequests: -1 })))
      .toMatch(/targetConcurrentRequests is -1: it must be more than 0 \(e\.g\. 1, the requests one instance answers at once\)/);
  });
});

describe('addAlarms', () => {
  function alarmsTemplate(options?: EndpointAlarmsOptions) {
    const fixture = endpointFixture();
    const alarms = fixture.endpoint.addAlarms(options);
    return { fixture, alarms, template: Template.fromStack(fixture.stack) };
  }

  function alarmProps(fixture: EndpointFixture, template: Template, alarm: cloudwatch.Alarm): any {
    return template.toJSON().Resources[logicalId(fixture.stack, alarm)].Properties;
  }

  test('server errors: 5XX share of requests over 5 minutes, no traffic is OK', () => {
    const { fixture, alarms, template } = alarmsTemplate();
    expect(alarmProps(fixture, template, alarms.serverErrors)).toMatchObject({
      Namespace: 'AWS/SageMaker',
      MetricName: 'Invocation5XXErrors',
      Statistic: 'Average',
      Period: 300,
      Threshold: 0.05,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      EvaluationPeriods: 1,
      TreatMissingData: 'notBreaching',
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'Invocation5XXErrors', Dimensions: DIMENSIONS(fixture) });
  });

  test('latency: p99 ModelLatency at the handler\'s generation limit (20 seconds served without continuous batching), in microseconds', () => {
    const { fixture, alarms, template } = alarmsTemplate();
    expect(alarmProps(fixture, template, alarms.modelLatency)).toMatchObject({
      Namespace: 'AWS/SageMaker',
      MetricName: 'ModelLatency',
      ExtendedStatistic: 'p99',
      Period: 300,
      Threshold: 20_000_000,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'ModelLatency', Dimensions: DIMENSIONS(fixture) });
  });

  test('latency: with a generationTimeLimit, the alarm and the dashboard follow it', () => {
    const fixture = endpointFixture({}, { generationTimeLimit: Duration.seconds(15) });
    fixture.endpoint.addAlarms();
    fixture.endpoint.addDashboard();
    const template = Template.fromStack(fixture.stack);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'ModelLatency', Threshold: 15_000_000 });
    const dashboard = Object.values(template.findResources('AWS::CloudWatch::Dashboard'))[0] as any;
    expect(JSON.stringify(dashboard.Properties.DashboardBody)).toContain('\\"value\\":15000000,\\"label\\":\\"Generation time limit\\"');
  });

  test('no instance: no utilization datum from any instance for 5 minutes, missing data breaches', () => {
    const { fixture, alarms, template } = alarmsTemplate();
    expect(alarmProps(fixture, template, alarms.noInstance)).toMatchObject({
      Namespace: '/aws/sagemaker/Endpoints',
      MetricName: 'MemoryUtilization',
      Statistic: 'SampleCount',
      Period: 60,
      Threshold: 1,
      ComparisonOperator: 'LessThanThreshold',
      EvaluationPeriods: 5,
      TreatMissingData: 'breaching',
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'MemoryUtilization', Dimensions: DIMENSIONS(fixture) });
    expect(alarms.alarms).toHaveLength(3);
  });

  test('the action goes on every alarm, for ALARM and OK; thresholds can be set', () => {
    const fixture = endpointFixture();
    const topic = new sns.Topic(fixture.stack, 'Topic');
    fixture.endpoint.addAlarms({
      action: new cloudwatchActions.SnsAction(topic), serverErrorRateThreshold: 0.01, modelLatencyThreshold: Duration.seconds(30),
    });
    const template = Template.fromStack(fixture.stack);
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')) as any[];
    expect(alarms).toHaveLength(3);
    for (const alarm of alarms) {
      expect(alarm.Properties.AlarmActions).toEqual([{ Ref: logicalId(fixture.stack, topic) }]);
      expect(alarm.Properties.OKActions).toEqual([{ Ref: logicalId(fixture.stack, topic) }]);
    }
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'Invocation5XXErrors', Threshold: 0.01 });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'ModelLatency', Threshold: 30_000_000 });
  });

  test('bad thresholds and a second call fail at synth', () => {
    const { endpoint } = endpointFixture();
    expect(errorOf(() => endpoint.addAlarms({ serverErrorRateThreshold: 5 })))
      .toMatch(/serverErrorRateThreshold is 5: it is a share of the requests, more than 0 and at most 1 \(e\.g\. 0\.05 for 5%\)/);
    expect(errorOf(() => endpoint.addAlarms({ modelLatencyThreshold: Duration.seconds(90) })))
      .toMatch(/modelLatencyThreshold is 1 minute 30 seconds: it must be more than 0 and at most 1 minute, SageMaker's invocation limit/);
    endpoint.addAlarms();
    expect(errorOf(() => endpoint.addAlarms())).toMatch(/addAlarms was called before/);
  });
});

describe('addDashboard', () => {
  test('one dashboard: requests and errors, latency against the generation limit, concurrency against the workers, utilization', () => {
    const fixture = endpointFixture({ props: HIGH_PERFORMANCE_PROPS });
    fixture.endpoint.addDashboard({ dashboardName: 'calm3' });
    const template = Template.fromStack(fixture.stack);
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const dashboard = Object.values(template.findResources('AWS::CloudWatch::Dashboard'))[0] as any;
    expect(dashboard.Properties.DashboardName).toBe('calm3');
    const body = JSON.stringify(dashboard.Properties.DashboardBody);
    for (const title of ['Requests and errors (per minute)', 'Model latency (microseconds)', 'Concurrent requests per instance', 'Instance utilization (%)']) {
      expect(body).toContain(title);
    }
    expect(body).toContain('\\"value\\":20000000,\\"label\\":\\"Generation time limit\\"');
    expect(body).toContain('\\"value\\":3,\\"label\\":\\"Generated at once (workers x batch size)\\"');
    expect(body).toContain('\\"ConcurrentRequestsPerModel\\",\\"EndpointName\\",\\"');
    expect(errorOf(() => fixture.endpoint.addDashboard())).toMatch(/addDashboard was called before/);
  });
});

describe('cdk-nag', () => {
  test('the alarms, the dashboard and the scaling resources add no AwsSolutions finding', () => {
    const { stack, endpoint } = endpointFixture();
    endpoint.addAlarms();
    endpoint.addDashboard();
    endpoint.autoScaleInstanceCount({ maxCapacity: 2 }).scaleOnConcurrentRequests('Concurrency');
    Aspects.of(stack).add(new AwsSolutionsChecks({ verbose: true }));
    const annotations = Annotations.fromStack(stack);
    const rule = Match.stringLikeRegexp('AwsSolutions-.*');
    expect([...annotations.findError('*', rule), ...annotations.findWarning('*', rule)]).toEqual([]);
  });
});
