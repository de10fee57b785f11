/**
 * Small helpers for the Lambda handlers: retrying throttled AWS calls and PUTting to pre-signed S3 URLs
 * (CloudFormation custom resource responses and WaitCondition signals).
 */

const THROTTLING = /throttl|toomanyrequests|requestlimitexceeded|slowdown/i;
const MAX_ATTEMPTS = 6;
const BASE_DELAY_MS = 200;

export function isThrottling(error: unknown): boolean {
  const e = error as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
  return THROTTLING.test(e?.name ?? '') || THROTTLING.test(e?.Code ?? '') || e?.$metadata?.httpStatusCode === 429;
}

/** Runs `call`, retrying throttling errors with exponential backoff and jitter; other errors are thrown at once. */
export async function withThrottlingRetries<T>(call: () => Promise<T>, sleep = defaultSleep): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (!isThrottling(error) || attempt >= MAX_ATTEMPTS) throw error;
      await sleep(BASE_DELAY_MS * 2 ** (attempt - 1) * (0.5 + Math.random()));
    }
  }
}

function defaultSleep(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms));
}

/** PUTs a JSON body to a pre-signed S3 URL, as CloudFormation expects (no content type). */
export async function putJson(url: string, body: unknown): Promise<void> {
  const text = JSON.stringify(body);
  const response = await fetch(url, {
    method: 'PUT',
    body: text,
    headers: { 'content-type': '', 'content-length': String(Buffer.byteLength(text)) },
  });
  if (!response.ok) {
    throw new Error(`PUT to the pre-signed URL failed: HTTP ${response.status}`);
  }
}

/** A WaitCondition signal (AWS::CloudFormation::WaitConditionHandle). */
export interface WaitSignal {
  readonly Status: 'SUCCESS' | 'FAILURE';
  readonly Reason: string;
  readonly UniqueId: string;
  readonly Data: string;
}

// CloudFormation shows the reason in stack events; keep it readable there.
const MAX_REASON_LENGTH = 4000;

export function signal(url: string, status: WaitSignal['Status'], uniqueId: string, reason: string, data = ''): Promise<void> {
  return putJson(url, { Status: status, Reason: reason.slice(0, MAX_REASON_LENGTH), UniqueId: uniqueId, Data: data });
}

/** The parts of a CloudFormation custom resource event the handlers use. */
export interface CustomResourceEvent<P> {
  readonly RequestType: 'Create' | 'Update' | 'Delete';
  readonly ResponseURL: string;
  readonly StackId: string;
  readonly RequestId: string;
  readonly LogicalResourceId: string;
  readonly ResourceType: string;
  readonly PhysicalResourceId?: string;
  readonly ResourceProperties: P & { ServiceToken: string };
  readonly OldResourceProperties?: P & { ServiceToken: string };
}

/** Sends the custom resource response; a handler that throws still answers FAILED, so no stack waits an hour. */
export async function respond<P>(
  event: CustomResourceEvent<P>,
  status: 'SUCCESS' | 'FAILED',
  physicalResourceId: string,
  reason: string,
  data: Record<string, string> = {},
): Promise<void> {
  const response = {
    Status: status,
    Reason: '',
    PhysicalResourceId: physicalResourceId,
    StackId: event.StackId,
    RequestId: event.RequestId,
    LogicalResourceId: event.LogicalResourceId,
    Data: data,
  };
  // CloudFormation rejects a response body over 4096 bytes ("Response object is too long") and the reason is lost.
  response.Reason = truncateJsonString(reason, MAX_RESPONSE_BYTES - Buffer.byteLength(JSON.stringify(response)));
  await putJson(event.ResponseURL, response);
}

// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html
const MAX_RESPONSE_BYTES = 4096;

/** The longest prefix of `text` whose JSON string encoding (without quotes) takes at most `maxBytes` bytes. */
function truncateJsonString(text: string, maxBytes: number): string {
  let end = Math.min(text.length, Math.max(0, maxBytes));
  while (end > 0 && Buffer.byteLength(JSON.stringify(text.slice(0, end))) - 2 > maxBytes) end--;
  return text.slice(0, end);
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
