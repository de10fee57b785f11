// Only in the Lambda handlers' bundle, where the runtime provides the SDK (esbuild externals: @aws-sdk/*).
import { CloudFormationClient, DescribeStackResourceCommand } from '@aws-sdk/client-cloudformation';
import { withThrottlingRetries } from './aws-calls';
import { WAIT_HANDLE_RESOURCE_TYPE } from '../private/handler-protocol';

/**
 * The URL of a WaitConditionHandle, read from its stack: a handle's physical id is the pre-signed URL that `Ref`
 * gives (AWS::CloudFormation::WaitConditionHandle reference, Return values). Reading it takes
 * cloudformation:DescribeStackResource on the stack, so the compile job never has to carry it.
 *
 * @returns the URL, or undefined when the stack no longer has the handle (an update or rollback replaced it, or the
 * stack was deleted): no WaitCondition waits on it any more, so there is nothing to signal.
 * @throws when the resource cannot be read (access, throttling past the retries: the caller's invocation is retried),
 * or is not a wait handle with a URL (nothing may be signalled there)
 */
export async function waitHandleUrl(cfn: CloudFormationClient, stackId: string, logicalId: string): Promise<string | undefined> {
  let described;
  try {
    described = await withThrottlingRetries(() => cfn.send(new DescribeStackResourceCommand({ StackName: stackId, LogicalResourceId: logicalId })));
  } catch (error) {
    // CloudFormation answers ValidationError "Resource <id> does not exist for stack <name>" (or "Stack with id
    // <id> does not exist").
    if ((error as Error).name === 'ValidationError' && /does not exist/.test((error as Error).message)) return undefined;
    throw error;
  }
  const detail = described.StackResourceDetail;
  if (detail?.ResourceStatus?.startsWith('DELETE_')) return undefined;
  if (detail?.ResourceType !== WAIT_HANDLE_RESOURCE_TYPE || !detail.PhysicalResourceId?.startsWith('https://')) {
    throw new Error(`${logicalId} in stack ${stackId} is not a ${WAIT_HANDLE_RESOURCE_TYPE} with a URL `
      + `(type ${detail?.ResourceType ?? 'none'}, status ${detail?.ResourceStatus ?? 'none'}): nothing is signalled there`);
  }
  return detail.PhysicalResourceId;
}
