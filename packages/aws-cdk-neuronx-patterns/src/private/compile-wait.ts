import * as crypto from 'crypto';
import { CfnWaitCondition, CfnWaitConditionHandle, CustomResource, Duration, Fn, Stack } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { ARTIFACT_PREFIX_REASON, CompileBatchEnvironment } from './compile-batch-environment';
import { CompileSettings } from './compile-configuration';
import { CONTRACT, compileEnv } from './contract';
import { HandlerFunction, handlerFunction } from './handler-function';
import { COMPILE_JOB_RESOURCE_TYPE, COMPILE_JOB_TAG_KEY, CompileJobProperties, STATE_HANDLER_ENV } from './handler-protocol';
import { nagFinding, suppressWildcardFindings, wildcardFindings } from './nag-finding';
import { grantAbortPrefixUploads, grantPrefix } from './s3-prefix';

/**
 * The deploy's wait for a NeuronxCompile, signalled with the outcome. Made in the NeuronxCompile's own scope, so the
 * logical ids are those of its children.
 *
 * CloudFormation cannot update a WaitCondition (Count, Handle and Timeout: "Updates aren't supported"), and a
 * WaitCondition added in an update needs a new handle: it evaluates the signals its handle already holds, an
 * earlier deploy's too (AWS::CloudFormation::WaitCondition reference, Handle). So whatever the deploy waits for (the
 * artifacts' bucket and prefix) and the wait's own Timeout name a new WaitCondition with a new handle; nothing else
 * does (no needless re-waits). The custom resource signals the handle before the WaitCondition exists (it depends on
 * the custom resource): the signal waits at the handle.
 *
 * The handle's URL is a bearer credential: whoever has it can signal SUCCESS. The job carries only the handle's
 * logical id; the function reads the URL from the stack when it signals (cloudformation:DescribeStackResource on
 * this stack only). Whatever places the inference code checks the completion marker after the wait (see
 * inference-code.ts), so a forged SUCCESS still makes no model over incomplete artifacts.
 */
export function addDeployWait(
  compile: Construct, bucket: s3.IBucket, settings: CompileSettings, batchEnvironment: CompileBatchEnvironment,
): DeployWait {
  const { jobQueue, jobDefinition } = batchEnvironment;
  const waitId = waitIdentity(Stack.of(compile).resolve(bucket.bucketName), settings.artifactPrefix, settings.waitTimeout);
  const handle = new CfnWaitConditionHandle(compile, `WaitHandle${waitId}`);
  const lifecycleFunction = addLifecycleFunction(compile, settings, batchEnvironment);
  const jobTagValue = compileTagValue(compile);
  const compileJobProperties: CompileJobProperties = {
    JobQueueArn: jobQueue.jobQueueArn,
    JobDefinitionArn: jobDefinition.ref,
    JobName: `neuronx-compile-${waitId}`,
    JobTagValue: jobTagValue,
    ArtifactBucket: bucket.bucketName,
    ArtifactPrefix: settings.artifactPrefix,
    MarkerKey: settings.markerKey,
    WaitHandleUrl: handle.ref,
    WaitHandleLogicalId: handle.logicalId,
  };
  const { rule, rulePermission } = addJobStateRule(compile, jobQueue, lifecycleFunction);
  grantLifecycle(compile, bucket, settings.artifactPrefix, lifecycleFunction, { jobQueue, jobDefinition, jobTagValue });
  const start = new CustomResource(compile, 'CompileJob', {
    serviceToken: lifecycleFunction.functionArn,
    resourceType: COMPILE_JOB_RESOURCE_TYPE,
    serviceTimeout: Duration.minutes(5),
    properties: { ...compileJobProperties },
  });
  // Create order: the job-state rule and its permission before the job (see addJobStateRule). Delete order: the job
  // is terminated before its compute environment goes (the queue and job definition are referenced in the
  // properties, so CloudFormation orders those already).
  start.node.addDependency(batchEnvironment.computeEnvironment, rule, rulePermission);

  const wait = new CfnWaitCondition(compile, `Wait${waitId}`, {
    handle: handle.ref,
    count: 1,
    timeout: String(settings.waitTimeout.toSeconds()),
  });
  wait.node.addDependency(start);
  return { lifecycleFunction, wait };
}

