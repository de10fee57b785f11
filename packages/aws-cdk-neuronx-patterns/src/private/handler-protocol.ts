/**
 * Names shared by the constructs and the Lambda handlers they deploy (bundled into each handler by esbuild).
 */

/**
 * Job parameter naming the logical id of the WaitConditionHandle the job's outcome is signalled to. Not the handle's
 * URL: that is a bearer credential (whoever has it can signal SUCCESS), and a job's parameters, environment and
 * tags are readable by any principal allowed batch:DescribeJobs. The job-state handler reads the URL from
 * CloudFormation when it signals (a handle's physical id is its URL). A parameter rather than an environment
 * variable or a tag: the job-state event's detail carries the job's parameters (as DescribeJobs returns them) but
 * not its tags, and the container never sees a parameter its job definition's command does not reference.
 */
export const WAIT_HANDLE_PARAMETER = 'neuronxWaitHandle';

/** The CloudFormation type of the handle, checked before a URL read from the stack is signalled. */
export const WAIT_HANDLE_RESOURCE_TYPE = 'AWS::CloudFormation::WaitConditionHandle';

/**
 * Tag every compile job is submitted with; its value identifies the NeuronxCompile. The lifecycle function may
 * terminate only jobs that carry the tag with its compile's value (an IAM condition on aws:ResourceTag).
 */
export const COMPILE_JOB_TAG_KEY = 'neuronx-compile';

/** The CloudFormation types of the library's custom resources: the compile's function routes requests on them. */
export const COMPILE_JOB_RESOURCE_TYPE = 'Custom::NeuronxCompileJob';
export const INFERENCE_CODE_RESOURCE_TYPE = 'Custom::NeuronxInferenceCode';

/** Properties of the custom resource that starts (and stops) the compile job. */
export interface CompileJobProperties {
  readonly JobQueueArn: string;
  readonly JobDefinitionArn: string;
  readonly JobName: string;
  /** Value of the COMPILE_JOB_TAG_KEY tag the job is submitted with. */
  readonly JobTagValue: string;
  readonly ArtifactBucket: string;
  /** Ends with '/'. */
  readonly ArtifactPrefix: string;
  readonly MarkerKey: string;
  /** Given by CloudFormation to this function only: signalled directly when the prefix is compiled already. */
  readonly WaitHandleUrl: string;
  /** The handle's logical id: what the job carries (WAIT_HANDLE_PARAMETER), instead of its URL. */
  readonly WaitHandleLogicalId: string;
}

/** Physical id of a compile custom resource whose artifacts already existed: no job was started. */
export const ALREADY_COMPILED_PREFIX = 'already-compiled:';

/** Environment of the job-state handler. */
export const STATE_HANDLER_ENV = {
  /** Contract env var name holding the artifact S3 URI in the job. */
  artifactUriEnvName: 'ARTIFACT_URI_ENV_NAME',
  /** Marker file name under the artifact prefix. */
  markerName: 'MARKER_NAME',
  /** The job queue's RUNNABLE time limit, for the message when a job never started. */
  runnableTimeoutSeconds: 'RUNNABLE_TIMEOUT_SECONDS',
  /** The compile job's log group. */
  logGroupName: 'LOG_GROUP_NAME',
  /** The stack that holds the wait handles (its id, an ARN): where the handle's URL is read at signal time. */
  stackId: 'STACK_ID',
} as const;

/** One file the inference-code custom resource copies under `<prefix>code/`. */
export interface CodeFile {
  readonly SourceBucket: string;
  readonly SourceKey: string;
  /** The key under DestinationPrefix: `<hash>/<file name>`, or the entry `neuronx_code_<hash>.py`. */
  readonly Name: string;
}

/** Properties of the custom resource that places the inference code beside the model data. */
export interface InferenceCodeProperties {
  readonly DestinationBucket: string;
  /** Ends with '/'. */
  readonly DestinationPrefix: string;
  readonly Files: CodeFile[];
  /**
   * The model data's completion marker in DestinationBucket: Create and Update fail without it, so that no model is
   * made over artifacts that are incomplete, whatever signalled the compile's wait.
   */
  readonly MarkerKey: string;
  /**
   * The logical id of the compile's WaitCondition that this resource runs after (it depends on it), when the model
   * data comes from a compile: a new wait changes it, so the marker is checked again after every wait.
   */
  readonly CompileWait?: string;
  /**
   * Objects written with the given text besides the copied files (keys in DestinationBucket, under the model data
   * prefix): the model server's continuous-batching configuration, when the artifacts are compiled for it.
   */
  readonly Objects?: { readonly Key: string; readonly Body: string }[];
}
