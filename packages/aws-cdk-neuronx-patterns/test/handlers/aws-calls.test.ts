import { errorMessage, isThrottling, putJson, signal, withThrottlingRetries } from '../../src/handlers/aws-calls';

const URL = 'https://bucket.s3.amazonaws.com/key?X-Amz-Signature=abc';

let fetchMock: jest.SpiedFunction<typeof fetch>;

beforeEach(() => {
  jest.restoreAllMocks();
  fetchMock = jest.spyOn(global, 'fetch').mockImplementation(async () => new Response(null, { status: 200 }));
});

function sentBody(call = 0): Record<string, unknown> {
  return JSON.parse(String(fetchMock.mock.calls[call][1]?.body));
}

describe('isThrottling', () => {
  test.each([
    ['ThrottlingException by name', { name: 'ThrottlingException' }],
    ['Throttling by name', { name: 'Throttling' }],
    ['TooManyRequestsException by name', { name: 'TooManyRequestsException' }],
    ['RequestLimitExceeded by name', { name: 'RequestLimitExceeded' }],
    ['S3 SlowDown by name', { name: 'SlowDown' }],
    ['a throttling Code', { name: 'Error', Code: 'Throttling' }],
    ['HTTP 429', { name: 'Error', $metadata: { httpStatusCode: 429 } }],
  ])('%s is throttling', (_, error) => {
    expect(isThrottling(error)).toBe(true);
  });

  test.each([
    ['a client error', { name: 'ClientException', $metadata: { httpStatusCode: 400 } }],
    ['access denied', { name: 'AccessDeniedException', $metadata: { httpStatusCode: 403 } }],
    ['not found', { name: 'NotFound', $metadata: { httpStatusCode: 404 } }],
    ['a server error', { name: 'InternalServerError', $metadata: { httpStatusCode: 500 } }],
    ['a plain Error', new Error('boom')],
    ['undefined', undefined],
    ['null', null],
    ['a string', 'ThrottlingException'],
  ])('%s is not throttling', (_, error) => {
    expect(isThrottling(error)).toBe(false);
  });
});

describe('withThrottlingRetries', () => {
  const throttled = () => Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });

  test('retries throttling with growing delays, then returns the result', async () => {
    const sleep = jest.fn(async (_ms: number) => undefined);
    const call = jest.fn<Promise<string>, []>()
      .mockRejectedValueOnce(throttled())
      .mockRejectedValueOnce(throttled())
      .mockResolvedValueOnce('done');

    await expect(withThrottlingRetries(call, sleep)).resolves.toBe('done');

    expect(call).toHaveBeenCalledTimes(3);
    expect(sleep).toHaveBeenCalledTimes(2);
    const [first, second] = sleep.mock.calls.map(([ms]) => ms);
    // 200 ms then 400 ms, each with jitter in [0.5, 1.5).
    expect(first).toBeGreaterThanOrEqual(100);
    expect(first).toBeLessThan(300);
    expect(second).toBeGreaterThanOrEqual(200);
    expect(second).toBeLessThan(600);
  });

  test('gives up after a bounded number of attempts and throws the throttling error', async () => {
    const sleep = jest.fn(async (_ms: number) => undefined);
    const call = jest.fn<Promise<string>, []>().mockRejectedValue(throttled());

    await expect(withThrottlingRetries(call, sleep)).rejects.toThrow('Rate exceeded');

    expect(call).toHaveBeenCalledTimes(6);
    expect(sleep).toHaveBeenCalledTimes(5);
  });

  test('throws any other error at once', async () => {
    const sleep = jest.fn(async (_ms: number) => undefined);
    const call = jest.fn<Promise<string>, []>().mockRejectedValue(Object.assign(new Error('nope'), { name: 'AccessDeniedException' }));

    await expect(withThrottlingRetries(call, sleep)).rejects.toThrow('nope');

    expect(call).toHaveBeenCalledTimes(1);
    expect(sleep).not.toHaveBeenCalled();
  });
});

describe('putJson', () => {
  test('PUTs the JSON with an empty content type and its byte length', async () => {
    await putJson(URL, { Reason: 'caf\u00e9' });

    expect(fetchMock).toHaveBeenCalledTimes(1);
    const [url, init] = fetchMock.mock.calls[0];
    expect(url).toBe(URL);
    expect(init?.method).toBe('PUT');
    expect(init?.body).toBe('{"Reason":"caf\u00e9"}');
    const headers = init?.headers as Record<string, string>;
    expect(headers['content-type']).toBe('');
    expect(headers['content-length']).toBe(String(Buffer.byteLength('{"Reason":"caf\u00e9"}')));
    expect(headers['content-length']).toBe('18');
  });

  test.each([403, 404, 500])('throws on HTTP %d', async status => {
    fetchMock.mockImplementation(async () => new Response('<Error/>', { status }));

    await expect(putJson(URL, {})).rejects.toThrow(`PUT to the pre-signed URL failed: HTTP ${status}`);
  });

  test('a network error propagates', async () => {
    fetchMock.mockRejectedValue(new TypeError('fetch failed'));

    await expect(putJson(URL, {})).rejects.toThrow('fetch failed');
  });
});

describe('signal', () => {
  test('sends a WaitCondition signal', async () => {
    await signal(URL, 'FAILURE', 'job-1', 'it broke', 'data');

    expect(sentBody()).toEqual({ Status: 'FAILURE', Reason: 'it broke', UniqueId: 'job-1', Data: 'data' });
  });

  test('truncates a very long reason', async () => {
    await signal(URL, 'FAILURE', 'job-1', 'x'.repeat(100_000));

    const reason = sentBody().Reason as string;
    expect(reason.length).toBeLessThanOrEqual(4000);
    expect(reason.length).toBeGreaterThan(1000);
    expect(reason).toBe('x'.repeat(reason.length));
  });
});

test('errorMessage names the error', () => {
  expect(errorMessage(Object.assign(new Error('denied'), { name: 'AccessDenied' }))).toBe('AccessDenied: denied');
  expect(errorMessage('plain')).toBe('plain');
});
