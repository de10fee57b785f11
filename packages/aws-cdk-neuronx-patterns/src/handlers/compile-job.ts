import { BatchClient, DescribeJobsCommand, SubmitJobCommand, TerminateJobCommand } from '@aws-sdk/client-batch';
import { S3Client } from '@aws-sdk/client-s3';
import { errorMessage, signal, withThrottlingRetries } from './aws-calls';
import { CustomResourceEvent, customResourceHandler } from './custom-resource';
import { markerExists } from './marker';
import { ALREADY_COMPILED_PREFIX, COMPILE_JOB_TAG_KEY, CompileJobProperties, WAIT_HANDLE_URL_ENV } from '../private/handler-protocol';

/**
 * Custom resource that starts the compile job during deploy, and stops it when the resource goes away.
 *
 * - Create, or Update to a new wait (a new artifact bucket or prefix, or a new wait timeout: each gives a new
 *   WaitCondition with a new handle): if the prefix already holds the completion marker, signal the new handle at
 *   once and start no job; otherwise submit the job, which carries the new handle's URL so that its outcome is
 *   signalled there when it ends (see compile-job-state.ts), and the tag `neuronx-compile: <JobTagValue>`
 *   without which this function's role may not terminate it. A new physical id makes CloudFormation delete the
 *   old one after the update (below): an old job still running is terminated then; it could only signal its own,
 *   replaced handle.
 * - Update with the same bucket, prefix and handle (e.g. a new job definition revision): nothing to do (same
 *   physical id). An Update that changed the handle and answered without signalling it would leave the new
 *   WaitCondition waiting out its whole timeout.
 * - Delete (stack delete, rollback, or the old resource after a replacement): terminate the job if it has not
 *   ended, so no Neuron instance outlives its stack.
 */

const batch = new BatchClient({});
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
    const physicalResourceId = await startCompile(event.ResourceProperties);
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
async function startCompile(props: CompileJobProperties): Promise<string> {
  if (await markerExists(s3, props.ArtifactBucket, props.MarkerKey)) {
    console.log(JSON.stringify({ message: 'marker present, no compile', bucket: props.ArtifactBucket, key: props.MarkerKey }));
    await signal(props.WaitHandleUrl, 'SUCCESS', 'compile', `Already compiled: s3://${props.ArtifactBucket}/${props.ArtifactPrefix}`);
    return `${ALREADY_COMPILED_PREFIX}${props.ArtifactPrefix}`;
  }
  if (!props.JobTagValue) {
    throw new Error(`JobTagValue is empty: a job without the ${COMPILE_JOB_TAG_KEY} tag could not be terminated on delete; `
      + 'set it to the value the lifecycle function\'s role allows (the NeuronxCompile construct does).');
  }
  const submitted = await withThrottlingRetries(() => batch.send(new SubmitJobCommand({
    jobName: props.JobName,
    jobQueue: props.JobQueueArn,
    jobDefinition: props.JobDefinitionArn,
    containerOverrides: { environment: [{ name: WAIT_HANDLE_URL_ENV, value: props.WaitHandleUrl }] },
    tags: { [COMPILE_JOB_TAG_KEY]: props.JobTagValue },
  })));
  if (!submitted.jobId) throw new Error('SubmitJob returned no job id');
  console.log(JSON.stringify({ message: 'compile job submitted', jobId: submitted.jobId, jobName: props.JobName }));
  return submitted.jobId;
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
