import { BatchClient, DescribeJobsCommand, JobStatus, SubmitJobCommand, TerminateJobCommand } from '@aws-sdk/client-batch';
import { CloudFormationClient, CloudFormationServiceException, DescribeStackResourceCommand } from '@aws-sdk/client-cloudformation';
import { HeadObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { CompileJobEvent, handler } from '../../src/handlers/compile-job';
import { CompileJobProperties } from '../../src/private/handler-protocol';

const batchMock = mockClient(BatchClient);
const cfnMock = mockClient(CloudFormationClient);
const s3Mock = mockClient(S3Client);
const ORIGINAL_ENV = { ...process.env };

const RESPONSE_URL = 'https://cloudformation-custom-resource-response.s3.amazonaws.com/response?sig=1';
const WAIT_HANDLE_URL = 'https://cloudformation-waitcondition.s3.amazonaws.com/handle?sig=2';
const WAIT_HANDLE_ID = 'CompileWaitHandle0123abcd';
const STACK_ID = 'arn:aws:cloudformation:us-east-1:111122223333:stack/s/1';
const PREFIX = 'neuronx/calm3/abcd1234/';
const NEW_PREFIX = 'neuronx/calm3/ef567890/';

const PROPS: CompileJobProperties = {
  JobQueueArn: 'arn:aws:batch:us-east-1:111122223333:job-queue/compile',
  JobDefinitionArn: 'arn:aws:batch:us-east-1:111122223333:job-definition/compile:3',
  JobName: 'neuronx-compile-abcd1234',
  JobTagValue: '0c4c8d97986cd57c',
  ArtifactBucket: 'artifact-bucket',
  ArtifactPrefix: PREFIX,
  MarkerKey: `${PREFIX}_COMPILED`,
  WaitHandleUrl: WAIT_HANDLE_URL,
  WaitHandleLogicalId: WAIT_HANDLE_ID,
};

/** The handle as DescribeStackResource returns it: its physical id is its URL. */
function handleResource(url: string, logicalId = WAIT_HANDLE_ID) {
  return {
    StackResourceDetail: {
      StackId: STACK_ID,
      LogicalResourceId: logicalId,
      PhysicalResourceId: url,
      ResourceType: 'AWS::CloudFormation::WaitConditionHandle',
      ResourceStatus: 'CREATE_COMPLETE',
      LastUpdatedTimestamp: new Date(0),
    },
  };
}

function event(overrides: Partial<CompileJobEvent> = {}): CompileJobEvent {
  return {
    RequestType: 'Create',
    ResponseURL: RESPONSE_URL,
    StackId: STACK_ID,
    RequestId: 'request-1',
    LogicalResourceId: 'CompileJob',
    ResourceType: 'Custom::NeuronxCompileJob',
    ResourceProperties: { ...PROPS, ServiceToken: 'arn:aws:lambda:us-east-1:111122223333:function:start' },
    ...overrides,
  };
}

function updateEvent(newPrefix: string, physicalId: string): CompileJobEvent {
  return event({
    RequestType: 'Update',
    PhysicalResourceId: physicalId,
    ResourceProperties: { ...PROPS, ArtifactPrefix: newPrefix, MarkerKey: `${newPrefix}_COMPILED`, ServiceToken: 'token' },
    OldResourceProperties: { ...PROPS, ServiceToken: 'token' },
  });
}

function s3Error(name: string, httpStatusCode: number): S3ServiceException {
  return new S3ServiceException({ name, $fault: 'client', $metadata: { httpStatusCode }, message: name });
}

function throttling(): Error {
  return Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
}

let fetchMock: jest.SpiedFunction<typeof fetch>;

/** Every PUT the handler made, in order, with its JSON body. */
function puts(): { url: string; method?: string; body: Record<string, unknown> }[] {
  return fetchMock.mock.calls.map(([url, init]) => ({ url: String(url), method: init?.method, body: JSON.parse(String(init?.body)) }));
}

/** The single response sent to CloudFormation. */
function cfnResponse(): Record<string, unknown> {
  const responses = puts().filter(p => p.url === RESPONSE_URL);
  expect(responses).toHaveLength(1);
  expect(responses[0].method).toBe('PUT');
  return responses[0].body;
}

function waitSignals(): Record<string, unknown>[] {
  return puts().filter(p => p.url === WAIT_HANDLE_URL).map(p => p.body);
}

beforeEach(() => {
  process.env = { ...ORIGINAL_ENV, AWS_REGION: 'us-east-1' };
  batchMock.reset();
  cfnMock.reset();
  s3Mock.reset();
  cfnMock.on(DescribeStackResourceCommand, { StackName: STACK_ID, LogicalResourceId: WAIT_HANDLE_ID }).resolves(handleResource(WAIT_HANDLE_URL));
  jest.restoreAllMocks();
  jest.useRealTimers();
  fetchMock = jest.spyOn(global, 'fetch').mockImplementation(async () => new Response(null, { status: 200 }));
  jest.spyOn(console, 'log').mockImplementation(() => undefined);
  jest.spyOn(console, 'error').mockImplementation(() => undefined);
});

afterAll(() => {
  process.env = ORIGINAL_ENV;
  jest.useRealTimers();
});

describe('Create', () => {
  test('a prefix that already holds the completion marker starts no job and signals the wait at once', async () => {
    s3Mock.on(HeadObjectCommand).resolves({ ContentLength: 0 });

    await handler(event());

    expect(s3Mock.commandCalls(HeadObjectCommand)[0].args[0].input).toEqual({ Bucket: 'artifact-bucket', Key: `${PREFIX}_COMPILED` });
    expect(batchMock.commandCalls(SubmitJobCommand)).toHaveLength(0);
    expect(waitSignals()).toEqual([{
      Status: 'SUCCESS',
      Reason: `Already compiled: s3://artifact-bucket/${PREFIX}`,
      UniqueId: 'compile',
      Data: '',
    }]);
    expect(cfnResponse()).toMatchObject({
      Status: 'SUCCESS',
      PhysicalResourceId: `already-compiled:${PREFIX}`,
      StackId: 'arn:aws:cloudformation:us-east-1:111122223333:stack/s/1',
      RequestId: 'request-1',
      LogicalResourceId: 'CompileJob',
    });
  });

  test('the wait is signalled before CloudFormation is answered', async () => {
    s3Mock.on(HeadObjectCommand).resolves({});

    await handler(event());

    expect(puts().map(p => p.url)).toEqual([WAIT_HANDLE_URL, RESPONSE_URL]);
  });

  test('a missing marker (404 NotFound) submits the job with the wait handle\'s logical id and this compile\'s tag, and answers with the job id', async () => {
    s3Mock.on(HeadObjectCommand).rejects(s3Error('NotFound', 404));
    batchMock.on(SubmitJobCommand).resolves({ jobId: 'job-123', jobName: PROPS.JobName, jobArn: 'arn:job-123' });

    await handler(event());

    const submits = batchMock.commandCalls(SubmitJobCommand);
    expect(submits).toHaveLength(1);
    expect(submits[0].args[0].input).toEqual({
      jobName: 'neuronx-compile-abcd1234',
      jobQueue: PROPS.JobQueueArn,
      jobDefinition: PROPS.JobDefinitionArn,
      // The handle's logical id, not its URL: anyone allowed batch:DescribeJobs reads a job's parameters.
      parameters: { neuronxWaitHandle: WAIT_HANDLE_ID },
      // The lifecycle function's role may terminate only jobs with this tag (aws:ResourceTag/neuronx-compile).
      tags: { 'neuronx-compile': '0c4c8d97986cd57c' },
    });
    expect(JSON.stringify(submits[0].args[0].input)).not.toContain(WAIT_HANDLE_URL);
    // Read from the stack as the job-state function will read it, before the job was submitted.
    expect(cfnMock.commandCalls(DescribeStackResourceCommand).map(c => c.args[0].input))
      .toEqual([{ StackName: STACK_ID, LogicalResourceId: WAIT_HANDLE_ID }]);
    expect(waitSignals()).toEqual([]);
    expect(cfnResponse()).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: 'job-123', Data: { JobId: 'job-123' } });
  });

  describe('a job whose end could not be signalled is never started', () => {
    beforeEach(() => {
      s3Mock.on(HeadObjectCommand).rejects(s3Error('NotFound', 404));
      batchMock.on(SubmitJobCommand).resolves({ jobId: 'job-123', jobName: PROPS.JobName, jobArn: 'arn' });
    });

    test('the handle cannot be read from the stack (access denied): no job, FAILED naming the handle', async () => {
      cfnMock.on(DescribeStackResourceCommand).rejects(new CloudFormationServiceException({
        name: 'AccessDenied', $fault: 'client', $metadata: { httpStatusCode: 403 }, message: 'not authorized to perform cloudformation:DescribeStackResource',
      }));

      await handler(event());

      expect(batchMock.commandCalls(SubmitJobCommand)).toHaveLength(0);
      expect(cfnResponse()).toMatchObject({
        Status: 'FAILED',
        Reason: expect.stringMatching(new RegExp(`^Create failed: Error: the wait handle ${WAIT_HANDLE_ID} could not be read from the stack.*AccessDenied`)),
      });
    });

    test('the stack reads another URL under the handle\'s logical id: no job, FAILED', async () => {
      cfnMock.on(DescribeStackResourceCommand).resolves(handleResource('https://cloudformation-waitcondition.s3.amazonaws.com/other?sig=9'));

      await handler(event());

      expect(batchMock.commandCalls(SubmitJobCommand)).toHaveLength(0);
      expect(cfnResponse()).toMatchObject({ Status: 'FAILED', Reason: expect.stringContaining('not the handle this resource was given') });
    });

    test('the logical id names no wait handle: no job, FAILED', async () => {
      cfnMock.on(DescribeStackResourceCommand).resolves({
        StackResourceDetail: { ...handleResource('job-1').StackResourceDetail, ResourceType: 'Custom::NeuronxCompileJob' },
      });

      await handler(event());

      expect(batchMock.commandCalls(SubmitJobCommand)).toHaveLength(0);
      expect(cfnResponse()).toMatchObject({ Status: 'FAILED', Reason: expect.stringContaining('is not a AWS::CloudFormation::WaitConditionHandle') });
    });

    test('no logical id given: no job, FAILED', async () => {
      await handler(event({ ResourceProperties: { ...PROPS, WaitHandleLogicalId: '', ServiceToken: 'token' } }));

      expect(batchMock.commandCalls(SubmitJobCommand)).toHaveLength(0);
      expect(cfnResponse()).toMatchObject({ Status: 'FAILED', Reason: expect.stringContaining('WaitHandleLogicalId is empty') });
    });
  });

  test('a 404 without the NotFound name still counts as absent', async () => {
    s3Mock.on(HeadObjectCommand).rejects(s3Error('UnknownError', 404));
    batchMock.on(SubmitJobCommand).resolves({ jobId: 'job-404', jobName: PROPS.JobName, jobArn: 'arn' });

    await handler(event());

    expect(batchMock.commandCalls(SubmitJobCommand)).toHaveLength(1);
    expect(cfnResponse()).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: 'job-404' });
  });

  test('a 403 on the marker is not taken as absent: no job, FAILED with the error', async () => {
    s3Mock.on(HeadObjectCommand).rejects(s3Error('Forbidden', 403));

    await handler(event());

    expect(batchMock.commandCalls(SubmitJobCommand)).toHaveLength(0);
    expect(waitSignals()).toEqual([]);
    const response = cfnResponse();
    expect(response.Status).toBe('FAILED');
    expect(response.Reason).toBe('Create failed: Forbidden: Forbidden');
    // Nothing was started, so the Delete that follows the rollback has nothing to stop.
    expect(response.PhysicalResourceId).toBe(`already-compiled:${PREFIX}`);
  });

  test('an empty JobTagValue submits no job (it could not be stopped on delete) and answers FAILED saying so', async () => {
    s3Mock.on(HeadObjectCommand).rejects(s3Error('NotFound', 404));

    await handler(event({ ResourceProperties: { ...PROPS, JobTagValue: '', ServiceToken: 'token' } }));

    expect(batchMock.commandCalls(SubmitJobCommand)).toHaveLength(0);
    expect(cfnResponse()).toMatchObject({
      Status: 'FAILED',
      Reason: expect.stringMatching(/^Create failed: Error: JobTagValue is empty: a job without the neuronx-compile tag could not be terminated on delete/),
    });
  });

  test('SubmitJob without a job id answers FAILED', async () => {
    s3Mock.on(HeadObjectCommand).rejects(s3Error('NotFound', 404));
    batchMock.on(SubmitJobCommand).resolves({});

    await handler(event());

    expect(cfnResponse()).toMatchObject({ Status: 'FAILED', Reason: 'Create failed: Error: SubmitJob returned no job id' });
  });

  test('an unexpected SubmitJob error answers FAILED with its message, without retrying', async () => {
    s3Mock.on(HeadObjectCommand).rejects(s3Error('NotFound', 404));
    batchMock.on(SubmitJobCommand).rejects(Object.assign(new Error('Job queue is DISABLED'), { name: 'ClientException' }));

    await handler(event());

    expect(batchMock.commandCalls(SubmitJobCommand)).toHaveLength(1);
    expect(cfnResponse()).toMatchObject({ Status: 'FAILED', Reason: 'Create failed: ClientException: Job queue is DISABLED' });
  });

  test('a failing signal to the wait handle answers FAILED', async () => {
    s3Mock.on(HeadObjectCommand).resolves({});
    fetchMock.mockImplementation(async url => new Response(null, { status: String(url) === WAIT_HANDLE_URL ? 403 : 200 }));

    await handler(event());

    expect(cfnResponse()).toMatchObject({
      Status: 'FAILED',
      Reason: 'Create failed: Error: PUT to the pre-signed URL failed: HTTP 403',
    });
  });
});

