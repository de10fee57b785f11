import { errorMessage, putJson } from './aws-calls';

/**
 * The CloudFormation custom resource protocol, in one place (as aws-cdk's custom-resource-handlers `makeHandler`):
 * a handler is its Create/Update/Delete logic, and `customResourceHandler` answers CloudFormation for it, SUCCESS
 * with what the logic returned or FAILED when it threw, so that no stack waits an hour for an answer.
 */

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

/** What a request that succeeded answers. */
export interface CustomResourceResult {
  /** The reason CloudFormation shows in the stack events. */
  readonly reason: string;
  /**
   * The resource's physical id after this request: a new one makes CloudFormation delete the old after an update.
   *
   * @default - the resource's physical id (`CustomResource.physicalResourceId`)
   */
  readonly physicalResourceId?: string;
  /**
   * Attributes for `Fn::GetAtt`.
   *
   * @default - none
   */
  readonly data?: Record<string, string>;
}

/** A custom resource's logic: what `customResourceHandler` needs to answer CloudFormation for it. */
export interface CustomResource<P> {
  /** The physical id the resource has unless a request returns another: the one a failed request answers with. */
  physicalResourceId(event: CustomResourceEvent<P>): string;
  /** Creates, updates or deletes the resource, whose physical id is `physicalId`; throws when the request fails. */
  onEvent(event: CustomResourceEvent<P>, physicalId: string): Promise<CustomResourceResult>;
  /** The reason of the FAILED answer when `onEvent` threw `error` (errorMessage names an error). */
  failureReason(event: CustomResourceEvent<P>, error: unknown): string;
}

/** The Lambda handler of `resource`: runs its logic and sends CloudFormation the one answer, SUCCESS or FAILED. */
export function customResourceHandler<P>(resource: CustomResource<P>): (event: CustomResourceEvent<P>) => Promise<void> {
  return async event => {
    let physicalId = resource.physicalResourceId(event);
    try {
      const result = await resource.onEvent(event, physicalId);
      physicalId = result.physicalResourceId ?? physicalId;
      await respond(event, 'SUCCESS', physicalId, result.reason, result.data);
    } catch (error) {
      console.error(JSON.stringify({
        message: 'custom resource request failed',
        resourceType: event.ResourceType,
        requestType: event.RequestType,
        logicalResourceId: event.LogicalResourceId,
        error: errorMessage(error),
      }));
      // A response that cannot be sent is thrown, not swallowed: the invocation fails visibly.
      await respond(event, 'FAILED', physicalId, resource.failureReason(event, error));
    }
  };
}

/** Sends the custom resource response. */
async function respond<P>(
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
