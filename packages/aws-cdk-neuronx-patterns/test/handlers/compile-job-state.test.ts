import { BatchClient, DescribeJobsCommand, JobDetail } from '@aws-sdk/client-batch';
import { CloudFormationClient, CloudFormationServiceException, DescribeStackResourceCommand } from '@aws-sdk/client-cloudformation';
import { AbortMultipartUploadCommand, HeadObjectCommand, ListMultipartUploadsCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { BatchJobStateChangeEvent, failureReason, handler } from '../../src/handlers/compile-job-state';

const batchMock = mockClient(BatchClient);
const cfnMock = mockClient(CloudFormationClient);
const s3Mock = mockClient(S3Client);
const ORIGINAL_ENV = { ...process.env };

const WAIT_HANDLE_URL = 'https://cloudformation-waitcondition.s3.amazonaws.com/handle?sig=2';
const WAIT_HANDLE_ID = 'CompileWaitHandle0123abcd';
const STACK_ID = 'arn:aws:cloudformation:us-east-1:111122223333:stack/s/1';
const ARTIFACT_URI = 's3://artifact-bucket/neuronx/calm3/abcd1234/';
const LOG_STREAM = 'compile/default/0123456789abcdef';
const LOG_GROUP = '/neuronx/compile/abcd1234';

/** The job's environment as the Batch event carries it: the job definition's variables (no handle URL). */
const JOB_ENVIRONMENT = [
  { name: 'NEURONX_ARTIFACT_S3_URI', value: ARTIFACT_URI },
  { name: 'NEURONX_MODEL_ID', value: 'cyberagent/calm3-22b-chat' },
];
/** The job's parameters as the event carries them: the handle's logical id only. */
const JOB_PARAMETERS = { neuronxWaitHandle: WAIT_HANDLE_ID };

/** The handle as DescribeStackResource returns it: its physical id is its URL. */
function handleResource(overrides: Record<string, unknown> = {}) {
  return {
    StackResourceDetail: {
      StackId: STACK_ID,
      LogicalResourceId: WAIT_HANDLE_ID,
      PhysicalResourceId: WAIT_HANDLE_URL,
      ResourceType: 'AWS::CloudFormation::WaitConditionHandle',
      ResourceStatus: 'CREATE_COMPLETE',
      LastUpdatedTimestamp: new Date(0),
      ...overrides,
    },
  };
}

function job(overrides: Partial<JobDetail> = {}): JobDetail {
  return {
    jobArn: 'arn:aws:batch:us-east-1:111122223333:job/job-1',
    jobId: 'job-1',
    jobName: 'neuronx-compile-abcd1234',
    jobQueue: 'arn:aws:batch:us-east-1:111122223333:job-queue/compile',
    jobDefinition: 'arn:aws:batch:us-east-1:111122223333:job-definition/compile:3',
    status: 'SUCCEEDED',
    createdAt: 1_700_000_000_000,
    startedAt: 1_700_000_100_000,
    parameters: JOB_PARAMETERS,
    container: { environment: JOB_ENVIRONMENT, logStreamName: LOG_STREAM, exitCode: 0 },
    ...overrides,
  };
}

function event(detail: JobDetail): BatchJobStateChangeEvent {
  return { 'detail-type': 'Batch Job State Change', 'detail': detail };
}

function s3Error(name: string, httpStatusCode: number): S3ServiceException {
  return new S3ServiceException({ name, $fault: 'client', $metadata: { httpStatusCode }, message: name });
}

let fetchMock: jest.SpiedFunction<typeof fetch>;

/** Every signal sent to the wait handle, in order. */
function signals(): { Status: string; Reason: string; UniqueId: string; Data: string }[] {
  return fetchMock.mock.calls.map(([url, init]) => {
    expect(String(url)).toBe(WAIT_HANDLE_URL);
    expect(init?.method).toBe('PUT');
    return JSON.parse(String(init?.body));
  });
}

function onlySignal(): { Status: string; Reason: string; UniqueId: string } {
  const sent = signals();
  expect(sent).toHaveLength(1);
  return sent[0];
}

beforeEach(() => {
  process.env = {
    ...ORIGINAL_ENV,
    AWS_REGION: 'us-east-1',
    ARTIFACT_URI_ENV_NAME: 'NEURONX_ARTIFACT_S3_URI',
    MARKER_NAME: '_COMPILED',
    RUNNABLE_TIMEOUT_SECONDS: '1800',
    LOG_GROUP_NAME: LOG_GROUP,
    STACK_ID,
  };
  batchMock.reset();
  cfnMock.reset();
  s3Mock.reset();
  cfnMock.on(DescribeStackResourceCommand, { StackName: STACK_ID, LogicalResourceId: WAIT_HANDLE_ID }).resolves(handleResource());
  jest.restoreAllMocks();
  fetchMock = jest.spyOn(global, 'fetch').mockImplementation(async () => new Response(null, { status: 200 }));
  jest.spyOn(console, 'log').mockImplementation(() => undefined);
  jest.spyOn(console, 'error').mockImplementation(() => undefined);
});

afterAll(() => {
  process.env = ORIGINAL_ENV;
});

describe('SUCCEEDED', () => {
  test('with the completion marker: SUCCESS', async () => {
    s3Mock.on(HeadObjectCommand).resolves({});

    await handler(event(job()));

    expect(s3Mock.commandCalls(HeadObjectCommand).map(c => c.args[0].input)).toEqual([
      { Bucket: 'artifact-bucket', Key: 'neuronx/calm3/abcd1234/_COMPILED' },
    ]);
    expect(batchMock.calls()).toHaveLength(0);
    expect(signals()).toEqual([{ Status: 'SUCCESS', Reason: `Compiled: ${ARTIFACT_URI}`, UniqueId: 'job-1', Data: '' }]);
  });

  test('without the marker: FAILURE naming the missing marker and the log', async () => {
    s3Mock.on(HeadObjectCommand).rejects(s3Error('NotFound', 404));

    await handler(event(job()));

    const sent = onlySignal();
    expect(sent.Status).toBe('FAILURE');
    expect(sent.Reason).toContain('s3://artifact-bucket/neuronx/calm3/abcd1234/_COMPILED');
    expect(sent.Reason).toContain('no completion marker');
    expect(sent.Reason).toContain(`Log stream: ${LOG_STREAM} in log group ${LOG_GROUP}`);
  });

  test('a marker that cannot be read (403): FAILURE with the error, never SUCCESS', async () => {
    s3Mock.on(HeadObjectCommand).rejects(s3Error('Forbidden', 403));

    await handler(event(job()));

    const sent = onlySignal();
    expect(sent.Status).toBe('FAILURE');
    expect(sent.Reason).toBe('Compile job job-1 succeeded but its completion marker could not be read: Forbidden: Forbidden');
  });

  test('a job environment without the artifact URI still ends the wait with FAILURE', async () => {
    const environment = JOB_ENVIRONMENT.filter(e => e.name !== 'NEURONX_ARTIFACT_S3_URI');

    await handler(event(job({ container: { environment } })));

    expect(s3Mock.calls()).toHaveLength(0);
    const sent = onlySignal();
    expect(sent.Status).toBe('FAILURE');
    expect(sent.Reason).toMatch(/artifact URI '' is not an s3:\/\/ URI/);
  });

  test('a handler without its configuration still ends the wait with FAILURE', async () => {
    delete process.env.MARKER_NAME;

    await handler(event(job()));

    const sent = onlySignal();
    expect(sent.Status).toBe('FAILURE');
    expect(sent.Reason).toContain('environment variable MARKER_NAME is not set');
  });
});

describe('FAILED', () => {
  test('FAILURE with the status reason, exit code, container reason and log stream', async () => {
    await handler(event(job({
      status: 'FAILED',
      statusReason: 'Essential container in task exited',
      container: { environment: JOB_ENVIRONMENT, exitCode: 137, reason: 'OutOfMemoryError: Container killed due to memory usage', logStreamName: LOG_STREAM },
    })));

    expect(s3Mock.commandCalls(HeadObjectCommand)).toHaveLength(0);
    const sent = onlySignal();
    expect(sent.Status).toBe('FAILURE');
    expect(sent.UniqueId).toBe('job-1');
    expect(sent.Reason).toBe('Compile job neuronx-compile-abcd1234 (job-1) failed: Essential container in task exited. '
      + 'Exit code 137. Container: OutOfMemoryError: Container killed due to memory usage. '
      + `Log stream: ${LOG_STREAM} in log group ${LOG_GROUP}.`);
  });

  test('the exit code and log stream of the last attempt when the container has none', async () => {
    await handler(event(job({
      status: 'FAILED',
      statusReason: 'Essential container in task exited',
      container: { environment: JOB_ENVIRONMENT },
      attempts: [
        { container: { exitCode: 1, logStreamName: 'compile/default/first' } },
        { container: { exitCode: 2, logStreamName: 'compile/default/second' } },
      ],
    })));

    const sent = onlySignal();
    expect(sent.Reason).toContain('Exit code 2.');
    expect(sent.Reason).toContain('Log stream: compile/default/second');
  });

  test('an exit code of 0 is still reported', async () => {
    await handler(event(job({ status: 'FAILED', statusReason: 'Terminated', container: { environment: JOB_ENVIRONMENT, exitCode: 0 } })));

    expect(onlySignal().Reason).toContain('Exit code 0.');
  });

  test('a job without a log stream says so', async () => {
    await handler(event(job({ status: 'FAILED', statusReason: 'Terminated', container: { environment: JOB_ENVIRONMENT } })));

    expect(onlySignal().Reason).toContain('The job wrote no log stream.');
  });

  test('a job cancelled while RUNNABLE: could not start within 30 minutes, check the quota', async () => {
    await handler(event(job({
      status: 'FAILED',
      // The wording Batch gives a job its RUNNABLE time limit cancelled (AWS Batch user guide, "Jobs stuck in
      // RUNNABLE due to capacity").
      statusReason: 'Canceled by JobStateTimeLimit action due to reason: CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY',
      startedAt: undefined,
      container: { environment: JOB_ENVIRONMENT },
    })));

    const sent = onlySignal();
    expect(sent.Status).toBe('FAILURE');
    expect(sent.Reason).toContain('could not start within 30 minutes');
    expect(sent.Reason).toContain('CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY');
    expect(sent.Reason).toMatch(/quota/i);
    expect(sent.Reason).not.toContain('Exit code');
  });

  test('MISCONFIGURATION reasons before start get the same message', () => {
    const reason = failureReason(job({
      status: 'FAILED', statusReason: 'Canceled by JobStateTimeLimit action due to reason: MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT', startedAt: undefined,
    }));

    expect(reason).toContain('could not start within 30 minutes');
    expect(reason).toContain('MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT');
  });

  test('the bare blocking reason (a job still RUNNABLE when it was stopped) gets the same message', () => {
    const reason = failureReason(job({
      status: 'FAILED',
      statusReason: 'CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - Service cannot fulfill the capacity requested for instance type [inf2.8xlarge]',
      startedAt: undefined,
    }));

    expect(reason).toContain('could not start within 30 minutes');
  });

  test('a capacity reason after the job started is an ordinary failure', () => {
    const reason = failureReason(job({ status: 'FAILED', statusReason: 'CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY', startedAt: 1 }));

    expect(reason).not.toContain('could not start');
    expect(reason).toContain('failed: CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY.');
  });

  test('an ordinary failure before start is not mistaken for the RUNNABLE time limit', () => {
    const reason = failureReason(job({ status: 'FAILED', statusReason: 'Terminated by user', startedAt: undefined }));

    expect(reason).not.toContain('could not start');
    expect(reason).toContain('failed: Terminated by user.');
  });
});

describe('finding the wait handle', () => {
  test('the URL signalled is the one read from the stack under the job\'s handle id, not anything the job carries', async () => {
    s3Mock.on(HeadObjectCommand).resolves({});

    await handler(event(job()));

    expect(cfnMock.commandCalls(DescribeStackResourceCommand).map(c => c.args[0].input)).toEqual([
      { StackName: STACK_ID, LogicalResourceId: WAIT_HANDLE_ID },
    ]);
    // signals() checks every PUT went to WAIT_HANDLE_URL, which only the stack knows.
    expect(signals()).toEqual([{ Status: 'SUCCESS', Reason: `Compiled: ${ARTIFACT_URI}`, UniqueId: 'job-1', Data: '' }]);
  });

  test('a job with a handle URL in its environment but no handle id (a forgery, or an older library\'s job): ignored', async () => {
    const environment = [...JOB_ENVIRONMENT, { name: 'NEURONX_WAIT_HANDLE_URL', value: 'https://attacker.example/handle' }];
    batchMock.on(DescribeJobsCommand).resolves({ jobs: [job({ parameters: {}, container: { environment } })] });
    s3Mock.on(HeadObjectCommand).resolves({});

    await handler(event(job({ parameters: {}, container: { environment } })));

    expect(cfnMock.calls()).toHaveLength(0);
    expect(fetchMock).not.toHaveBeenCalled();
  });

  test('a handle the stack no longer has (its wait was replaced, or the stack deleted): nothing signalled', async () => {
    cfnMock.on(DescribeStackResourceCommand).rejects(new CloudFormationServiceException({
      name: 'ValidationError', $fault: 'client', $metadata: { httpStatusCode: 400 }, message: `Resource ${WAIT_HANDLE_ID} does not exist for stack s`,
    }));

    await handler(event(job({ status: 'FAILED', statusReason: 'Terminated' })));

    expect(fetchMock).not.toHaveBeenCalled();
  });

  test('a handle being deleted: nothing signalled', async () => {
    cfnMock.on(DescribeStackResourceCommand).resolves(handleResource({ ResourceStatus: 'DELETE_COMPLETE' }));

    await handler(event(job({ status: 'FAILED', statusReason: 'Terminated' })));

    expect(fetchMock).not.toHaveBeenCalled();
  });

  test('a handle that cannot be read (access denied) is thrown, so the event is retried; nothing is signalled anywhere', async () => {
    cfnMock.on(DescribeStackResourceCommand).rejects(new CloudFormationServiceException({
      name: 'AccessDenied', $fault: 'client', $metadata: { httpStatusCode: 403 }, message: 'not authorized',
    }));
    s3Mock.on(HeadObjectCommand).resolves({});

    await expect(handler(event(job()))).rejects.toThrow('not authorized');

    expect(fetchMock).not.toHaveBeenCalled();
  });

  test('a handle id that names something else in the stack (e.g. the compile\'s custom resource): thrown, nothing signalled', async () => {
    cfnMock.on(DescribeStackResourceCommand).resolves(handleResource({ ResourceType: 'Custom::NeuronxCompileJob', PhysicalResourceId: 'job-1' }));
    s3Mock.on(HeadObjectCommand).resolves({});

    await expect(handler(event(job()))).rejects.toThrow(/is not a AWS::CloudFormation::WaitConditionHandle/);

    expect(fetchMock).not.toHaveBeenCalled();
  });

  test('a function without its stack id is thrown, nothing signalled', async () => {
    delete process.env.STACK_ID;

    await expect(handler(event(job({ status: 'FAILED', statusReason: 'x' })))).rejects.toThrow('environment variable STACK_ID is not set');

    expect(fetchMock).not.toHaveBeenCalled();
  });

  test('an event without the handle id in its parameters: the handler asks Batch', async () => {
    batchMock.on(DescribeJobsCommand).resolves({ jobs: [job({ status: 'FAILED', statusReason: 'Essential container in task exited' })] });

    await handler(event(job({ status: 'FAILED', statusReason: 'Essential container in task exited', parameters: undefined, container: {} })));

    expect(batchMock.commandCalls(DescribeJobsCommand).map(c => c.args[0].input)).toEqual([{ jobs: ['job-1'] }]);
    const sent = onlySignal();
    expect(sent.Status).toBe('FAILURE');
    expect(sent.Reason).toContain('Essential container in task exited');
  });

  test('an event with the handle does not call Batch', async () => {
    s3Mock.on(HeadObjectCommand).resolves({});

    await handler(event(job()));

    expect(batchMock.calls()).toHaveLength(0);
    expect(onlySignal().Status).toBe('SUCCESS');
  });

  test('a job not started by a deploy (no handle anywhere): no signal at all', async () => {
    batchMock.on(DescribeJobsCommand).resolves({ jobs: [job({ parameters: {} })] });
    s3Mock.on(HeadObjectCommand).resolves({});

    await handler(event(job({ parameters: {} })));

    expect(batchMock.commandCalls(DescribeJobsCommand)).toHaveLength(1);
    expect(s3Mock.calls()).toHaveLength(0);
    expect(fetchMock).not.toHaveBeenCalled();
  });

  test('a job Batch no longer knows, without a handle in the event: no signal', async () => {
    batchMock.on(DescribeJobsCommand).resolves({ jobs: [] });

    await handler(event(job({ status: 'FAILED', parameters: undefined, container: {} })));

    expect(fetchMock).not.toHaveBeenCalled();
  });

  test('a failing signal PUT is thrown, so the event is retried', async () => {
    fetchMock.mockImplementation(async () => new Response(null, { status: 500 }));

    await expect(handler(event(job({ status: 'FAILED', statusReason: 'x' })))).rejects.toThrow('HTTP 500');
  });
});

describe('incomplete multipart uploads of the job', () => {
  const CREATED = 1_700_000_000_000;
  const STOPPED = 1_700_036_000_000;
  const PREFIX = 'neuronx/calm3/abcd1234/';
  /** An upload under the prefix, initiated `offset` ms after the job was created. */
  const upload = (key: string, offset: number) => ({ Key: `${PREFIX}${key}`, UploadId: `id-${key}`, Initiated: new Date(CREATED + offset) });

  function aborted(): string[] {
    return s3Mock.commandCalls(AbortMultipartUploadCommand).map(c => `${c.args[0].input.Bucket}/${c.args[0].input.Key}#${c.args[0].input.UploadId}`);
  }

  test.each(['FAILED', 'SUCCEEDED'] as const)('a %s job\'s uploads left by killed attempts are aborted, other jobs\' are not; then the wait is signalled', async status => {
    s3Mock.on(HeadObjectCommand).resolves({});
    s3Mock.on(ListMultipartUploadsCommand, { Bucket: 'artifact-bucket', Prefix: PREFIX, KeyMarker: undefined, UploadIdMarker: undefined }).resolves({
      Uploads: [upload('checkpoint/model-00001.safetensors', 3_600_000), upload('older-deploy.neff', -60_000)],
      IsTruncated: true,
      NextKeyMarker: 'k',
      NextUploadIdMarker: 'u',
    });
    s3Mock.on(ListMultipartUploadsCommand, { Bucket: 'artifact-bucket', Prefix: PREFIX, KeyMarker: 'k', UploadIdMarker: 'u' }).resolves({
      Uploads: [upload('compiled/model.neff', 30_000_000), upload('after-the-job.neff', STOPPED - CREATED + 1)],
      IsTruncated: false,
    });

    await handler(event(job({ status, stoppedAt: STOPPED, statusReason: 'Host EC2 (instance i-1) terminated.' })));

    expect(aborted()).toEqual([
      `artifact-bucket/${PREFIX}checkpoint/model-00001.safetensors#id-checkpoint/model-00001.safetensors`,
      `artifact-bucket/${PREFIX}compiled/model.neff#id-compiled/model.neff`,
    ]);
    expect(onlySignal().Status).toBe(status === 'FAILED' ? 'FAILURE' : 'SUCCESS');
  });

  test('an upload completed since it was listed (NoSuchUpload) is skipped', async () => {
    s3Mock.on(ListMultipartUploadsCommand).resolves({ Uploads: [upload('a', 1), upload('b', 2)], IsTruncated: false });
    s3Mock.on(AbortMultipartUploadCommand, { UploadId: 'id-a' }).rejects(s3Error('NoSuchUpload', 404));
    s3Mock.on(AbortMultipartUploadCommand, { UploadId: 'id-b' }).resolves({});

    await handler(event(job({ status: 'FAILED', stoppedAt: STOPPED })));

    expect(aborted()).toHaveLength(2);
    expect(onlySignal().Status).toBe('FAILURE');
  });

  test('a clean-up that is refused (AccessDenied) does not hold back the signal', async () => {
    s3Mock.on(ListMultipartUploadsCommand).rejects(s3Error('AccessDenied', 403));

    await handler(event(job({ status: 'FAILED', stoppedAt: STOPPED, statusReason: 'x' })));

    expect(aborted()).toEqual([]);
    expect(onlySignal().Status).toBe('FAILURE');
    expect(console.log).toHaveBeenCalledWith(expect.stringContaining('could not abort incomplete multipart uploads'));
  });
});
