import { handler as compileJob } from '../../src/handlers/compile-job';
import { handler as compileJobState } from '../../src/handlers/compile-job-state';
import { handler } from '../../src/handlers/compile-lifecycle';
import { handler as inferenceCode } from '../../src/handlers/inference-code';

jest.mock('../../src/handlers/compile-job', () => ({ handler: jest.fn(async () => undefined) }));
jest.mock('../../src/handlers/compile-job-state', () => ({ handler: jest.fn(async () => undefined) }));
jest.mock('../../src/handlers/inference-code', () => ({ handler: jest.fn(async () => undefined) }));

const RESPONSE_URL = 'https://cloudformation-custom-resource-response.s3.amazonaws.com/response?sig=1';

function request(resourceType: string, requestType: 'Create' | 'Update' | 'Delete' = 'Create') {
  return {
    RequestType: requestType,
    ResponseURL: RESPONSE_URL,
    StackId: 'arn:aws:cloudformation:us-east-1:111122223333:stack/s/1',
    RequestId: 'r-1',
    LogicalResourceId: 'Resource',
    ResourceType: resourceType,
    ResourceProperties: { ServiceToken: 'arn:aws:lambda:us-east-1:111122223333:function:f' },
  };
}
const JOB_ENDED = { 'detail-type': 'Batch Job State Change', 'detail': { jobId: 'job-1', status: 'FAILED' } };

const fetchMock = jest.fn(async (_url: string, _init: { body: string }) => ({ ok: true, status: 200 }));
beforeEach(() => {
  jest.clearAllMocks();
  global.fetch = fetchMock as unknown as typeof fetch;
  // The refusal of an unknown type is logged as a failed request.
  jest.spyOn(console, 'error').mockImplementation(() => undefined);
});

function handlersCalled() {
  return {
    compileJob: (compileJob as jest.Mock).mock.calls.length,
    compileJobState: (compileJobState as jest.Mock).mock.calls.length,
    inferenceCode: (inferenceCode as jest.Mock).mock.calls.length,
  };
}

test('a Custom::NeuronxCompileJob request goes to the job starter and stopper only', async () => {
  const event = request('Custom::NeuronxCompileJob');
  await handler(event as never);
  expect(compileJob).toHaveBeenCalledWith(event);
  expect(handlersCalled()).toEqual({ compileJob: 1, compileJobState: 0, inferenceCode: 0 });
});

test('a Custom::NeuronxInferenceCode request goes to the code placer only', async () => {
  const event = request('Custom::NeuronxInferenceCode', 'Update');
  await handler(event as never);
  expect(inferenceCode).toHaveBeenCalledWith(event);
  expect(handlersCalled()).toEqual({ compileJob: 0, compileJobState: 0, inferenceCode: 1 });
});

test('a Batch job state change goes to the signaller only', async () => {
  await handler(JOB_ENDED as never);
  expect(compileJobState).toHaveBeenCalledWith(JOB_ENDED);
  expect(handlersCalled()).toEqual({ compileJob: 0, compileJobState: 1, inferenceCode: 0 });
});

test('a custom resource of another type is answered FAILED at once, naming the types served', async () => {
  await handler(request('Custom::Other') as never);
  expect(handlersCalled()).toEqual({ compileJob: 0, compileJobState: 0, inferenceCode: 0 });
  expect(fetchMock).toHaveBeenCalledTimes(1);
  const [url, init] = fetchMock.mock.calls[0];
  expect(url).toBe(RESPONSE_URL);
  const body = JSON.parse(init.body);
  expect(body.Status).toBe('FAILED');
  expect(body.Reason).toMatch(/Custom::Other is not served by this function, which serves Custom::NeuronxCompileJob and Custom::NeuronxInferenceCode/);
});

test('deleting a custom resource of another type succeeds, so that a rollback is not blocked', async () => {
  await handler(request('Custom::Other', 'Delete') as never);
  expect(JSON.parse(fetchMock.mock.calls[0][1].body).Status).toBe('SUCCESS');
});

test('anything else is refused with an error, and no handler runs', async () => {
  await expect(handler({ 'detail-type': 'Scheduled Event', 'detail': {} } as never)).rejects.toThrow(/Not a custom resource request or a Batch job state change/);
  expect(handlersCalled()).toEqual({ compileJob: 0, compileJobState: 0, inferenceCode: 0 });
  expect(fetchMock).not.toHaveBeenCalled();
});
