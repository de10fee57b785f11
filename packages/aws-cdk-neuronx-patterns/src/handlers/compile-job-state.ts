import { BatchClient, DescribeJobsCommand, JobDetail, KeyValuePair } from '@aws-sdk/client-batch';
import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { S3Client } from '@aws-sdk/client-s3';
import { errorMessage, signal, withThrottlingRetries } from './aws-calls';
import { tryAbortIncompleteUploads } from './incomplete-uploads';
import { markerExists } from './marker';
import { waitHandleUrl } from './wait-handle';
import { STATE_HANDLER_ENV, WAIT_HANDLE_PARAMETER } from '../private/handler-protocol';

/**
 * Signals the deploy's WaitCondition when a compile job ends (EventBridge "Batch Job State Change", SUCCEEDED or
 * FAILED, on the compile job queue).
 *
 * - SUCCEEDED with the completion marker in place: SUCCESS.
 * - SUCCEEDED without the marker: FAILURE (the artifacts are incomplete).
 * - FAILED: FAILURE with the job's status reason, exit code and log stream, so the stack event says why. A job
 *   cancelled by the queue's RUNNABLE time limit (it never got an instance) gets a message that says so.
 *
 * Either way, first, the incomplete multipart uploads that the job's attempts left under its artifact prefix (an
 * attempt killed while uploading: a Spot reclaim, a timeout) are aborted, so that their parts are not kept and billed.
 *
 * The job names its wait by the handle's logical id (a job parameter); the handle's URL, which is what a signal
 * needs and what could forge one, is read from this function's stack when the job ends, never from the job. A job
 * without the parameter was not started by a deploy and is ignored; a handle the stack no longer has (its wait was
 * replaced or the stack deleted) is not signalled. That the URL can be read was checked before the job was
 * submitted (compile-job.ts); a read that fails now is thrown, so that the invocation is retried.
 */

const batch = new BatchClient({});
const cfn = new CloudFormationClient({});
const s3 = new S3Client({});

export interface BatchJobStateChangeEvent {
  readonly 'detail-type': string;
  readonly 'detail': JobDetail;
}

export async function handler(event: BatchJobStateChangeEvent): Promise<void> {
  const detail = event.detail;
  const job = await withWaitHandle(detail);
  const handleId = job.parameters?.[WAIT_HANDLE_PARAMETER];
  if (!handleId) {
    console.log(JSON.stringify({ message: 'job has no wait handle: not started by a deploy, ignored', jobId: detail.jobId }));
    return;
  }
  const environment = toRecord(job.container?.environment);
  await abortLeftUploads(job, environment);
  const handleUrl = await waitHandleUrl(cfn, requiredEnv(STATE_HANDLER_ENV.stackId), handleId);
  if (!handleUrl) {
    console.log(JSON.stringify({ message: 'the stack no longer has the wait handle (replaced or deleted): nothing to signal', jobId: detail.jobId, handle: handleId }));
    return;
  }
  const uniqueId = detail.jobId ?? 'compile';
  if (detail.status === 'SUCCEEDED') {
    // Everything that can throw stays in the try: an error here must still end the wait with FAILURE.
    let artifactUri = '';
    let bucket = '';
    let key = '';
    let present = false;
    try {
      artifactUri = environment[requiredEnv(STATE_HANDLER_ENV.artifactUriEnvName)] ?? '';
      ({ bucket, key } = markerLocation(artifactUri, requiredEnv(STATE_HANDLER_ENV.markerName)));
      present = await markerExists(s3, bucket, key);
    } catch (error) {
      await signal(handleUrl, 'FAILURE', uniqueId, `Compile job ${detail.jobId} succeeded but its completion marker could not be read: ${errorMessage(error)}`);
      return;
    }
    if (present) {
      await signal(handleUrl, 'SUCCESS', uniqueId, `Compiled: ${artifactUri}`);
    } else {
      await signal(handleUrl, 'FAILURE', uniqueId, `Compile job ${detail.jobId} succeeded but wrote no completion marker at s3://${bucket}/${key}: the artifacts are incomplete. ${logHint(job)}`);
    }
    return;
  }
  if (detail.status === 'FAILED') {
    await signal(handleUrl, 'FAILURE', uniqueId, failureReason(job));
  }
}

