/**
 * The wiring example (examples/wiring/typescript/app.ts): calm3.endpoint behind API Gateway, with its alarms and
 * concurrency autoscaling. Its template must hold what a user relies on, and the whole app, the user's resources as
 * well as the library's, must pass cdk-nag's AwsSolutions pack with no suppression written by the user.
 *
 * The cdk-nag check runs with whichever cdk-nag major is loaded: 2.x (this package's devDependency) as an aspect that
 * annotates findings, 3.x (test:compat, tools/compat) as an aws-cdk-lib validation plugin that writes a report.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as cdk from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as cdkNag from 'cdk-nag';
import { IConstruct } from 'constructs';
import { addAwsSolutionsChecks, Calm3ApiStack } from '../examples/wiring/typescript/app';

const EXAMPLE = path.join(__dirname, '..', 'examples', 'wiring', 'typescript');
const ENV = { account: '123456789012', region: 'us-east-1' };

/** The app as `cdk synth` runs it: with the feature flags of the example's cdk.json. */
function exampleStack(): Calm3ApiStack {
  const context = JSON.parse(fs.readFileSync(path.join(EXAMPLE, 'cdk.json'), 'utf8')).context;
  return new Calm3ApiStack(new cdk.App({ context }), 'Calm3ApiStack', { env: ENV });
}

/** The one resource of a type, with its logical id. */
function only(template: Template, type: string): { id: string; properties: any } {
  const found = Object.entries(template.findResources(type));
  expect(found.map(([id]) => `${type} ${id}`)).toHaveLength(1);
  return { id: found[0][0], properties: found[0][1].Properties };
}