/** What a compile's deploy wait gives the rest of the compile. */
export interface DeployWait {
  /** The function that serves the compile's custom resources and signals the wait. */
  readonly lifecycleFunction: HandlerFunction;
  /** The WaitCondition: whatever must come after the compile depends on it. */
  readonly wait: CfnWaitCondition;
}

/**
 * One function for everything that happens to the prefix during a deploy (see handlers/compile-lifecycle.ts):
 * CloudFormation's requests start the job (or find it compiled already) and stop it; the job-state rule's
 * events signal the deploy when it ends; model data made from this compile has it place the inference code.
 * What the events need (describe jobs, read the artifact prefix) the requests need too: one role serves all.
 */
function addLifecycleFunction(compile: Construct, settings: CompileSettings, batchEnvironment: CompileBatchEnvironment): HandlerFunction {
  return handlerFunction(compile, 'LifecycleFunction', {
    handler: 'compileLifecycle',
    description: 'Starts and stops the Neuron compile job, signals the deploy when it ends, and places the inference code',
    timeout: Duration.minutes(2),
    environment: {
      [STATE_HANDLER_ENV.artifactUriEnvName]: compileEnv('artifactS3Uri'),
      [STATE_HANDLER_ENV.markerName]: CONTRACT.layout.marker,
      [STATE_HANDLER_ENV.runnableTimeoutSeconds]: String(settings.startTimeout.toSeconds()),
      [STATE_HANDLER_ENV.logGroupName]: batchEnvironment.logGroup.logGroupName,
      [STATE_HANDLER_ENV.stackId]: Stack.of(compile).stackId,
    },
  });
}

/**
 * The job's end is signalled by a rule on the queue's job-state events. The rule and its permission to invoke
 * the function exist before the job is submitted (the custom resource depends on them): a job that ended before
 * them would signal nothing, and the deploy would wait out the whole WaitCondition timeout.
 * An L1 rule and permission: aws-events-targets would load most of aws-cdk-lib for one Lambda target.
 */
function addJobStateRule(compile: Construct, jobQueue: batch.IJobQueue, lifecycleFunction: HandlerFunction) {
  const rule = new events.CfnRule(compile, 'JobStateRule', {
    description: 'Neuron compile job ended',
    eventPattern: {
      'source': ['aws.batch'],
      'detail-type': ['Batch Job State Change'],
      'detail': { jobQueue: [jobQueue.jobQueueArn], status: ['SUCCEEDED', 'FAILED'] },
    },
    targets: [{
      id: 'LifecycleFunction',
      arn: lifecycleFunction.functionArn,
      retryPolicy: { maximumRetryAttempts: 10, maximumEventAgeInSeconds: Duration.hours(1).toSeconds() },
    }],
  });
  const rulePermission = new lambda.CfnPermission(compile, 'JobStateRulePermission', {
    action: 'lambda:InvokeFunction',
    functionName: lifecycleFunction.functionArn,
    principal: 'events.amazonaws.com',
    sourceArn: rule.attrArn,
  });
  return { rule, rulePermission };
}

/**
 * The function may stop only jobs it tagged as this compile's: it submits each job with the tag
 * `neuronx-compile: <this construct's id>` (Batch authorizes tagging on submit as batch:TagResource), and may
 * terminate a job only when it carries that tag. The value names the construct, not the artifact prefix, so
 * that after a replacement (a new prefix, a new job) the old job still carries a tag the policy allows.
 * Each suppression lists exactly the wildcard findings it is for, so a wildcard added later is reported.
 */