describe('throttling', () => {
  beforeEach(() => {
    // The retries back off with setTimeout: fake it, keep the microtask machinery real.
    jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask', 'setImmediate'] });
  });

  async function run(e: CompileJobEvent): Promise<void> {
    const done = handler(e);
    await jest.runAllTimersAsync();
    await done;
  }

  test('SubmitJob throttled twice, then accepted: the job is submitted and the answer is SUCCESS', async () => {
    s3Mock.on(HeadObjectCommand).rejects(s3Error('NotFound', 404));
    batchMock.on(SubmitJobCommand)
      .rejectsOnce(throttling())
      .rejectsOnce(Object.assign(new Error('Too Many Requests'), { $metadata: { httpStatusCode: 429 } }))
      .resolves({ jobId: 'job-after-retries', jobName: PROPS.JobName, jobArn: 'arn' });

    await run(event());

    expect(batchMock.commandCalls(SubmitJobCommand)).toHaveLength(3);
    expect(cfnResponse()).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: 'job-after-retries' });
  });

  test('SubmitJob always throttled: the answer is FAILED naming the error, after a bounded number of tries', async () => {
    s3Mock.on(HeadObjectCommand).rejects(s3Error('NotFound', 404));
    batchMock.on(SubmitJobCommand).rejects(throttling());

    await run(event());

    const tries = batchMock.commandCalls(SubmitJobCommand).length;
    expect(tries).toBeGreaterThan(1);
    expect(tries).toBeLessThanOrEqual(10);
    expect(cfnResponse()).toMatchObject({ Status: 'FAILED', Reason: 'Create failed: ThrottlingException: Rate exceeded' });
  });

  test('a throttled HeadObject is retried, not taken as absent', async () => {
    s3Mock.on(HeadObjectCommand).rejectsOnce(s3Error('SlowDown', 503)).resolves({});

    await run(event());

    expect(s3Mock.commandCalls(HeadObjectCommand)).toHaveLength(2);
    expect(batchMock.commandCalls(SubmitJobCommand)).toHaveLength(0);
    expect(cfnResponse()).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: `already-compiled:${PREFIX}` });
  });

  test('TerminateJob throttled once is retried on Delete', async () => {
    batchMock.on(DescribeJobsCommand).resolves({ jobs: [{ jobId: 'job-1', jobName: 'n', jobQueue: 'q', jobDefinition: 'd', status: 'RUNNING', startedAt: 1 }] });
    batchMock.on(TerminateJobCommand).rejectsOnce(throttling()).resolves({});

    await run(event({ RequestType: 'Delete', PhysicalResourceId: 'job-1' }));

    expect(batchMock.commandCalls(TerminateJobCommand)).toHaveLength(2);
    expect(cfnResponse()).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: 'job-1' });
  });
});

