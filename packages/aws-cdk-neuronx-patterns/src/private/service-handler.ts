import * as path from 'path';
import { CONTRACT, RUNTIME_DIR } from './contract';

/**
 * The handler entry TorchServe calls for every batch of requests, as TS_DEFAULT_SERVICE_HANDLER names it:
 * `<module>:<function>` (pytorch/serve v0.11.0 `ts/model_loader.py` splits it at the first ':'), here
 * `inference:handle`. It replaces the toolkit's default handler; the toolkit still starts TorchServe.
 */
export const SERVICE_HANDLER = `${path.parse(CONTRACT.endpoint.handlerScript).name}:${CONTRACT.endpoint.serviceHandlerFunction}`;

/**
 * The JVM options that put the library's /ping plugin on TorchServe's class path (JDK_JAVA_OPTIONS; the image's
 * OpenJDK 11 reads it). TorchServe 0.11.0 answers /ping 200 while a worker still loads its model, so SageMaker would
 * send requests, at deploy and on every update, to an instance that cannot answer for many minutes; the plugin answers
 * 503 until every model has a loaded worker. The toolkit writes TorchServe's configuration itself, with no
 * plugins_path, so the jar joins the class path as a Java agent that instruments nothing (contract endpoint.readiness).
 * The agent's premain replaces the JVM's SIGTERM handler with one that drains the workers first (contract
 * endpoint.draining).
 */
export const READINESS_JAVA_OPTIONS = `-javaagent:${CONTRACT.endpoint.modelDir}${CONTRACT.layout.codeDir}${CONTRACT.endpoint.readiness.jar}`;

/** The plugin jar, built from runtime/inference/readiness/ and placed in every code/ beside the handler. */
export const READINESS_JAR = path.join(RUNTIME_DIR, 'inference', CONTRACT.endpoint.readiness.jar);