function grantLifecycle(
  compile: Construct, bucket: s3.IBucket, prefix: string, lifecycleFunction: HandlerFunction,
  job: { jobQueue: batch.IJobQueue; jobDefinition: batch.CfnJobDefinition; jobTagValue: string },
): void {
  const { jobQueue, jobDefinition, jobTagValue } = job;
  const lifecycleRole = lifecycleFunction.role;
  const jobArns = Stack.of(compile).formatArn({ service: 'batch', resource: 'job', resourceName: '*' });
  const jobDefinitionArns = jobDefinitionArnAnyRevision(compile, jobDefinition);
  lifecycleRole.addToPrincipalPolicy(new iam.PolicyStatement({
    actions: ['batch:SubmitJob'],
    resources: [jobQueue.jobQueueArn, jobDefinitionArns],
  }));
  lifecycleRole.addToPrincipalPolicy(new iam.PolicyStatement({
    actions: ['batch:SubmitJob', 'batch:TagResource'],
    resources: [jobArns],
    conditions: {
      'StringEquals': { [`aws:RequestTag/${COMPILE_JOB_TAG_KEY}`]: jobTagValue },
      'ForAllValues:StringEquals': { 'aws:TagKeys': [COMPILE_JOB_TAG_KEY] },
    },
  }));
  lifecycleRole.addToPrincipalPolicy(new iam.PolicyStatement({
    actions: ['batch:TerminateJob'],
    resources: [jobArns],
    conditions: { StringEquals: { [`aws:ResourceTag/${COMPILE_JOB_TAG_KEY}`]: jobTagValue } },
  }));
  // Stopping a job on delete, and reading a failed job's details when the event lacks them.
  lifecycleRole.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['batch:DescribeJobs'], resources: ['*'] }));
  // The wait handle's URL, read from this stack (its id is its ARN) when a job is submitted and when it ends.
  lifecycleRole.addToPrincipalPolicy(new iam.PolicyStatement({
    actions: ['cloudformation:DescribeStackResource'],
    resources: [Stack.of(compile).stackId],
  }));
  // The completion marker: whether to start a job at all, and whether a job that succeeded wrote everything.
  const prefixFindings = wildcardFindings(compile, [
    ...grantPrefix(bucket, prefix, lifecycleRole, 'read'),
    // The incomplete uploads a killed attempt left (handlers/incomplete-uploads.ts), aborted when the job ends.
    ...grantAbortPrefixUploads(bucket, prefix, lifecycleRole),
  ]);
  suppressWildcardFindings(lifecycleRole, [
    ...prefixFindings, nagFinding(compile, 'Resource', '*'), nagFinding(compile, 'Resource', jobArns), nagFinding(compile, 'Resource', jobDefinitionArns),
  ], `${ARTIFACT_PREFIX_REASON} batch:DescribeJobs supports no resource-level permissions. batch:SubmitJob is on this compile's queue and `
    + 'any revision of its job definition (job-definition/<name>:*). Job ids are known only at run time (job/*), so batch:SubmitJob '
    + `and batch:TagResource on jobs require the request tag ${COMPILE_JOB_TAG_KEY}=<this compile> and no other tag, and `
    + 'batch:TerminateJob requires that tag on the job: the function can stop only the jobs it started for this compile.');
}

/**
 * Identifies one NeuronxCompile in its stack (stack name and construct path, hashed), the same for every compile
 * it runs: the value of the tag its jobs carry.
 */
function compileTagValue(compile: Construct): string {
  return crypto.createHash('sha256').update(`${Stack.of(compile).stackName}\n${compile.node.path}`).digest('hex').slice(0, 16);
}

function jobDefinitionArnAnyRevision(compile: Construct, jobDefinition: batch.CfnJobDefinition): string {
  // The Ref is the ARN with its revision (name:N); SubmitJob is authorized on the job definition with or
  // without it, and a new revision must not need a new policy.
  const name = Fn.select(0, Fn.split(':', Fn.select(1, Fn.split('job-definition/', jobDefinition.ref))));
  return Stack.of(compile).formatArn({ service: 'batch', resource: 'job-definition', resourceName: `${name}:*` });
}

/**
 * Identifies one wait: the artifacts' location (the bucket as the template names it, a token's resolved form being
 * the same in every synth) and the wait's Timeout. 8 hex digits, as the logical id suffix of the WaitCondition and
 * its handle.
 */
function waitIdentity(bucket: unknown, prefix: string, timeout: Duration): string {
  const inputs = { bucket, prefix, timeoutSeconds: timeout.toSeconds() };
  return crypto.createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 8);
}