describe('Delete', () => {
  test.each(['SUBMITTED', 'PENDING', 'RUNNABLE', 'STARTING', 'RUNNING'] as JobStatus[])(
    'a job that is %s is terminated', async status => {
      batchMock.on(DescribeJobsCommand).resolves({ jobs: [{ jobId: 'job-1', jobName: 'n', jobQueue: 'q', jobDefinition: 'd', status, startedAt: 1 }] });
      batchMock.on(TerminateJobCommand).resolves({});

      await handler(event({ RequestType: 'Delete', PhysicalResourceId: 'job-1' }));

      expect(batchMock.commandCalls(DescribeJobsCommand)[0].args[0].input).toEqual({ jobs: ['job-1'] });
      const terminates = batchMock.commandCalls(TerminateJobCommand);
      expect(terminates).toHaveLength(1);
      expect(terminates[0].args[0].input.jobId).toBe('job-1');
      expect(terminates[0].args[0].input.reason).toMatch(/CloudFormation/);
      expect(cfnResponse()).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: 'job-1' });
    });

  test.each(['SUCCEEDED', 'FAILED'] as JobStatus[])('a job that has %s is left alone', async status => {
    batchMock.on(DescribeJobsCommand).resolves({ jobs: [{ jobId: 'job-1', jobName: 'n', jobQueue: 'q', jobDefinition: 'd', status, startedAt: 1 }] });

    await handler(event({ RequestType: 'Delete', PhysicalResourceId: 'job-1' }));

    expect(batchMock.commandCalls(TerminateJobCommand)).toHaveLength(0);
    expect(cfnResponse()).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: 'job-1' });
  });

  test('a job Batch no longer knows is left alone', async () => {
    batchMock.on(DescribeJobsCommand).resolves({ jobs: [] });

    await handler(event({ RequestType: 'Delete', PhysicalResourceId: 'job-gone' }));

    expect(batchMock.commandCalls(TerminateJobCommand)).toHaveLength(0);
    expect(cfnResponse()).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: 'job-gone' });
  });

  test('an already-compiled resource calls Batch not at all', async () => {
    await handler(event({ RequestType: 'Delete', PhysicalResourceId: `already-compiled:${PREFIX}` }));

    expect(batchMock.calls()).toHaveLength(0);
    expect(s3Mock.calls()).toHaveLength(0);
    expect(waitSignals()).toEqual([]);
    expect(cfnResponse()).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: `already-compiled:${PREFIX}` });
  });

  test('a DescribeJobs error answers FAILED with the message', async () => {
    batchMock.on(DescribeJobsCommand).rejects(Object.assign(new Error('not authorized'), { name: 'AccessDeniedException' }));

    await handler(event({ RequestType: 'Delete', PhysicalResourceId: 'job-1' }));

    expect(cfnResponse()).toMatchObject({ Status: 'FAILED', PhysicalResourceId: 'job-1', Reason: 'Delete failed: AccessDeniedException: not authorized' });
  });
});

