import { CustomResource, CustomResourceEvent, customResourceHandler } from '../../src/handlers/custom-resource';

const RESPONSE_URL = 'https://cloudformation-custom-resource-response.s3.amazonaws.com/response?sig=1';

interface Props { readonly Name: string }

function event(overrides: Partial<CustomResourceEvent<Props>> = {}): CustomResourceEvent<Props> {
  return {
    RequestType: 'Create',
    ResponseURL: RESPONSE_URL,
    StackId: 'stack',
    RequestId: 'request',
    LogicalResourceId: 'Resource',
    ResourceType: 'Custom::Thing',
    ResourceProperties: { Name: 'thing', ServiceToken: 'token' },
    ...overrides,
  };
}

/** A resource whose physical id is `id:<Name>`, whose failures say `<RequestType> broke: <message>`. */
function resource(onEvent: CustomResource<Props>['onEvent']): CustomResource<Props> {
  return {
    physicalResourceId: e => e.PhysicalResourceId ?? `id:${e.ResourceProperties.Name}`,
    onEvent,
    failureReason: (e, error) => `${e.RequestType} broke: ${(error as Error).message}`,
  };
}

let fetchMock: jest.SpiedFunction<typeof fetch>;
let consoleError: jest.SpiedFunction<typeof console.error>;

beforeEach(() => {
  jest.restoreAllMocks();
  fetchMock = jest.spyOn(global, 'fetch').mockImplementation(async () => new Response(null, { status: 200 }));
  consoleError = jest.spyOn(console, 'error').mockImplementation(() => undefined);
});

/** The bodies PUT to the response URL, in order. */
function responses(): Record<string, unknown>[] {
  return fetchMock.mock.calls.map(([url, init]) => {
    expect(String(url)).toBe(RESPONSE_URL);
    expect(init?.method).toBe('PUT');
    return JSON.parse(String(init?.body));
  });
}

describe('a request whose logic returns', () => {
  test('is answered SUCCESS once, with its reason and data and the event\'s ids', async () => {
    await customResourceHandler(resource(async () => ({ reason: 'made', data: { Arn: 'arn:thing' } })))(event());

    expect(responses()).toEqual([{
      Status: 'SUCCESS',
      Reason: 'made',
      PhysicalResourceId: 'id:thing',
      StackId: 'stack',
      RequestId: 'request',
      LogicalResourceId: 'Resource',
      Data: { Arn: 'arn:thing' },
    }]);
    expect(consoleError).not.toHaveBeenCalled();
  });

  test('keeps the resource\'s physical id, which the logic is given, and answers no data unless it returns some', async () => {
    const onEvent = jest.fn(async () => ({ reason: 'updated' }));

    await customResourceHandler(resource(onEvent))(event({ RequestType: 'Update', PhysicalResourceId: 'id:old' }));

    expect(onEvent).toHaveBeenCalledWith(expect.objectContaining({ RequestType: 'Update' }), 'id:old');
    expect(responses()).toMatchObject([{ Status: 'SUCCESS', PhysicalResourceId: 'id:old', Data: {} }]);
  });

  test('answers the physical id it returns instead (a replacement)', async () => {
    await customResourceHandler(resource(async () => ({ reason: 'replaced', physicalResourceId: 'id:new' })))(
      event({ RequestType: 'Update', PhysicalResourceId: 'id:old' }));

    expect(responses()).toMatchObject([{ Status: 'SUCCESS', PhysicalResourceId: 'id:new' }]);
  });

  test('a reason too long for CloudFormation is cut so that the answer fits', async () => {
    await customResourceHandler(resource(async () => ({ reason: 'y'.repeat(20_000) })))(event());

    const [body] = responses();
    expect(body.Status).toBe('SUCCESS');
    expect(body.Reason).toBe('y'.repeat((body.Reason as string).length));
    expect(Buffer.byteLength(JSON.stringify(body))).toBeLessThanOrEqual(4096);
  });
});

