import { handler as compileJob, CompileJobEvent } from './compile-job';
import { BatchJobStateChangeEvent, handler as compileJobState } from './compile-job-state';
import { customResourceHandler } from './custom-resource';
import { handler as inferenceCode, InferenceCodeEvent } from './inference-code';
import { COMPILE_JOB_RESOURCE_TYPE, INFERENCE_CODE_RESOURCE_TYPE } from '../private/handler-protocol';

/**
 * The one Lambda function of a NeuronxCompile, for everything that happens to its artifact prefix during a deploy:
 *
 * - `Custom::NeuronxCompileJob` requests from CloudFormation: start the compile job (or find the prefix compiled
 *   already) and stop it (compile-job.ts);
 * - the job-state rule's "Batch Job State Change" events: signal the deploy when the job ends
 *   (compile-job-state.ts);
 * - `Custom::NeuronxInferenceCode` requests of model data made from this compile: place the inference code under
 *   the prefix's `code/` (inference-code.ts).
 *
 * One function, not one each: each function brings its own role, policy and log group to every stack, and what
 * the events and the code need (describe jobs, read the prefix, write its `code/`) is this compile's own prefix.
 */
export async function handler(event: CompileJobEvent | InferenceCodeEvent | BatchJobStateChangeEvent): Promise<void> {
  if ('RequestType' in event && 'ResponseURL' in event) {
    switch (event.ResourceType) {
      case COMPILE_JOB_RESOURCE_TYPE: return compileJob(event as CompileJobEvent);
      case INFERENCE_CODE_RESOURCE_TYPE: return inferenceCode(event as InferenceCodeEvent);
      default: return refuse(event);
    }
  }
  if ('detail-type' in event && event['detail-type'] === 'Batch Job State Change') {
    return compileJobState(event);
  }
  // Neither CloudFormation nor the rule: nothing to answer, nothing to signal. Throwing makes the call visible.
  throw new Error(`Not a custom resource request or a Batch job state change: ${JSON.stringify(event).slice(0, 200)}`);
}

/** A custom resource of a type this function does not serve: answered FAILED at once, not left to time out. */
const refuse = customResourceHandler<unknown>({
  physicalResourceId: event => event.PhysicalResourceId ?? `unsupported:${event.LogicalResourceId}`,
  onEvent: async event => {
    // Nothing was ever created for it: a delete must not block the stack's.
    if (event.RequestType === 'Delete') return { reason: `${event.ResourceType} is not served by this function: nothing to delete.` };
    throw new Error(`${event.ResourceType} is not served by this function, which serves `
      + `${COMPILE_JOB_RESOURCE_TYPE} and ${INFERENCE_CODE_RESOURCE_TYPE}.`);
  },
  failureReason: (_event, error) => (error as Error).message,
});