describe('Update', () => {
  test('a new artifact prefix submits a new job and answers with its id (CloudFormation then deletes the old one)', async () => {
    s3Mock.on(HeadObjectCommand).rejects(s3Error('NotFound', 404));
    batchMock.on(SubmitJobCommand).resolves({ jobId: 'job-new', jobName: PROPS.JobName, jobArn: 'arn' });

    await handler(updateEvent(NEW_PREFIX, 'job-old'));

    expect(s3Mock.commandCalls(HeadObjectCommand)[0].args[0].input).toEqual({ Bucket: 'artifact-bucket', Key: `${NEW_PREFIX}_COMPILED` });
    expect(batchMock.commandCalls(SubmitJobCommand)).toHaveLength(1);
    expect(batchMock.commandCalls(TerminateJobCommand)).toHaveLength(0);
    expect(cfnResponse()).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: 'job-new' });
  });

  test('a new prefix that is already compiled answers with a new already-compiled id', async () => {
    s3Mock.on(HeadObjectCommand).resolves({});

    await handler(updateEvent(NEW_PREFIX, 'job-old'));

    expect(batchMock.commandCalls(SubmitJobCommand)).toHaveLength(0);
    expect(waitSignals()).toMatchObject([{ Status: 'SUCCESS' }]);
    expect(cfnResponse()).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: `already-compiled:${NEW_PREFIX}` });
  });

  // A new wait timeout (or anything else that gives a new WaitCondition) on the same prefix: the new handle must be
  // signalled, or the deploy waits out the new WaitCondition's whole timeout and fails.
  const NEW_WAIT_HANDLE_URL = 'https://cloudformation-waitcondition.s3.amazonaws.com/handle?sig=new';
  const NEW_WAIT_HANDLE_ID = 'CompileWaitHandle4567ef01';
  function newHandleEvent(physicalId: string): CompileJobEvent {
    cfnMock.on(DescribeStackResourceCommand, { LogicalResourceId: NEW_WAIT_HANDLE_ID })
      .resolves(handleResource(NEW_WAIT_HANDLE_URL, NEW_WAIT_HANDLE_ID));
    return event({
      RequestType: 'Update',
      PhysicalResourceId: physicalId,
      ResourceProperties: { ...PROPS, WaitHandleUrl: NEW_WAIT_HANDLE_URL, WaitHandleLogicalId: NEW_WAIT_HANDLE_ID, ServiceToken: 'token' },
      OldResourceProperties: { ...PROPS, ServiceToken: 'token' },
    });
  }

  test('the same prefix with a new wait handle, already compiled: signals the new handle, not the old one', async () => {
    s3Mock.on(HeadObjectCommand).resolves({});

    await handler(newHandleEvent('job-old'));

    const signalled = puts().filter(p => p.url !== RESPONSE_URL);
    expect(signalled.map(p => p.url)).toEqual([NEW_WAIT_HANDLE_URL]);
    expect(signalled[0].body).toMatchObject({ Status: 'SUCCESS' });
    expect(batchMock.commandCalls(SubmitJobCommand)).toHaveLength(0);
    expect(cfnResponse()).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: `already-compiled:${PREFIX}` });
  });

  test('the same prefix with a new wait handle, artifacts gone: a new job that signals the new handle', async () => {
    s3Mock.on(HeadObjectCommand).rejects(s3Error('NotFound', 404));
    batchMock.on(SubmitJobCommand).resolves({ jobId: 'job-new', jobName: PROPS.JobName, jobArn: 'arn' });

    await handler(newHandleEvent('job-old'));

    const submitted = batchMock.commandCalls(SubmitJobCommand)[0].args[0].input;
    expect(submitted.parameters).toEqual({ neuronxWaitHandle: NEW_WAIT_HANDLE_ID });
    expect(submitted.containerOverrides).toBeUndefined();
    expect(cfnResponse()).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: 'job-new' });
  });

  test('a new bucket with the same prefix is a new compile', async () => {
    s3Mock.on(HeadObjectCommand).rejects(s3Error('NotFound', 404));
    batchMock.on(SubmitJobCommand).resolves({ jobId: 'job-new', jobName: PROPS.JobName, jobArn: 'arn' });

    await handler(event({
      RequestType: 'Update',
      PhysicalResourceId: 'job-old',
      ResourceProperties: { ...PROPS, ArtifactBucket: 'other-bucket', ServiceToken: 'token' },
      OldResourceProperties: { ...PROPS, ServiceToken: 'token' },
    }));

    expect(s3Mock.commandCalls(HeadObjectCommand)[0].args[0].input).toEqual({ Bucket: 'other-bucket', Key: PROPS.MarkerKey });
    expect(cfnResponse()).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: 'job-new' });
  });

  test('the same prefix submits nothing and keeps the physical id', async () => {
    await handler(updateEvent(PREFIX, 'job-old'));

    expect(batchMock.calls()).toHaveLength(0);
    expect(s3Mock.calls()).toHaveLength(0);
    expect(waitSignals()).toEqual([]);
    expect(cfnResponse()).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: 'job-old' });
  });

  test('a failed update keeps the old physical id, so CloudFormation does not delete the old job', async () => {
    s3Mock.on(HeadObjectCommand).rejects(s3Error('NotFound', 404));
    batchMock.on(SubmitJobCommand).rejects(Object.assign(new Error('bad definition'), { name: 'ClientException' }));

    await handler(updateEvent(NEW_PREFIX, 'job-old'));

    expect(cfnResponse()).toMatchObject({ Status: 'FAILED', PhysicalResourceId: 'job-old', Reason: 'Update failed: ClientException: bad definition' });
  });
});
