/**
 * Names shared by the constructs and the Lambda handlers they deploy (bundled into each handler by esbuild).
 */

/** Job environment variable carrying the WaitCondition handle URL the job's outcome is signalled to. */
export const WAIT_HANDLE_URL_ENV = 'NEURONX_WAIT_HANDLE_URL';

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
  readonly WaitHandleUrl: string;
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
} as const;

/** One file the inference-code custom resource copies under `<prefix>code/`. */
export interface CodeFile {
  readonly SourceBucket: string;
  readonly SourceKey: string;
  readonly Name: string;
}

/** Properties of the custom resource that places the inference code beside the model data. */
export interface InferenceCodeProperties {
  readonly DestinationBucket: string;
  /** Ends with '/'. */
  readonly DestinationPrefix: string;
  readonly Files: CodeFile[];
}
