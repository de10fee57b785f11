// calm3-22b-chat behind a REST API, with alarms and autoscaling: the lines most users write next to the construct.
//
//   cd examples/wiring/typescript && npx cdk synth
//
// Every resource here passes cdk-nag's AwsSolutions pack (2.x and 3.x) with no suppression or acknowledgement: the
// library's own resources carry theirs, and the app's resources are built the way the pack asks.
//
// In your own app, import from the published package instead:
//   import { calm3chat22b } from 'aws-cdk-neuronx-models';
import * as cdk from 'aws-cdk-lib';
import { App, ArnFormat, Aspects, CfnOutput, Duration, IAspect, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { AwsSolutionsChecks } from 'cdk-nag';
import { Construct } from 'constructs';
import { calm3chat22b } from '../../../src';

/** calm3-22b-chat (lowCost) on a SageMaker endpoint, a REST API in front of it, its alarms and its autoscaling. */
export class Calm3ApiStack extends Stack {
  /** The model, its compile job and its endpoint. */
  public readonly inference: calm3chat22b.SageMakerRealtimeInference;
  /** The REST API whose POST /chat invokes the endpoint. */
  public readonly api: apigateway.RestApi;
  /** The topic the endpoint's alarms notify. */
  public readonly alarmTopic: sns.Topic;

  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, props);

    // --- the model: as in examples/typescript/app.ts -----------------------------------------------------------
    // The compile instance downloads the model from Hugging Face: it needs a private subnet with a NAT gateway.
    const vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: 1,
      flowLogs: { all: { destination: ec2.FlowLogDestination.toCloudWatchLogs(), trafficType: ec2.FlowLogTrafficType.ALL } },
    });
    // The access logs bucket is the model bucket's log destination, which is what cdk-nag's S1 asks of a bucket.
    const accessLogs = new s3.Bucket(this, 'AccessLogs', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      versioned: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const bucket = new s3.Bucket(this, 'ModelBucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'model-bucket/',
      versioned: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const calm3 = new calm3chat22b.SageMakerRealtimeInference(this, 'Calm3Chat', {
      bucket,
      compileVpc: vpc,
      instanceTypeStrategy: calm3chat22b.InstanceTypeStrategy.lowCost,
    });
    this.inference = calm3;

    // --- alarms: 5XX errors, latency near the limit, no instance running; each notifies the topic ----------------
    // CloudWatch publishes to an encrypted topic only if the key lets it: the AWS managed key alias/aws/sns does not,
    // a customer managed key must allow cloudwatch.amazonaws.com kms:Decrypt and kms:GenerateDataKey* (AWS re:Post
    // knowledge center, "How do I configure a CloudWatch alarm with an encrypted SNS topic?").
    const alarmTopicKey = new kms.Key(this, 'AlarmTopicKey', { enableKeyRotation: true });
    alarmTopicKey.grant(new iam.ServicePrincipal('cloudwatch.amazonaws.com'), 'kms:Decrypt', 'kms:GenerateDataKey*');
    this.alarmTopic = new sns.Topic(this, 'AlarmTopic', { masterKey: alarmTopicKey, enforceSSL: true });
    // The topic policy that enforceSSL creates replaces SNS's default policy, the one that lets the account's
    // CloudWatch alarms publish: allow them again, this account's alarms only (AWS re:Post knowledge center, "Why
    // didn't I receive an SNS notification for my CloudWatch alarm trigger?").
    this.alarmTopic.addToResourcePolicy(new iam.PolicyStatement({
      principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
      actions: ['sns:Publish'],
      resources: [this.alarmTopic.topicArn],
      conditions: {
        ArnLike: { 'aws:SourceArn': this.formatArn({ service: 'cloudwatch', resource: 'alarm', resourceName: '*', arnFormat: ArnFormat.COLON_RESOURCE_NAME }) },
      },
    }));
    calm3.endpoint.addAlarms({ action: new cloudwatchActions.SnsAction(this.alarmTopic) });

    // --- autoscaling: one to two instances, on the requests each instance is answering or holding ---------------
    // The default target is the requests one instance answers at once (its workers times the batch size).
    calm3.endpoint.autoScaleInstanceCount({ maxCapacity: 2 }).scaleOnConcurrentRequests('ConcurrentRequests');

    // --- the REST API: POST /chat, for signed-in Cognito users, logged, validated, behind a web ACL ---------------
    const users = new cognito.UserPool(this, 'Users', {
      selfSignUpEnabled: false,
      signInAliases: { email: true },
      passwordPolicy: { minLength: 12, requireLowercase: true, requireUppercase: true, requireDigits: true, requireSymbols: true },
      mfa: cognito.Mfa.REQUIRED,
      mfaSecondFactor: { otp: true, sms: false },
      // Threat protection in enforcement mode (cdk-nag COG3) is a feature of the Plus plan.
      featurePlan: cognito.FeaturePlan.PLUS,
      standardThreatProtectionMode: cognito.StandardThreatProtectionMode.FULL_FUNCTION,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const client = users.addClient('ChatClient', { authFlows: { userSrp: true } });

    const accessLogGroup = new logs.LogGroup(this, 'ApiAccessLogs', {
      retention: logs.RetentionDays.ONE_YEAR,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.api = new apigateway.RestApi(this, 'ChatApi', {
      // Regional: the only REST API type (with private) whose integration timeout can go above 29 s, after a quota
      // increase (API Gateway, What's New 4 June 2024).
      endpointTypes: [apigateway.EndpointType.REGIONAL],
      // API Gateway writes logs through one CloudWatch Logs role per account and region (API Gateway developer guide,
      // "Set up CloudWatch logging for REST APIs"). The role aws-cdk-lib would create here carries the AWS managed
      // policy cdk-nag flags (IAM4) and is shared with every API in the account: set it once per account and region
      // instead (`aws apigateway update-account`); until then, API Gateway refuses the stage's logging settings and
      // the deployment fails.
      cloudWatchRole: false,
      deployOptions: {
        accessLogDestination: new apigateway.LogGroupLogDestination(accessLogGroup),
        accessLogFormat: apigateway.AccessLogFormat.jsonWithStandardFields(),
        loggingLevel: apigateway.MethodLoggingLevel.ERROR,
        tracingEnabled: true,
      },
    });
    const chatRequest = this.api.addModel('ChatRequest', {
      contentType: 'application/json',
      // Keys in alphabetical order, the order the Python and Java bindings pass them in: the API's deployment id is a
      // hash of the schema as written, so the same keys in another order would give another deployment id.
      schema: {
        properties: { messages: { minItems: 1, type: apigateway.JsonSchemaType.ARRAY } },
        required: ['messages'],
        schema: apigateway.JsonSchemaVersion.DRAFT4,
        type: apigateway.JsonSchemaType.OBJECT,
      },
    });
    // cdk-nag APIG2 asks for both; the method declares no required parameters, so only the body is checked.
    const validator = this.api.addRequestValidator('Validator', { validateRequestBody: true, validateRequestParameters: true });
    const authorizer = new apigateway.CognitoUserPoolsAuthorizer(this, 'ChatAuthorizer', { cognitoUserPools: [users] });

    this.api.root.addResource('chat').addMethod('POST', new apigateway.SagemakerIntegration(calm3.endpoint, {
      // API Gateway's default: an answer that takes longer is cut off (the handler may take 50 s; README, "Timeouts
      // along the way"). Going above 29 s needs a raised quota.
      timeout: Duration.seconds(29),
      // The one response SagemakerIntegration maps has no selection pattern, so SageMaker's errors would reach the
      // client as 200s. For an AWS integration the pattern is matched against the status code of SageMaker's answer
      // (API Gateway developer guide, "Set up an integration response"). Every error the model answers, a bad request
      // or a failure, comes back from InvokeEndpoint as a 424 ModelError carrying the model's status and message, which
      // the client receives in the body (InvokeEndpoint API reference, Errors).
      integrationResponses: [
        { statusCode: '200' },
        { statusCode: '400', selectionPattern: '4\\d{2}' },
        { statusCode: '502', selectionPattern: '5\\d{2}' },
      ],
    }), {
      authorizer,
      authorizationType: apigateway.AuthorizationType.COGNITO,
      requestValidator: validator,
      requestModels: { 'application/json': chatRequest },
      methodResponses: [{ statusCode: '400' }, { statusCode: '502' }],
    });

    // Each caller may send 100 requests in 5 minutes: every request holds a model worker for up to 50 seconds. AWS's
    // known-bad-inputs rule group blocks request patterns of known exploits (such as Log4j's JNDI lookups); the common
    // rule set is left out: its SizeRestrictions_BODY rule blocks request bodies over 8 KB, which long conversations
    // reach (AWS WAF developer guide, "Baseline rule groups").
    const webAcl = new wafv2.CfnWebACL(this, 'ChatApiWebAcl', {
      scope: 'REGIONAL',
      defaultAction: { allow: {} },
      visibilityConfig: { cloudWatchMetricsEnabled: true, metricName: 'ChatApiWebAcl', sampledRequestsEnabled: true },
      rules: [{
        name: 'RequestsPerCaller',
        priority: 0,
        action: { block: {} },
        statement: { rateBasedStatement: { aggregateKeyType: 'IP', limit: 100 } },
        visibilityConfig: { cloudWatchMetricsEnabled: true, metricName: 'RequestsPerCaller', sampledRequestsEnabled: true },
      }, {
        name: 'KnownBadInputs',
        priority: 1,
        overrideAction: { none: {} },
        statement: { managedRuleGroupStatement: { vendorName: 'AWS', name: 'AWSManagedRulesKnownBadInputsRuleSet' } },
        visibilityConfig: { cloudWatchMetricsEnabled: true, metricName: 'KnownBadInputs', sampledRequestsEnabled: true },
      }],
    });
    new wafv2.CfnWebACLAssociation(this, 'ChatApiWebAclAssociation', {
      resourceArn: this.api.deploymentStage.stageArn,
      webAclArn: webAcl.attrArn,
    });

    new CfnOutput(this, 'EndpointName', {
      value: calm3.endpoint.endpointName,
      description: "The SageMaker endpoint: InvokeEndpoint's EndpointName",
    });
    new CfnOutput(this, 'ChatUrl', {
      value: this.api.urlForPath('/chat'),
      description: 'POST a chat request here with a Cognito ID token in the Authorization header',
    });
    new CfnOutput(this, 'UserPoolId', { value: users.userPoolId });
    new CfnOutput(this, 'UserPoolClientId', { value: client.userPoolClientId });
  }
}

/**
 * Adds cdk-nag's AwsSolutions pack to the whole app in the form the installed cdk-nag takes. cdk-nag 3.x (what
 * `npm install cdk-nag` gives today; it needs aws-cdk-lib 2.257 or later) is a validation plugin:
 * `Validations.of(app).addPlugins(new AwsSolutionsChecks())`. cdk-nag 2.x, which this repository's build pins next to
 * aws-cdk-lib 2.245, is an aspect: `Aspects.of(app).add(new AwsSolutionsChecks())`. This function compiles and runs
 * under either; in your own app, the one line of your version is enough.
 */
export function addAwsSolutionsChecks(app: App): void {
  const checks = new AwsSolutionsChecks();
  if ('visit' in checks) {
    Aspects.of(app).add(checks as unknown as IAspect);
    return;
  }
  // Looked up by name: aws-cdk-lib 2.245, whose typings this repository compiles against, has no Validations.
  const validations = (cdk as unknown as { Validations: { of(scope: App): { addPlugins(...plugins: object[]): void } } }).Validations;
  validations.of(app).addPlugins(checks);
}

if (require.main === module) {
  const app = new App();
  new Calm3ApiStack(app, 'Calm3ApiStack', {
    // lowCost's instance types (ml.trn1.2xlarge, inf2.8xlarge) exist in us-east-1.
    env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: app.node.tryGetContext('region') ?? 'us-east-1' },
    description: 'cyberagent/calm3-22b-chat behind a REST API, with alarms and autoscaling',
  });
  addAwsSolutionsChecks(app);
}
