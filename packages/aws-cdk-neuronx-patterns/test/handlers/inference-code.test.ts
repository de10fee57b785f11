import { CopyObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { handler, InferenceCodeEvent } from '../../src/handlers/inference-code';
import { InferenceCodeProperties } from '../../src/private/handler-protocol';

const s3Mock = mockClient(S3Client);
const ORIGINAL_ENV = { ...process.env };

const RESPONSE_URL = 'https://cloudformation-custom-resource-response.s3.amazonaws.com/response?sig=1';
const DESTINATION_PREFIX = 'neuronx/calm3/abcd1234/code/';
const MARKER_KEY = 'neuronx/calm3/abcd1234/_COMPILED';

const PROPS: InferenceCodeProperties = {
  DestinationBucket: 'artifact-bucket',
  DestinationPrefix: DESTINATION_PREFIX,
  Files: [
    { SourceBucket: 'cdk-assets-111122223333-us-east-1', SourceKey: '0123abcd.py', Name: '0123456789abcdef/inference.py' },
    { SourceBucket: 'cdk-assets-111122223333-us-east-1', SourceKey: 'assets/contract file+v1.json', Name: '0123456789abcdef/contract.json' },
    { SourceBucket: 'cdk-assets-111122223333-us-east-1', SourceKey: '4567cdef.py', Name: 'neuronx_code_0123456789abcdef.py' },
  ],
  MarkerKey: MARKER_KEY,
  CompileWait: 'CompileWait0123abcd',
};

function event(overrides: Partial<InferenceCodeEvent> = {}): InferenceCodeEvent {
  return {
    RequestType: 'Create',
    ResponseURL: RESPONSE_URL,
    StackId: 'arn:aws:cloudformation:us-east-1:111122223333:stack/s/1',
    RequestId: 'request-1',
    LogicalResourceId: 'InferenceCode',
    ResourceType: 'Custom::NeuronxInferenceCode',
    ResourceProperties: { ...PROPS, ServiceToken: 'token' },
    ...overrides,
  };
}

let fetchMock: jest.SpiedFunction<typeof fetch>;

function cfnResponse(): Record<string, unknown> {
  expect(fetchMock).toHaveBeenCalledTimes(1);
  const [url, init] = fetchMock.mock.calls[0];
  expect(String(url)).toBe(RESPONSE_URL);
  expect(init?.method).toBe('PUT');
  return JSON.parse(String(init?.body));
}

beforeEach(() => {
  process.env = { ...ORIGINAL_ENV, AWS_REGION: 'us-east-1' };
  s3Mock.reset();
  // The model data is complete unless a test says otherwise.
  s3Mock.on(HeadObjectCommand).resolves({});
  jest.restoreAllMocks();
  fetchMock = jest.spyOn(global, 'fetch').mockImplementation(async () => new Response(null, { status: 200 }));
  jest.spyOn(console, 'error').mockImplementation(() => undefined);
});

afterAll(() => {
  process.env = ORIGINAL_ENV;
});

test.each(['Create', 'Update'] as const)('%s copies every file to its key under the destination prefix, in order (the entry after the folder it names)', async requestType => {
  s3Mock.on(CopyObjectCommand).resolves({});

  await handler(event({ RequestType: requestType, PhysicalResourceId: requestType === 'Update' ? 'old' : undefined }));

  expect(s3Mock.commandCalls(HeadObjectCommand).map(c => c.args[0].input)).toEqual([{ Bucket: 'artifact-bucket', Key: MARKER_KEY }]);
  expect(s3Mock.commandCalls(CopyObjectCommand).map(c => c.args[0].input)).toEqual([
    {
      Bucket: 'artifact-bucket',
      Key: 'neuronx/calm3/abcd1234/code/0123456789abcdef/inference.py',
      CopySource: 'cdk-assets-111122223333-us-east-1/0123abcd.py',
    },
    {
      Bucket: 'artifact-bucket',
      Key: 'neuronx/calm3/abcd1234/code/0123456789abcdef/contract.json',
      CopySource: 'cdk-assets-111122223333-us-east-1/assets%2Fcontract%20file%2Bv1.json',
    },
    {
      Bucket: 'artifact-bucket',
      Key: 'neuronx/calm3/abcd1234/code/neuronx_code_0123456789abcdef.py',
      CopySource: 'cdk-assets-111122223333-us-east-1/4567cdef.py',
    },
  ]);
  expect(cfnResponse()).toEqual({
    Status: 'SUCCESS',
    Reason: `3 code file(s) at s3://artifact-bucket/${DESTINATION_PREFIX}`,
    PhysicalResourceId: `s3://artifact-bucket/${DESTINATION_PREFIX}`,
    StackId: 'arn:aws:cloudformation:us-east-1:111122223333:stack/s/1',
    RequestId: 'request-1',
    LogicalResourceId: 'InferenceCode',
    Data: {},
  });
});

test('the continuous-batching objects are written with their text after the files, and a failed write answers FAILED', async () => {
  const objects = [
    { Key: 'neuronx/calm3/abcd1234/code/0123456789abcdef/model-config.yaml', Body: 'batchSize: 7\ncontinuousBatching: true\n' },
    { Key: 'neuronx/calm3/abcd1234/MAR-INF/MANIFEST.json', Body: '{"runtime": "python"}\n' },
  ];
  s3Mock.on(CopyObjectCommand).resolves({});
  s3Mock.on(PutObjectCommand).resolves({});
  await handler(event({ ResourceProperties: { ...PROPS, Objects: objects, ServiceToken: 'token' } }));
  expect(s3Mock.commandCalls(PutObjectCommand).map(c => c.args[0].input))
    .toEqual(objects.map(o => ({ Bucket: 'artifact-bucket', Key: o.Key, Body: o.Body })));
  expect(s3Mock.commandCalls(CopyObjectCommand)).toHaveLength(3);
  expect(cfnResponse()).toMatchObject({ Status: 'SUCCESS', Reason: `3 code file(s) at s3://artifact-bucket/${DESTINATION_PREFIX} and 2 configuration object(s)` });

  fetchMock.mockClear();
  s3Mock.on(PutObjectCommand).rejects(new S3ServiceException({
    name: 'AccessDenied', $fault: 'client', $metadata: { httpStatusCode: 403 }, message: 'Access Denied',
  }));
  await handler(event({ ResourceProperties: { ...PROPS, Objects: objects, ServiceToken: 'token' } }));
  expect(cfnResponse()).toMatchObject({ Status: 'FAILED', Reason: expect.stringContaining('Access Denied') });
});

test('Delete copies nothing (the code stays beside the model data) and answers SUCCESS', async () => {
  await handler(event({ RequestType: 'Delete', PhysicalResourceId: `s3://artifact-bucket/${DESTINATION_PREFIX}` }));

  expect(s3Mock.calls()).toHaveLength(0);
  expect(cfnResponse()).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: `s3://artifact-bucket/${DESTINATION_PREFIX}` });
});

