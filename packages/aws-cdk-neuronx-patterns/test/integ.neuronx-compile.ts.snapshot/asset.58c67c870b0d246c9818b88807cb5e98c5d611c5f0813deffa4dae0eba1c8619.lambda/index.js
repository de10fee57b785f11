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

// src/compile-job.lambda.ts
var compile_job_lambda_exports = {};
__export(compile_job_lambda_exports, {
  handler: () => handler
});
module.exports = __toCommonJS(compile_job_lambda_exports);
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

// src/private/marker.ts
var import_client_s3 = require("@aws-sdk/client-s3");
async function markerExists(s32, bucket, key) {
  try {
    await withThrottlingRetries(() => s32.send(new import_client_s3.HeadObjectCommand({ Bucket: bucket, Key: key })));
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
// Annotate the CommonJS export names for ESM import in node:
0 && (module.exports = {
  handler
});
