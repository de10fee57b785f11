import * as fs from 'fs';
import * as path from 'path';
import { QuantDtype } from '../compile-options';

/** Where the Python programs and the contract they share with the constructs live (shipped in the npm package). */
export const RUNTIME_DIR = path.join(__dirname, '..', '..', 'runtime');

/**
 * The compile job's program: runtime/compile, runtime/inference/inference.py and contract.json in one zip, built by
 * build-tools/compile-code-zip.js (the bundle task) and shipped in the npm package.
 */
export const COMPILE_CODE_ZIP = path.join(__dirname, '..', '..', 'assets', 'compile-code.zip');

/**
 * The contract between the constructs and the Python programs that run in AWS, read from the one file both sides
 * read: `runtime/contract.json`. Typed here only for the keys the constructs use.
 */
export interface RuntimeContract {
  readonly version: number;
  readonly compileJob: {
    readonly environment: Record<string, string>;
    readonly entrypointScript: string;
  };
  readonly endpoint: {
    readonly environment: Record<string, string>;
    readonly handlerScript: string;
    readonly serviceHandlerFunction: string;
  };
  readonly layout: {
    readonly checkpointDir: string;
    readonly compiledDir: string;
    readonly codeDir: string;
    readonly marker: string;
  };
  readonly manifest: {
    readonly schemaVersion: number;
    readonly requiredKeys: string[];
    readonly optionKeys: string[];
  };
  readonly quantDtypeNone: string;
  readonly defaults: { readonly batchSize: number; readonly amp: string; readonly generationTimeLimitSeconds: number };
}

export const CONTRACT: RuntimeContract = JSON.parse(fs.readFileSync(path.join(RUNTIME_DIR, 'contract.json'), 'utf-8'));

const QUANT_DTYPE_VALUE: Record<QuantDtype, string> = { [QuantDtype.S8]: 's8' };

/** The weight storage type as the Python programs read it (the contract's `quantDtypeNone` for bf16). */
export function quantDtypeValue(quantDtype: QuantDtype | undefined): string {
  return quantDtype ? QUANT_DTYPE_VALUE[quantDtype] : CONTRACT.quantDtypeNone;
}

/** The environment variable name for a compile-job key, failing loudly if the contract lacks it. */
export function compileEnv(key: string): string {
  return lookup(CONTRACT.compileJob.environment, key, 'compileJob.environment');
}

/** The environment variable name for an endpoint key, failing loudly if the contract lacks it. */
export function endpointEnv(key: string): string {
  return lookup(CONTRACT.endpoint.environment, key, 'endpoint.environment');
}

function lookup(table: Record<string, string>, key: string, where: string): string {
  const name = table[key];
  if (!name) {
    throw new Error(`runtime/contract.json has no ${where}.${key}: the constructs and the Python programs disagree.`);
  }
  return name;
}