test('a CopyObject error answers FAILED with its message and copies no further', async () => {
  s3Mock.on(CopyObjectCommand).rejects(new S3ServiceException({
    name: 'AccessDenied', $fault: 'client', $metadata: { httpStatusCode: 403 }, message: 'Access Denied',
  }));

  await handler(event());

  expect(s3Mock.commandCalls(CopyObjectCommand)).toHaveLength(1);
  expect(cfnResponse()).toMatchObject({
    Status: 'FAILED',
    Reason: `Placing the inference code at s3://artifact-bucket/${DESTINATION_PREFIX} failed: AccessDenied: Access Denied`,
  });
});

test('a throttled CopyObject is retried', async () => {
  jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask', 'setImmediate'] });
  try {
    s3Mock.on(CopyObjectCommand)
      .rejectsOnce(Object.assign(new Error('Please reduce your request rate.'), { name: 'SlowDown', $metadata: { httpStatusCode: 503 } }))
      .resolves({});

    const done = handler(event());
    await jest.runAllTimersAsync();
    await done;

    expect(s3Mock.commandCalls(CopyObjectCommand)).toHaveLength(4);
    expect(cfnResponse()).toMatchObject({ Status: 'SUCCESS' });
  } finally {
    jest.useRealTimers();
  }
});

test('a failing response PUT is thrown, not swallowed', async () => {
  s3Mock.on(CopyObjectCommand).resolves({});
  fetchMock.mockImplementation(async () => new Response(null, { status: 500 }));

  await expect(handler(event())).rejects.toThrow('PUT to the pre-signed URL failed: HTTP 500');
});

describe('the completion marker, checked after the compile\'s wait', () => {
  test.each(['Create', 'Update'] as const)(
    'a forged SUCCESS (the wait succeeded, no marker): %s fails naming the marker, and no code is placed', async requestType => {
      s3Mock.on(HeadObjectCommand).rejects(new S3ServiceException({ name: 'NotFound', $fault: 'client', $metadata: { httpStatusCode: 404 }, message: 'NotFound' }));

      await handler(event({ RequestType: requestType, PhysicalResourceId: requestType === 'Update' ? 'old' : undefined }));

      expect(s3Mock.commandCalls(CopyObjectCommand)).toHaveLength(0);
      const response = cfnResponse();
      expect(response.Status).toBe('FAILED');
      expect(response.Reason).toContain(`no completion marker at s3://artifact-bucket/${MARKER_KEY}`);
      expect(response.Reason).toContain('no model is made over them');
    });

  test('a marker that cannot be read (403) fails too, naming the marker: never taken as complete', async () => {
    s3Mock.on(HeadObjectCommand).rejects(new S3ServiceException({ name: 'Forbidden', $fault: 'client', $metadata: { httpStatusCode: 403 }, message: 'Forbidden' }));

    await handler(event());

    expect(s3Mock.commandCalls(CopyObjectCommand)).toHaveLength(0);
    expect(cfnResponse()).toMatchObject({
      Status: 'FAILED',
      Reason: expect.stringContaining(`completion marker s3://artifact-bucket/${MARKER_KEY} could not be read (Forbidden: Forbidden)`),
    });
  });

  test('model data from a bucket (no compile wait) is checked the same way', async () => {
    const { CompileWait: _, ...fromBucket } = PROPS;
    s3Mock.on(HeadObjectCommand).rejects(new S3ServiceException({ name: 'NotFound', $fault: 'client', $metadata: { httpStatusCode: 404 }, message: 'NotFound' }));

    await handler(event({ ResourceProperties: { ...fromBucket, ServiceToken: 'token' } }));

    expect(cfnResponse()).toMatchObject({ Status: 'FAILED', Reason: expect.stringContaining('no completion marker') });
  });
});
