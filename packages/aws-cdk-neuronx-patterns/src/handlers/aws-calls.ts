/**
 * Small helpers for the Lambda handlers: retrying throttled AWS calls, PUTting to pre-signed S3 URLs (the
 * WaitCondition signals here, the custom resource responses in custom-resource.ts) and naming an error.
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

export function errorMessage(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