describe('the wiring example', () => {
  let stack: Calm3ApiStack;
  let template: Template;
  let endpointId: string;
  beforeAll(() => {
    stack = exampleStack();
    template = Template.fromStack(stack);
    endpointId = only(template, 'AWS::SageMaker::Endpoint').id;
  });
  const endpointName = () => ({ 'Fn::GetAtt': [endpointId, 'EndpointName'] });

  test('registers the variant as a scalable target: endpoint/<name>/variant/AllTraffic, 1 to 2 instances', () => {
    const target = only(template, 'AWS::ApplicationAutoScaling::ScalableTarget');
    expect(target.properties).toMatchObject({
      ServiceNamespace: 'sagemaker',
      ScalableDimension: 'sagemaker:variant:DesiredInstanceCount',
      ResourceId: { 'Fn::Join': ['', ['endpoint/', endpointName(), '/variant/AllTraffic']] },
      MinCapacity: 1,
      MaxCapacity: 2,
    });
  });

  test('scales on the high-resolution concurrent requests metric, targeting what one instance answers at once', () => {
    const policy = only(template, 'AWS::ApplicationAutoScaling::ScalingPolicy');
    expect(policy.properties).toMatchObject({
      PolicyType: 'TargetTrackingScaling',
      ScalingTargetId: { Ref: only(template, 'AWS::ApplicationAutoScaling::ScalableTarget').id },
      TargetTrackingScalingPolicyConfiguration: {
        PredefinedMetricSpecification: { PredefinedMetricType: 'SageMakerVariantConcurrentRequestsPerModelHighResolution' },
        // lowCost: one worker per ml.trn1.2xlarge (tensor parallel 2 on its 2 NeuronCores), generating for up to 6 requests at once (its slots).
        TargetValue: stack.inference.endpoint.workersPerInstance * stack.inference.endpoint.batchSize,
      },
    });
    expect([stack.inference.endpoint.workersPerInstance, stack.inference.endpoint.batchSize]).toEqual([1, 6]);
  });

  test('alarms watch this endpoint\'s AllTraffic variant and notify the encrypted, TLS-only topic on ALARM and OK', () => {
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map(a => a.Properties);
    const topic = only(template, 'AWS::SNS::Topic');
    expect(alarms.map(a => [a.Namespace, a.MetricName]).sort()).toEqual([
      // Instance utilization metrics are in their own namespace (SageMaker developer guide, "Amazon SageMaker AI
      // metrics in Amazon CloudWatch").
      ['/aws/sagemaker/Endpoints', 'MemoryUtilization'],
      ['AWS/SageMaker', 'Invocation5XXErrors'],
      ['AWS/SageMaker', 'ModelLatency'],
    ]);
    for (const alarm of alarms) {
      expect({ metric: alarm.MetricName, dimensions: alarm.Dimensions }).toEqual({
        metric: alarm.MetricName,
        dimensions: [{ Name: 'EndpointName', Value: endpointName() }, { Name: 'VariantName', Value: 'AllTraffic' }],
      });
      expect({ metric: alarm.MetricName, alarm: alarm.AlarmActions, ok: alarm.OKActions })
        .toEqual({ metric: alarm.MetricName, alarm: [{ Ref: topic.id }], ok: [{ Ref: topic.id }] });
    }
    const topicPolicy = only(template, 'AWS::SNS::TopicPolicy').properties;
    expect(topicPolicy.Topics).toEqual([{ Ref: topic.id }]);
    expect(topicPolicy.PolicyDocument.Statement).toEqual([
      expect.objectContaining({ Effect: 'Deny', Action: 'sns:Publish', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
      // This policy replaces SNS's default one: without this statement the alarms could not publish.
      expect.objectContaining({
        Effect: 'Allow',
        Principal: { Service: 'cloudwatch.amazonaws.com' },
        Action: 'sns:Publish',
        Resource: { Ref: topic.id },
        Condition: {
          ArnLike: {
            'aws:SourceArn': { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':cloudwatch:us-east-1:123456789012:alarm:*']] },
          },
        },
      }),
    ]);
    expect(topic.properties.KmsMasterKeyId).toEqual({ 'Fn::GetAtt': [only(template, 'AWS::KMS::Key').id, 'Arn'] });
    // CloudWatch can publish to the topic only if the key lets it use the key.
    template.hasResourceProperties('AWS::KMS::Key', {
      KeyPolicy: {
        Statement: Match.arrayWith([Match.objectLike({
          Principal: { Service: 'cloudwatch.amazonaws.com' },
          Action: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        })]),
      },
    });
  });

  test('POST /chat invokes the endpoint through the SageMaker runtime, for Cognito users, with a validated body', () => {
    const method = only(template, 'AWS::ApiGateway::Method');
    expect(method.properties).toMatchObject({
      HttpMethod: 'POST',
      AuthorizationType: 'COGNITO_USER_POOLS',
      AuthorizerId: { Ref: only(template, 'AWS::ApiGateway::Authorizer').id },
      RequestValidatorId: { Ref: only(template, 'AWS::ApiGateway::RequestValidator').id },
      Integration: {
        Type: 'AWS',
        IntegrationHttpMethod: 'POST',
        TimeoutInMillis: 29000,
        Uri: {
          'Fn::Join': ['', [
            'arn:', { Ref: 'AWS::Partition' }, ':apigateway:us-east-1:runtime.sagemaker:path/endpoints/',
            endpointName(), '/invocations',
          ]],
        },
      },
    });
    // SageMaker's errors reach the client as errors, not as 200s.
    expect(method.properties.Integration.IntegrationResponses).toEqual([
      { StatusCode: '200' },
      { StatusCode: '400', SelectionPattern: '4\\d{2}' },
      { StatusCode: '502', SelectionPattern: '5\\d{2}' },
    ]);
  });

  test('the integration role may invoke this endpoint (its ARN) and nothing else', () => {
    const method = only(template, 'AWS::ApiGateway::Method');
    const [roleId] = method.properties.Integration.Credentials['Fn::GetAtt'];
    const role = template.findResources('AWS::IAM::Role')[roleId];
    expect(role.Properties.AssumeRolePolicyDocument.Statement).toEqual([
      expect.objectContaining({ Principal: { Service: 'apigateway.amazonaws.com' }, Action: 'sts:AssumeRole' }),
    ]);
    expect(role.Properties.ManagedPolicyArns).toBeUndefined();
    expect(role.Properties.Policies).toBeUndefined();
    const policies = Object.values(template.findResources('AWS::IAM::Policy'))
      .filter(p => JSON.stringify(p.Properties.Roles) === JSON.stringify([{ Ref: roleId }]));
    // Ref of an AWS::SageMaker::Endpoint is its ARN (CloudFormation resource reference, AWS::SageMaker::Endpoint).
    expect(policies.map(p => p.Properties.PolicyDocument.Statement)).toEqual([
      [{ Effect: 'Allow', Action: 'sagemaker:InvokeEndpoint', Resource: { Ref: endpointId } }],
    ]);
    expect(stack.resolve(stack.inference.endpoint.endpointArn)).toEqual({ Ref: endpointId });
  });

  test('outputs the endpoint name and the API URL', () => {
    template.hasOutput('EndpointName', { Value: endpointName() });
    template.hasOutput('ChatUrl', {
      Value: { 'Fn::Join': ['', Match.arrayWith([Match.stringLikeRegexp('^https://$'), '/chat'])] },
    });
  });
});

/** One AwsSolutions finding nothing suppressed or acknowledged: the rule and the construct it is on. */
interface Finding {
  readonly rule: string;
  readonly path: string;
}

