import * as path from 'path';
import { Duration, Stack, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct, IConstruct } from 'constructs';
import { suppressNag } from './nag';
import { stageAsset } from './staged-asset';

/** The Lambda handlers of this package: entry points of the one bundle the build writes (src/handlers/index.ts). */
export type Handler = 'compileLifecycle' | 'inferenceCode';

// The bundle as one reproducible zip (build-tools/handlers-zip.js): staged as a file, with no directory to walk.
const BUNDLE_ZIP = path.join(__dirname, '..', '..', 'assets', 'handlers.zip');
/** How long the library's log groups (handlers, compile job) keep their logs. */
export const LOG_RETENTION = logs.RetentionDays.ONE_MONTH;
/**
 * The oldest Lambda runtime the handlers get, and what their bundle is built for (esbuild `target: 'node24'` in
 * .projenrc.ts; a bundle for 24 runs on every later Node.js): nodejs24.x. Node 20 is past end of life; 24 is the
 * newest runtime the floor aws-cdk-lib (2.245.0) knows, and the one aws-cdk-lib 2.278.0's region facts
 * (LATEST_NODE_RUNTIME) give every region, its `Runtime.NODEJS_LATEST` ("available in ALL regions") since 2.259.
 * aws-cdk-lib 2.245.0's facts still say nodejs22.x everywhere, which is older than what the library already deploys.
 */
export const OLDEST_HANDLER_RUNTIME = 'nodejs24.x';

/** The runtime a handler function runs on, and why cdk-nag's AwsSolutions-L1 is acknowledged, when it is. */
export interface HandlerRuntime {
  /** The runtime's name, e.g. `nodejs24.x`. */
  readonly name: string;
  /**
   * Why the function does not run on the newest Node.js runtime the loaded aws-cdk-lib lists, which is what
   * AwsSolutions-L1 asks for (cdk-nag 2.37 and 3.0 `LambdaLatestVersion`: the newest of the family in `Runtime.ALL`).
   *
   * @default - it does: nothing to acknowledge
   */
  readonly notNewestReason?: string;
}

/**
 * The runtime of the handler functions in `scope`'s stack: the newest Node.js runtime the stack's region has,
 * according to the region facts of the aws-cdk-lib the app loads (what aws-cdk's own constructs get from
 * `determineLatestNodeRuntime(scope)`), and never older than OLDEST_HANDLER_RUNTIME. In a stack whose region is not
 * known at synth, the newest runtime every region has (a literal, not a CloudFormation mapping, so that the template
 * and cdk-nag see one runtime).
 *
 * The region facts are read only when the loaded aws-cdk-lib lists a runtime newer than OLDEST_HANDLER_RUNTIME: they
 * cannot change the answer otherwise, and loading them costs about half a second of synth time.
 */
export function handlerRuntime(scope: IConstruct): HandlerRuntime {
  const newestListed = newestNodeRuntime(lambda.Runtime.ALL.filter(r => r.family === lambda.RuntimeFamily.NODEJS).map(r => r.name));
  if (nodeMajor(newestListed) <= nodeMajor(OLDEST_HANDLER_RUNTIME)) return { name: OLDEST_HANDLER_RUNTIME };
  // Loaded here, not at the top: see above.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Fact, FactName, RegionInfo } = require('aws-cdk-lib/region-info') as typeof import('aws-cdk-lib/region-info');
  const region = Stack.of(scope).region;
  const agnostic = Token.isUnresolved(region);
  const regional = agnostic
    ? oldestNodeRuntime(Object.values(RegionInfo.regionMap(FactName.LATEST_NODE_RUNTIME)))
    : Fact.find(region, FactName.LATEST_NODE_RUNTIME);
  const name = newestNodeRuntime([OLDEST_HANDLER_RUNTIME, ...(regional ? [regional] : [])]);
  if (name === newestListed) return { name };
  const where = agnostic ? 'every region (the stack\'s region is not known at synth)' : `region ${region}`;
  return {
    name,
    notNewestReason: `${name} is the newest Node.js runtime that aws-cdk-lib's region facts (LATEST_NODE_RUNTIME, `
      + `what Runtime.determineLatestNodeRuntime reads) give ${where}; ${newestListed}, the newest this aws-cdk-lib lists, `
      + 'is not listed as available there, so a function on it might not deploy. The handlers follow the region facts: '
      + 'they move to the newer runtime with the aws-cdk-lib release that lists it for the region.',
  };
}

/** The newest of some Node.js runtime names (`nodejs24.x`), by major version. */
function newestNodeRuntime(names: string[]): string {
  return names.reduce((a, b) => (nodeMajor(b) > nodeMajor(a) ? b : a));
}

/** The oldest of some Node.js runtime names, by major version (none of none). */
function oldestNodeRuntime(names: string[]): string | undefined {
  return names.length === 0 ? undefined : names.reduce((a, b) => (nodeMajor(b) < nodeMajor(a) ? b : a));
}

/** The Node.js major version of a runtime name (`nodejs24.x` is 24); 0 for a name without one (`nodejs`). */
function nodeMajor(name: string): number {
  const m = /^nodejs(\d+)/.exec(name);
  return m ? Number(m[1]) : 0;
}

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
  const runtime = handlerRuntime(scope);
  const fn = new lambda.CfnFunction(scope, id, {
    description: props.description,
    runtime: runtime.name,
    handler: `index.${props.handler}`,
    code: { s3Bucket: code.bucketName, s3Key: code.objectKey },
    role: role.roleArn,
    timeout: props.timeout.toSeconds(),
    environment: props.environment ? { variables: props.environment } : undefined,
    loggingConfig: { logGroup: logGroup.logGroupName },
  });
  // logGroup.grantWrite created the policy: it exists from here on.
  fn.node.addDependency(role.node.findChild('DefaultPolicy'));
  if (runtime.notNewestReason) suppressNag(fn, [{ id: 'AwsSolutions-L1', reason: runtime.notNewestReason }]);
  return { functionArn: fn.attrArn, role };
}
