"use strict";
var __defProp = Object.defineProperty;
var __getOwnPropDesc = Object.getOwnPropertyDescriptor;
var __getOwnPropNames = Object.getOwnPropertyNames;
var __hasOwnProp = Object.prototype.hasOwnProperty;
var __export = (target, all) => {
  for (var name in all)
    __defProp(target, name, { get: all[name], enumerable: true });
};
var __copyProps = (to, from, except, desc) => {
  if (from && typeof from === "object" || typeof from === "function") {
    for (let key of __getOwnPropNames(from))
      if (!__hasOwnProp.call(to, key) && key !== except)
        __defProp(to, key, { get: () => from[key], enumerable: !(desc = __getOwnPropDesc(from, key)) || desc.enumerable });
  }
  return to;
};
var __toCommonJS = (mod) => __copyProps(__defProp({}, "__esModule", { value: true }), mod);

// src/handlers.lambda.ts
var handlers_lambda_exports = {};
__export(handlers_lambda_exports, {
  compileJob: () => handler,
  compileJobState: () => handler2,
  inferenceCode: () => handler3
});
module.exports = __toCommonJS(handlers_lambda_exports);

// src/compile-job.lambda.ts
var import_client_batch = require("@aws-sdk/client-batch");
var import_client_s32 = require("@aws-sdk/client-s3");