/**
 * The AwsSolutions findings of a freshly built example app that nothing suppressed or acknowledged, errors and
 * warnings, under the cdk-nag major that is loaded.
 */
function unsuppressedAwsSolutionsFindings(): { cdkNagVersion: string; findings: Finding[] } {
  // The jsii type information of the class carries the version of the cdk-nag really loaded.
  const cdkNagVersion: string = (cdkNag.AwsSolutionsChecks as unknown as Record<symbol, { version: string }>)[Symbol.for('jsii.rtti')].version;
  const stack = exampleStack();
  const app = stack.node.root as cdk.App;
  // The pack is attached as the example app attaches it, so that its own code is proven under both majors.
  addAwsSolutionsChecks(app);
  if (Number(cdkNagVersion.split('.')[0]) < 3) {
    const annotations = Annotations.fromStack(stack);
    const findings = [
      ...annotations.findError('*', Match.stringLikeRegexp('AwsSolutions-')),
      ...annotations.findWarning('*', Match.stringLikeRegexp('AwsSolutions-')),
    ].map(m => ({ rule: String(m.entry.data).split(':')[0], path: m.id }));
    return { cdkNagVersion, findings };
  }
  // cdk-nag 3.x is a validation plugin of aws-cdk-lib 2.257 and later (cdk-nag 3.0.2 README, "Migrating from v2"):
  // synth fails when it finds anything, and the report it writes lists every finding.
  try {
    app.synth();
  } catch (e) {
    if (!String(e).startsWith('ValidationFailed')) throw e;
  }
  const report = JSON.parse(fs.readFileSync(path.join(app.outdir, 'validation-report.json'), 'utf8')) as {
    pluginReports: Array<{ pluginName: string; violations: Array<{ ruleName: string; violatingConstructs: Array<{ constructPath: string }> }> }>;
  };
  const findings = report.pluginReports.filter(r => r.pluginName === 'AwsSolutions').flatMap(r => r.violations)
    .flatMap(v => v.violatingConstructs.map(c => ({ rule: v.ruleName, path: c.constructPath })));
  return { cdkNagVersion, findings };
}

test('the example\'s addAwsSolutionsChecks attaches the pack in the form the loaded cdk-nag major takes', () => {
  const cdkNagVersion: string = (cdkNag.AwsSolutionsChecks as unknown as Record<symbol, { version: string }>)[Symbol.for('jsii.rtti')].version;
  const app = new cdk.App();
  const stack = new cdk.Stack(app, 'Plain');
  new s3.Bucket(stack, 'Bucket'); // no TLS-only bucket policy: AwsSolutions-S10
  addAwsSolutionsChecks(app);
  if (Number(cdkNagVersion.split('.')[0]) < 3) {
    expect(Annotations.fromStack(stack).findError('*', Match.stringLikeRegexp('AwsSolutions-S10')).length).toBeGreaterThan(0);
    return;
  }
  expect(() => app.synth()).toThrow(/AwsSolutions-S10|ValidationFailed|[Vv]alidation/);
});

test('the whole app passes cdk-nag AwsSolutions (errors and warnings), with no suppression on the user\'s resources', () => {
  const { cdkNagVersion, findings } = unsuppressedAwsSolutionsFindings();
  expect({ cdkNagVersion, findings }).toEqual({ cdkNagVersion, findings: [] });

  // Only the library's resources carry suppressions (cdk-nag 2 metadata, cdk-nag 3 acknowledgements): the app's own
  // resources pass on their merits.
  const acknowledgedKey: string | undefined = (cdk as unknown as { Validations?: { ACKNOWLEDGED_RULES_METADATA_KEY: string } })
    .Validations?.ACKNOWLEDGED_RULES_METADATA_KEY;
  const stack = exampleStack();
  const library = `${stack.inference.node.path}/`;
  // aws-cdk-lib (2.257 and later) acknowledges warnings of its own on the stack and the VPC: only AwsSolutions ids count.
  const acknowledgesAwsSolutions = (c: IConstruct) => c.node.metadata
    .some(m => m.type === acknowledgedKey && Object.keys(m.data as object).some(id => /AwsSolutions-/i.test(id)));
  const suppressed = stack.node.findAll()
    .filter(c => (cdk.CfnResource.isCfnResource(c) && c.getMetadata('cdk_nag') !== undefined) || acknowledgesAwsSolutions(c))
    .map(c => c.node.path);
  expect(suppressed.length).toBeGreaterThan(0);
  expect(suppressed.filter(p => !p.startsWith(library))).toEqual([]);
});
