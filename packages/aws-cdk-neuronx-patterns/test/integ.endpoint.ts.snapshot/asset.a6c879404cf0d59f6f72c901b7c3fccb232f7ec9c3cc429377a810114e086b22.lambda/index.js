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

// src/inference-code.lambda.ts
var inference_code_lambda_exports = {};
__export(inference_code_lambda_exports, {
  handler: () => handler
});
module.exports = __toCommonJS(inference_code_lambda_exports);
var import_client_s3 = require("@aws-sdk/client-s3");

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

// src/inference-code.lambda.ts
var s3 = new import_client_s3.S3Client({});
async function handler(event) {
  const props = event.ResourceProperties;
  const physicalId = `s3://${props.DestinationBucket}/${props.DestinationPrefix}`;
  try {
    if (event.RequestType !== "Delete") {
      for (const file of props.Files) {
        await withThrottlingRetries(() => s3.send(new import_client_s3.CopyObjectCommand({
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
  handler
});