/** Aborts the incomplete uploads initiated under the job's artifact prefix while it ran (from its creation to its stop). */
async function abortLeftUploads(job: JobDetail, environment: Record<string, string>): Promise<void> {
  const match = /^s3:\/\/([^/]+)\/(.+\/)$/.exec(environment[process.env[STATE_HANDLER_ENV.artifactUriEnvName] ?? ''] ?? '');
  if (!match || job.createdAt === undefined) return;
  await tryAbortIncompleteUploads(s3, match[1], match[2], job.createdAt, job.stoppedAt ?? Date.now());
}

/** The event carries the job's parameters and environment; when it lacks either, ask Batch. */
async function withWaitHandle(detail: JobDetail): Promise<JobDetail> {
  if ((detail.parameters?.[WAIT_HANDLE_PARAMETER] && detail.container?.environment?.length) || !detail.jobId) return detail;
  const described = await withThrottlingRetries(() => batch.send(new DescribeJobsCommand({ jobs: [detail.jobId!] })));
  return described.jobs?.[0] ?? detail;
}

/**
 * The status reason of a job that the queue's RUNNABLE time limit cancelled: Batch prefixes the blocking reason with
 * `Canceled by JobStateTimeLimit action due to reason: ` (AWS Batch user guide, "Jobs stuck in RUNNABLE due to
 * capacity" and "... due to misconfiguration": e.g. `Canceled by JobStateTimeLimit action due to reason:
 * CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY`; its SageMaker-queue pages say `Terminated by`). While the job is still
 * RUNNABLE the reason is the bare `CAPACITY:...`/`MISCONFIGURATION:...`, which is accepted too.
 */
const RUNNABLE_TIME_LIMIT_REASON = /^(?:(?:Canceled|Terminated) by JobStateTimeLimit action due to reason: )?(?:CAPACITY|MISCONFIGURATION):/;

export function failureReason(job: JobDetail): string {
  const statusReason = job.statusReason ?? 'no status reason';
  const name = `Compile job ${job.jobName ?? ''} (${job.jobId})`.replace('  ', ' ');
  const neverStarted = !job.startedAt && RUNNABLE_TIME_LIMIT_REASON.test(statusReason);
  if (neverStarted) {
    const minutes = Math.round(Number(process.env[STATE_HANDLER_ENV.runnableTimeoutSeconds] ?? 0) / 60);
    return `${name} could not start within ${minutes} minutes and was cancelled: ${statusReason}. `
      + 'Check the EC2 quota for this instance type (Running On-Demand or Spot Inf/Trn instances) and capacity in the '
      + 'subnets\' Availability Zones, then deploy again.';
  }
  const attempt = job.attempts?.[job.attempts.length - 1];
  const exitCode = job.container?.exitCode ?? attempt?.container?.exitCode;
  const containerReason = job.container?.reason ?? attempt?.container?.reason;
  return [
    `${name} failed: ${statusReason}.`,
    exitCode !== undefined ? `Exit code ${exitCode}.` : '',
    containerReason ? `Container: ${containerReason}.` : '',
    logHint(job),
  ].filter(Boolean).join(' ');
}

function logHint(job: JobDetail): string {
  const attempt = job.attempts?.[job.attempts.length - 1];
  const stream = job.container?.logStreamName ?? attempt?.container?.logStreamName;
  const group = process.env[STATE_HANDLER_ENV.logGroupName];
  return stream ? `Log stream: ${stream}${group ? ` in log group ${group}` : ''}.` : 'The job wrote no log stream.';
}

function markerLocation(artifactUri: string, markerName: string): { bucket: string; key: string } {
  const match = /^s3:\/\/([^/]+)\/(.*)$/.exec(artifactUri);
  if (!match) throw new Error(`The job's artifact URI '${artifactUri}' is not an s3:// URI`);
  return { bucket: match[1], key: `${match[2]}${markerName}` };
}

function toRecord(pairs: KeyValuePair[] | undefined): Record<string, string> {
  return Object.fromEntries((pairs ?? []).filter(p => p.name).map(p => [p.name!, p.value ?? '']));
}

function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`environment variable ${name} is not set`);
  return value;
}
