import { BatchClient, DescribeJobsCommand, SubmitJobCommand, TerminateJobCommand } from '@aws-sdk/client-batch';
import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { S3Client } from '@aws-sdk/client-s3';
import { errorMessage, signal, withThrottlingRetries } from './aws-calls';
import { CustomResourceEvent, customResourceHandler } from './custom-resource';
import { markerExists } from './marker';
import { waitHandleUrl } from './wait-handle';
import { ALREADY_COMPILED_PREFIX, COMPILE_JOB_TAG_KEY, CompileJobProperties, WAIT_HANDLE_PARAMETER } from '../private/handler-protocol';

/**
 * Custom resource that starts the compile job during deploy, and stops it when the resource goes away.
 *
 * - Create, or Update to a new wait (a new artifact bucket or prefix, or a new wait timeout: each gives a new
 *   WaitCondition with a new handle): if the prefix already holds the completion marker, signal the new handle at
 *   once and start no job; otherwise submit the job, which carries the new handle's logical id (never its URL,
 *   which anyone allowed batch:DescribeJobs could read and signal SUCCESS to) so that its outcome is signalled
 *   there when it ends (see compile-job-state.ts), and the tag `neuronx-compile: <JobTagValue>` without which this
 *   function's role may not terminate it. Before submitting, the function reads the handle's URL from the stack as
 *   the job-state event will, and refuses to start a job whose end it could not signal: the deploy fails at once
 *   instead of waiting out the WaitCondition's timeout. A new physical id makes CloudFormation delete the
 *   old one after the update (below): an old job still running is terminated then; it could only signal its own,
 *   replaced handle.
 * - Update with the same bucket, prefix and handle (e.g. a new job definition revision): nothing to do (same
 *   physical id). An Update that changed the handle and answered without signalling it would leave the new
 *   WaitCondition waiting out its whole timeout.
 * - Delete (stack delete, rollback, or the old resource after a replacement): terminate the job if it has not
 *   ended, so no Neuron instance outlives its stack.
 */

const batch = new BatchClient({});
const cfn = new CloudFormationClient({});
const s3 = new S3Client({});
const TERMINAL = new Set(['SUCCEEDED', 'FAILED']);

export type CompileJobEvent = CustomResourceEvent<CompileJobProperties>;

export const handler = customResourceHandler<CompileJobProperties>({
  // The id CloudFormation knows; on Create, which has none yet, one that names no job: a Create that fails started
  // none, and the Delete of its rollback calls Batch not at all.
  physicalResourceId: event => event.PhysicalResourceId ?? `${ALREADY_COMPILED_PREFIX}${event.ResourceProperties.ArtifactPrefix}`,
  onEvent: async (event, physicalId) => {
    if (event.RequestType === 'Delete') {
      await stopJob(physicalId);
      return { reason: 'Compile job stopped if it was running.' };
    }
    if (event.RequestType === 'Update' && sameWait(event)) {
      return { reason: 'Same artifact prefix and wait: nothing to compile or signal.' };
    }
    const physicalResourceId = await startCompile(event.ResourceProperties, event.StackId);
    return {
      physicalResourceId,
      reason: physicalResourceId.startsWith(ALREADY_COMPILED_PREFIX)
        ? 'Artifacts already compiled: no job started.'
        : `Compile job ${physicalResourceId} submitted.`,
      data: { JobId: physicalResourceId },
    };
  },
  failureReason: (event, error) => `${event.RequestType} failed: ${errorMessage(error)}`,
});

/** The update leaves what the deploy waits for, and the handle it waits on, as they were. */
function sameWait(event: CompileJobEvent): boolean {
  const old = event.OldResourceProperties;
  const props = event.ResourceProperties;
  return !!old && old.ArtifactBucket === props.ArtifactBucket && old.ArtifactPrefix === props.ArtifactPrefix
    && old.WaitHandleUrl === props.WaitHandleUrl;
}

/** Returns the job id, or the already-compiled physical id when the marker exists. */
async function startCompile(props: CompileJobProperties, stackId: string): Promise<string> {
  if (await markerExists(s3, props.ArtifactBucket, props.MarkerKey)) {
    console.log(JSON.stringify({ message: 'marker present, no compile', bucket: props.ArtifactBucket, key: props.MarkerKey }));
    await signal(props.WaitHandleUrl, 'SUCCESS', 'compile', `Already compiled: s3://${props.ArtifactBucket}/${props.ArtifactPrefix}`);
    return `${ALREADY_COMPILED_PREFIX}${props.ArtifactPrefix}`;
  }
  if (!props.JobTagValue) {
    throw new Error(`JobTagValue is empty: a job without the ${COMPILE_JOB_TAG_KEY} tag could not be terminated on delete; `
      + 'set it to the value the lifecycle function\'s role allows (the NeuronxCompile construct does).');
  }
  await checkSignallable(props, stackId);
  const submitted = await withThrottlingRetries(() => batch.send(new SubmitJobCommand({
    jobName: props.JobName,
    jobQueue: props.JobQueueArn,
    jobDefinition: props.JobDefinitionArn,
    parameters: { [WAIT_HANDLE_PARAMETER]: props.WaitHandleLogicalId },
    tags: { [COMPILE_JOB_TAG_KEY]: props.JobTagValue },
  })));
  if (!submitted.jobId) throw new Error('SubmitJob returned no job id');
  console.log(JSON.stringify({ message: 'compile job submitted', jobId: submitted.jobId, jobName: props.JobName }));
  return submitted.jobId;
}

/**
 * The job-state function will signal the URL it reads from the stack under the handle's logical id: it must be the
 * URL CloudFormation gave this resource. Otherwise no job is started (a job nobody can signal for would leave the
 * deploy waiting out the WaitCondition's whole timeout).
 */
async function checkSignallable(props: CompileJobProperties, stackId: string): Promise<void> {
  if (!props.WaitHandleLogicalId) {
    throw new Error('WaitHandleLogicalId is empty: the job\'s end could not be signalled; set it to the logical id of the '
      + 'WaitConditionHandle whose URL is WaitHandleUrl (the NeuronxCompile construct does).');
  }
  let read: string | undefined;
  try {
    read = await waitHandleUrl(cfn, stackId, props.WaitHandleLogicalId);
  } catch (error) {
    throw new Error(`the wait handle ${props.WaitHandleLogicalId} could not be read from the stack, so the job's end could not be `
      + `signalled: ${errorMessage(error)}`);
  }
  if (read !== props.WaitHandleUrl) {
    throw new Error(`the stack's ${props.WaitHandleLogicalId} is ${read === undefined ? 'missing' : 'not the handle this resource was given'}, `
      + 'so the job\'s end could not be signalled: no job started.');
  }
}

async function stopJob(physicalId: string): Promise<void> {
  if (physicalId.startsWith(ALREADY_COMPILED_PREFIX)) return;
  const described = await withThrottlingRetries(() => batch.send(new DescribeJobsCommand({ jobs: [physicalId] })));
  const job = described.jobs?.[0];
  if (!job || TERMINAL.has(job.status ?? '')) return;
  await withThrottlingRetries(() => batch.send(new TerminateJobCommand({
    jobId: physicalId,
    reason: 'Stopped by CloudFormation: the stack was deleted or rolled back, or the compile was replaced.',
  })));
  console.log(JSON.stringify({ message: 'compile job terminated', jobId: physicalId, status: job.status }));
}