// src/private/aws-calls.ts
var THROTTLING = /throttl|toomanyrequests|requestlimitexceeded|slowdown/i;
var MAX_ATTEMPTS = 6;
var BASE_DELAY_MS = 200;
function isThrottling(error) {
  const e = error;
  return THROTTLING.test(e?.name ?? "") || THROTTLING.test(e?.Code ?? "") || e?.$metadata?.httpStatusCode === 429;
}
async function withThrottlingRetries(call, sleep = defaultSleep) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (!isThrottling(error) || attempt >= MAX_ATTEMPTS) throw error;
      await sleep(BASE_DELAY_MS * 2 ** (attempt - 1) * (0.5 + Math.random()));
    }
  }
}
function defaultSleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
async function putJson(url, body) {
  const text = JSON.stringify(body);
  const response = await fetch(url, {
    method: "PUT",
    body: text,
    headers: { "content-type": "", "content-length": String(Buffer.byteLength(text)) }
  });
  if (!response.ok) {
    throw new Error(`PUT to the pre-signed URL failed: HTTP ${response.status}`);
  }
}
var MAX_REASON_LENGTH = 4e3;
function signal(url, status, uniqueId, reason, data = "") {
  return putJson(url, { Status: status, Reason: reason.slice(0, MAX_REASON_LENGTH), UniqueId: uniqueId, Data: data });
}
async function respond(event, status, physicalResourceId, reason, data = {}) {
  const response = {
    Status: status,
    Reason: "",
    PhysicalResourceId: physicalResourceId,
    StackId: event.StackId,
    RequestId: event.RequestId,
    LogicalResourceId: event.LogicalResourceId,
    Data: data
  };
  response.Reason = truncateJsonString(reason, MAX_RESPONSE_BYTES - Buffer.byteLength(JSON.stringify(response)));
  await putJson(event.ResponseURL, response);
}
var MAX_RESPONSE_BYTES = 4096;
function truncateJsonString(text, maxBytes) {
  let end = Math.min(text.length, Math.max(0, maxBytes));
  while (end > 0 && Buffer.byteLength(JSON.stringify(text.slice(0, end))) - 2 > maxBytes) end--;
  return text.slice(0, end);
}
function errorMessage(error) {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

// src/private/handler-protocol.ts
var WAIT_HANDLE_URL_ENV = "NEURONX_WAIT_HANDLE_URL";
var ALREADY_COMPILED_PREFIX = "already-compiled:";
var STATE_HANDLER_ENV = {
  /** Contract env var name holding the artifact S3 URI in the job. */
  artifactUriEnvName: "ARTIFACT_URI_ENV_NAME",
  /** Marker file name under the artifact prefix. */
  markerName: "MARKER_NAME",
  /** The job queue's RUNNABLE time limit, for the message when a job never started. */
  runnableTimeoutSeconds: "RUNNABLE_TIMEOUT_SECONDS",
  /** The compile job's log group. */
  logGroupName: "LOG_GROUP_NAME"
};

// src/private/marker.ts
var import_client_s3 = require("@aws-sdk/client-s3");
async function markerExists(s34, bucket, key) {
  try {
    await withThrottlingRetries(() => s34.send(new import_client_s3.HeadObjectCommand({ Bucket: bucket, Key: key })));
    return true;
  } catch (error) {
    const status = error.$metadata?.httpStatusCode;
    if (error.name === "NotFound" || status === 404) return false;
    throw error;
  }
}

// src/compile-job.lambda.ts
var batch = new import_client_batch.BatchClient({});
var s3 = new import_client_s32.S3Client({});
var TERMINAL = /* @__PURE__ */ new Set(["SUCCEEDED", "FAILED"]);
async function handler(event) {
  const props = event.ResourceProperties;
  let physicalId = event.PhysicalResourceId ?? `${ALREADY_COMPILED_PREFIX}${props.ArtifactPrefix}`;
  try {
    if (event.RequestType === "Delete") {
      await stopJob(physicalId);
      await respond(event, "SUCCESS", physicalId, "Compile job stopped if it was running.");
      return;
    }
    if (event.RequestType === "Update" && samePrefix(event)) {
      await respond(event, "SUCCESS", physicalId, "Same artifact prefix: nothing to compile.");
      return;
    }
    physicalId = await startCompile(props);
    await respond(event, "SUCCESS", physicalId, physicalId.startsWith(ALREADY_COMPILED_PREFIX) ? "Artifacts already compiled: no job started." : `Compile job ${physicalId} submitted.`, { JobId: physicalId });
  } catch (error) {
    console.error(JSON.stringify({ message: "compile custom resource failed", requestType: event.RequestType, error: errorMessage(error) }));
    await respond(event, "FAILED", physicalId, `${event.RequestType} failed: ${errorMessage(error)}`);
  }
}
function samePrefix(event) {
  const old = event.OldResourceProperties;
  return !!old && old.ArtifactBucket === event.ResourceProperties.ArtifactBucket && old.ArtifactPrefix === event.ResourceProperties.ArtifactPrefix;
}
async function startCompile(props) {
  if (await markerExists(s3, props.ArtifactBucket, props.MarkerKey)) {
    console.log(JSON.stringify({ message: "marker present, no compile", bucket: props.ArtifactBucket, key: props.MarkerKey }));
    await signal(props.WaitHandleUrl, "SUCCESS", "compile", `Already compiled: s3://${props.ArtifactBucket}/${props.ArtifactPrefix}`);
    return `${ALREADY_COMPILED_PREFIX}${props.ArtifactPrefix}`;
  }
  const submitted = await withThrottlingRetries(() => batch.send(new import_client_batch.SubmitJobCommand({
    jobName: props.JobName,
    jobQueue: props.JobQueueArn,
    jobDefinition: props.JobDefinitionArn,
    containerOverrides: { environment: [{ name: WAIT_HANDLE_URL_ENV, value: props.WaitHandleUrl }] }
  })));
  if (!submitted.jobId) throw new Error("SubmitJob returned no job id");
  console.log(JSON.stringify({ message: "compile job submitted", jobId: submitted.jobId, jobName: props.JobName }));
  return submitted.jobId;
}
async function stopJob(physicalId) {
  if (physicalId.startsWith(ALREADY_COMPILED_PREFIX)) return;
  const described = await withThrottlingRetries(() => batch.send(new import_client_batch.DescribeJobsCommand({ jobs: [physicalId] })));
  const job = described.jobs?.[0];
  if (!job || TERMINAL.has(job.status ?? "")) return;
  await withThrottlingRetries(() => batch.send(new import_client_batch.TerminateJobCommand({
    jobId: physicalId,
    reason: "Stopped by CloudFormation: the stack was deleted or rolled back, or the compile was replaced."
  })));
  console.log(JSON.stringify({ message: "compile job terminated", jobId: physicalId, status: job.status }));
}

// src/compile-job-state.lambda.ts
var import_client_batch2 = require("@aws-sdk/client-batch");
var import_client_s33 = require("@aws-sdk/client-s3");
var batch2 = new import_client_batch2.BatchClient({});
var s32 = new import_client_s33.S3Client({});
async function handler2(event) {
  const detail = event.detail;
  const job = await withEnvironment(detail);
  const environment = toRecord(job.container?.environment);
  const handleUrl = environment[WAIT_HANDLE_URL_ENV];
  if (!handleUrl) {
    console.log(JSON.stringify({ message: "job has no wait handle: not started by a deploy, ignored", jobId: detail.jobId }));
    return;
  }
  const uniqueId = detail.jobId ?? "compile";
  if (detail.status === "SUCCEEDED") {
    let artifactUri = "";
    let bucket = "";
    let key = "";
    let present = false;
    try {
      artifactUri = environment[requiredEnv(STATE_HANDLER_ENV.artifactUriEnvName)] ?? "";
      ({ bucket, key } = markerLocation(artifactUri, requiredEnv(STATE_HANDLER_ENV.markerName)));
      present = await markerExists(s32, bucket, key);
    } catch (error) {
      await signal(handleUrl, "FAILURE", uniqueId, `Compile job ${detail.jobId} succeeded but its completion marker could not be read: ${errorMessage(error)}`);
      return;
    }
    if (present) {
      await signal(handleUrl, "SUCCESS", uniqueId, `Compiled: ${artifactUri}`);
    } else {
      await signal(handleUrl, "FAILURE", uniqueId, `Compile job ${detail.jobId} succeeded but wrote no completion marker at s3://${bucket}/${key}: the artifacts are incomplete. ${logHint(job)}`);
    }
    return;
  }
  if (detail.status === "FAILED") {
    await signal(handleUrl, "FAILURE", uniqueId, failureReason(job));
  }
}
async function withEnvironment(detail) {
  if (detail.container?.environment?.some((e) => e.name === WAIT_HANDLE_URL_ENV) || !detail.jobId) return detail;
  const described = await withThrottlingRetries(() => batch2.send(new import_client_batch2.DescribeJobsCommand({ jobs: [detail.jobId] })));
  return described.jobs?.[0] ?? detail;
}
function failureReason(job) {
  const statusReason = job.statusReason ?? "no status reason";
  const name = `Compile job ${job.jobName ?? ""} (${job.jobId})`.replace("  ", " ");
  const neverStarted = !job.startedAt && /^(CAPACITY|MISCONFIGURATION):/.test(statusReason);
  if (neverStarted) {
    const minutes = Math.round(Number(process.env[STATE_HANDLER_ENV.runnableTimeoutSeconds] ?? 0) / 60);
    return `${name} could not start within ${minutes} minutes and was cancelled: ${statusReason}. Check the EC2 quota for this instance type (Running On-Demand or Spot Inf/Trn instances) and capacity in the subnets' Availability Zones, then deploy again.`;
  }
  const attempt = job.attempts?.[job.attempts.length - 1];
  const exitCode = job.container?.exitCode ?? attempt?.container?.exitCode;
  const containerReason = job.container?.reason ?? attempt?.container?.reason;
  return [
    `${name} failed: ${statusReason}.`,
    exitCode !== void 0 ? `Exit code ${exitCode}.` : "",
    containerReason ? `Container: ${containerReason}.` : "",
    logHint(job)
  ].filter(Boolean).join(" ");
}
function logHint(job) {
  const attempt = job.attempts?.[job.attempts.length - 1];
  const stream = job.container?.logStreamName ?? attempt?.container?.logStreamName;
  const group = process.env[STATE_HANDLER_ENV.logGroupName];
  return stream ? `Log stream: ${stream}${group ? ` in log group ${group}` : ""}.` : "The job wrote no log stream.";
}
function markerLocation(artifactUri, markerName) {
  const match = /^s3:\/\/([^/]+)\/(.*)$/.exec(artifactUri);
  if (!match) throw new Error(`The job's artifact URI '${artifactUri}' is not an s3:// URI`);
  return { bucket: match[1], key: `${match[2]}${markerName}` };
}
function toRecord(pairs) {
  return Object.fromEntries((pairs ?? []).filter((p) => p.name).map((p) => [p.name, p.value ?? ""]));
}
function requiredEnv(name) {
  const value = process.env[name];
  if (!value) throw new Error(`environment variable ${name} is not set`);
  return value;
}

// src/inference-code.lambda.ts
var import_client_s34 = require("@aws-sdk/client-s3");
var s33 = new import_client_s34.S3Client({});
async function handler3(event) {
  const props = event.ResourceProperties;
  const physicalId = `s3://${props.DestinationBucket}/${props.DestinationPrefix}`;
  try {
    if (event.RequestType !== "Delete") {
      for (const file of props.Files) {
        await withThrottlingRetries(() => s33.send(new import_client_s34.CopyObjectCommand({
          Bucket: props.DestinationBucket,
          Key: `${props.DestinationPrefix}${file.Name}`,
          CopySource: `${file.SourceBucket}/${encodeURIComponent(file.SourceKey)}`
        })));
      }
    }
    await respond(event, "SUCCESS", physicalId, `${props.Files.length} code file(s) at ${physicalId}`);
  } catch (error) {
    console.error(JSON.stringify({ message: "placing inference code failed", error: errorMessage(error) }));
    await respond(event, "FAILED", physicalId, `Placing the inference code at ${physicalId} failed: ${errorMessage(error)}`);
  }
}
// Annotate the CommonJS export names for ESM import in node:
0 && (module.exports = {
  compileJob,
  compileJobState,
  inferenceCode
});
