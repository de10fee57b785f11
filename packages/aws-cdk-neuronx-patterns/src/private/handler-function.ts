import * as path from 'path';
import { Duration } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { stageAsset } from './staged-asset';

/** The Lambda handlers of this package: entry points of the one bundle the build writes (src/handlers/index.ts). */
export type Handler = 'compileLifecycle' | 'inferenceCode';

// The bundle as one reproducible zip (build-tools/handlers-zip.js): staged as a file, with no directory to walk.
const BUNDLE_ZIP = path.join(__dirname, '..', '..', 'assets', 'handlers.zip');
/** How long the library's log groups (handlers, compile job) keep their logs. */
export const LOG_RETENTION = logs.RetentionDays.ONE_MONTH;
// Node 20 is past end of life; 24 is the newest runtime aws-cdk-lib 2.245 knows, which is what cdk-nag's
// AwsSolutions-L1 (latest runtime) compares against.
const RUNTIME = lambda.Runtime.NODEJS_24_X;

export interface HandlerFunctionProps {
  readonly handler: Handler;
  readonly description: string;
  readonly timeout: Duration;
  /**
   * The function's environment variables.
   *
   * @default - none
   */
  readonly environment?: { [name: string]: string };
}

/** A handler function and the role it runs as (grant to the role). */
export interface HandlerFunction {
  readonly functionArn: string;
  readonly role: iam.Role;
}

/**
 * One of this package's handlers as a Lambda function, with its own role and a log group with a retention, and
 * without the AWSLambdaBasicExecutionRole managed policy: the role may write its own log group and nothing else
 * until the caller grants more.
 *
 * An L1 function: the L2 adds nothing these handlers use, and loading it is a large part of the synth time these
 * constructs add. The function depends on the role's default policy, so a custom resource never invokes it before
 * its permissions exist (every later grant to the role lands in that same policy). It does not depend on the role
 * itself: it references the role's ARN, which already orders it after the role, and a DependsOn beside the GetAtt
 * is what cfn-lint reports as W3005.
 */
export function handlerFunction(scope: Construct, id: string, props: HandlerFunctionProps): HandlerFunction {
  const logGroup = new logs.LogGroup(scope, `${id}Logs`, { retention: LOG_RETENTION });
  const role = new iam.Role(scope, `${id}Role`, { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
  logGroup.grantWrite(role);
  // Every function stages the same file: AssetStaging copies it once per app.
  const code = stageAsset(scope, `${id}Code`, { path: BUNDLE_ZIP });
  const fn = new lambda.CfnFunction(scope, id, {
    description: props.description,
    runtime: RUNTIME.name,
    handler: `index.${props.handler}`,
    code: { s3Bucket: code.bucketName, s3Key: code.objectKey },
    role: role.roleArn,
    timeout: props.timeout.toSeconds(),
    environment: props.environment ? { variables: props.environment } : undefined,
    loggingConfig: { logGroup: logGroup.logGroupName },
  });
  // logGroup.grantWrite created the policy: it exists from here on.
  fn.node.addDependency(role.node.findChild('DefaultPolicy'));
  return { functionArn: fn.attrArn, role };
}
