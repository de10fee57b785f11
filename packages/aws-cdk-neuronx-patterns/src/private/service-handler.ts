import * as path from 'path';
import { CONTRACT, RUNTIME_DIR } from './contract';

const SERVED_CODE = CONTRACT.endpoint.servedCode;

/**
 * The folder, under the model data prefix, that holds the code with content hash `codeHash` (contract
 * `endpoint.servedCode`): `code/<hash>/`. Every file of one code is there, and no other code writes there, so an
 * endpoint that starts an instance later (scaling out, replacing one) downloads exactly the code its model names.
 * Without a hash (model data that places its code itself, directly in `code/`): `code/`.
 */
export function servedCodeDir(codeHash?: string): string {
  return codeHash === undefined ? CONTRACT.layout.codeDir : `${CONTRACT.layout.codeDir}${codeHash}/`;
}

/** The name, in `code/`, of the entry TorchServe imports for the code with `codeHash`: `neuronx_code_<hash>.py`. */
export function servedCodeEntryName(codeHash: string): string {
  return `${SERVED_CODE.entryModulePrefix}${codeHash}.py`;
}

/**
 * The handler entry TorchServe calls for every batch of requests, as TS_DEFAULT_SERVICE_HANDLER names it:
 * `<module>:<function>` (pytorch/serve v0.11.0 `ts/model_loader.py` splits it at the first ':'), here
 * `neuronx_code_<hash>:handle`: the served code's entry, which puts `code/<hash>/` first on sys.path and re-exports
 * the handler script's `handle` (`code/` itself, first on the toolkit's PYTHONPATH, may hold other deploys' files).
 * It replaces the toolkit's default handler; the toolkit still starts TorchServe. Without a hash (code directly in
 * `code/`): the handler script itself, `inference:handle`.
 */
export function serviceHandler(codeHash?: string): string {
  const script = codeHash === undefined ? CONTRACT.endpoint.handlerScript : servedCodeEntryName(codeHash);
  return `${path.parse(script).name}:${CONTRACT.endpoint.serviceHandlerFunction}`;
}

/**
 * The JVM options that put the library's /ping plugin, as the code with `codeHash` has it, on TorchServe's class path
 * (JDK_JAVA_OPTIONS; the image's OpenJDK 11 reads it). TorchServe 0.11.0 answers /ping 200 while a worker still loads
 * its model, so SageMaker would send requests, at deploy and on every update, to an instance that cannot answer for
 * many minutes; the plugin answers 503 until every model has a loaded worker. The toolkit writes TorchServe's
 * configuration itself, with no plugins_path, so the jar joins the class path as a Java agent that instruments
 * nothing (contract endpoint.readiness). The agent's premain replaces the JVM's SIGTERM handler with one that drains
 * the workers first (contract endpoint.draining).
 */
export function readinessJavaOptions(codeHash?: string): string {
  return `-javaagent:${CONTRACT.endpoint.modelDir}${servedCodeDir(codeHash)}${CONTRACT.endpoint.readiness.jar}`;
}

/** The plugin jar, built from runtime/inference/readiness/ and placed in every served code's folder beside the handler. */
export const READINESS_JAR = path.join(RUNTIME_DIR, 'inference', CONTRACT.endpoint.readiness.jar);

/** The served code's entry (the same text for every hash), placed as `code/neuronx_code_<hash>.py`. */
export const SERVED_CODE_ENTRY = path.join(RUNTIME_DIR, 'served-code', SERVED_CODE.entryScript);