describe('a request whose logic throws', () => {
  test('is answered FAILED once, with the resource\'s failure reason and physical id, and logged', async () => {
    await customResourceHandler(resource(async () => { throw new Error('no capacity'); }))(event());

    expect(responses()).toEqual([{
      Status: 'FAILED',
      Reason: 'Create broke: no capacity',
      PhysicalResourceId: 'id:thing',
      StackId: 'stack',
      RequestId: 'request',
      LogicalResourceId: 'Resource',
      Data: {},
    }]);
    expect(JSON.parse(String(consoleError.mock.calls[0][0]))).toEqual({
      message: 'custom resource request failed',
      resourceType: 'Custom::Thing',
      requestType: 'Create',
      logicalResourceId: 'Resource',
      error: 'Error: no capacity',
    });
  });

  test('keeps the physical id CloudFormation knows (a failed update does not replace the resource)', async () => {
    await customResourceHandler(resource(async () => { throw new Error('bad'); }))(
      event({ RequestType: 'Update', PhysicalResourceId: 'id:old', ResourceProperties: { Name: 'other', ServiceToken: 'token' } }));

    expect(responses()).toMatchObject([{ Status: 'FAILED', PhysicalResourceId: 'id:old', Reason: 'Update broke: bad' }]);
  });

  test.each([
    ['ASCII', 'y'],
    ['multi-byte', '\u30b3\u30f3\u30d1\u30a4\u30eb'],
    ['JSON-escaped', '"\n\\'],
  ])('a very long %s reason is cut so the whole body fits CloudFormation\'s 4096 bytes', async (_, unit) => {
    const message = unit.repeat(20_000);
    const longEvent = event({
      StackId: 'arn:aws:cloudformation:us-east-1:111122223333:stack/a-stack-with-a-rather-long-name/0123abcd-4567-89ef-0123-456789abcdef',
      RequestId: '0123abcd-4567-89ef-0123-456789abcdef',
      LogicalResourceId: 'NeuronxCompileCompileJob0123ABCD',
      PhysicalResourceId: 'job-0123abcd-4567-89ef-0123-456789abcdef',
    });

    await customResourceHandler(resource(async () => { throw new Error(message); }))(longEvent);

    const text = String(fetchMock.mock.calls[0][1]?.body);
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(4096);
    const body = JSON.parse(text);
    expect(`Create broke: ${message}`.startsWith(body.Reason)).toBe(true);
    expect(Buffer.byteLength(text)).toBeGreaterThan(4096 - 16);
    expect(body).toMatchObject({ Status: 'FAILED', PhysicalResourceId: 'job-0123abcd-4567-89ef-0123-456789abcdef' });
  });
});

describe('an answer that cannot be sent', () => {
  test('a SUCCESS that is refused is followed by a FAILED naming why, with the physical id the logic returned', async () => {
    fetchMock.mockImplementationOnce(async () => new Response(null, { status: 403 }));

    await customResourceHandler(resource(async () => ({ reason: 'made', physicalResourceId: 'id:new' })))(event());

    expect(responses()).toMatchObject([
      { Status: 'SUCCESS', PhysicalResourceId: 'id:new' },
      { Status: 'FAILED', PhysicalResourceId: 'id:new', Reason: 'Create broke: PUT to the pre-signed URL failed: HTTP 403' },
    ]);
  });

  test('is thrown when the FAILED answer cannot be sent either: the invocation fails, nothing is swallowed', async () => {
    fetchMock.mockImplementation(async () => new Response(null, { status: 500 }));

    await expect(customResourceHandler(resource(async () => ({ reason: 'made' })))(event()))
      .rejects.toThrow('PUT to the pre-signed URL failed: HTTP 500');
    expect(responses().map(r => r.Status)).toEqual(['SUCCESS', 'FAILED']);
  });
});
