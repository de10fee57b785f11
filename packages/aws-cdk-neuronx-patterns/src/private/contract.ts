import * as fs from 'fs';
import * as path from 'path';
import { OptLevel, QuantDtype } from '../compile-options';
import { NeuronxInstanceFamily } from '../neuronx-instance-type';

/** Where the Python programs and the contract they share with the constructs live (shipped in the npm package). */
export const RUNTIME_DIR = path.join(__dirname, '..', '..', 'runtime');

/**
 * The compile job's program: runtime/compile, the module it shares with the handler (runtime/common/neuronx_common.py)
 * and contract.json in one zip, built by build-tools/compile-code-zip.js (the bundle task) and shipped in the npm package.
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
    /** What a switch variable holds when on (unset is off). */
    readonly enabledValue: string;
    /** Free space the job requires in its work dir: snapshot bytes x factor + marginGiB. */
    readonly diskSpace: { readonly factorQuantized: number; readonly factorUnquantized: number; readonly marginGiB: number };
  };
  /** The values the compile job accepts; the public enums map onto them. */
  readonly compileOptions: {
    readonly optLevels: number[];
    readonly quantDtypes: string[];
    readonly compilerTargets: string[];
  };
  readonly endpoint: {
    readonly environment: Record<string, string>;
    readonly handlerScript: string;
    readonly serviceHandlerFunction: string;
    /** TorchServe's dynamic batching, set above batch size 1. */
    readonly batching: {
      readonly maxBatchDelayMilliseconds: number;
      /** Served without continuous batching: TorchServe's queue bounded and the time limit that fits (see its $comment). */
      readonly staticAdmission: { readonly generationTimeLimitSeconds: number };
    };
    /** TorchServe's continuous batching, for artifacts compiled with continuousBatching (see its $comment). */
    readonly continuousBatching: {
      readonly manifestKey: string;
      /** The model config's name in the served code's folder (code/<hash>/). */
      readonly modelConfigName: string;
      readonly workers: number;
      readonly jobsBeyondSlots: number;
      readonly responseTimeoutSeconds: number;
      readonly manifest: { readonly runtime: string; readonly model: Record<string, string>; readonly archiverVersion: string };
    };
    /** The served code's layout (content-addressed, see its $comment). */
    readonly servedCode: { readonly entryScript: string; readonly entryModulePrefix: string };
    /** The /ping plugin's file name, in runtime/inference/ and in the served code's folder. */
    readonly readiness: { readonly jar: string };
    /** Where SageMaker copies the artifact prefix in the container (ends with '/'). */
    readonly modelDir: string;
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
  /** The published figures one decoding step's time is estimated from (see its $comment). */
  readonly stepTime: {
    readonly referenceSecondsBatch1: number;
    readonly referenceSecondsBatch4: number;
    readonly referenceParameters: number;
    readonly referenceBytesPerParameter: number;
    readonly referenceNeuronCores: number;
  };
  /** Defaults both sides apply; a compile option's default here is applied by its name (see compile-configuration.ts). */
  readonly defaults: {
    readonly batchSize: number;
    readonly amp: string;
    readonly generationTimeLimitSeconds: number;
    readonly [key: string]: unknown;
  };
}

export const CONTRACT: RuntimeContract = JSON.parse(fs.readFileSync(path.join(RUNTIME_DIR, 'contract.json'), 'utf-8'));

/**
 * The public enums mapped onto the values of the contract's `compileOptions`, the lists the compile job accepts.
 * test/contract.test.ts fails if a value here is not in the contract or a contract value is reached by no enum value.
 */
export const OPT_LEVEL_VALUES: Record<OptLevel, number> = {
  [OptLevel.MINIMIZE_COMPILE_TIME]: 1,
  [OptLevel.BEST_BALANCE]: 2,
  [OptLevel.BEST_EXECUTION]: 3,
};
export const QUANT_DTYPE_VALUES: Record<QuantDtype, string> = { [QuantDtype.S8]: 's8' };
export const COMPILER_TARGET_VALUES: Record<NeuronxInstanceFamily, string> = {
  [NeuronxInstanceFamily.INF2]: 'inf2',
  [NeuronxInstanceFamily.TRN1]: 'trn1',
};

/** The neuronx-cc `-O` level of `optLevel`, as the compile job reads it. */
export function optLevelValue(optLevel: OptLevel): number {
  return contractValue(CONTRACT.compileOptions.optLevels, OPT_LEVEL_VALUES[optLevel], 'optLevels');
}

/** The weight storage type as the Python programs read it (the contract's `quantDtypeNone` for bf16). */
export function quantDtypeValue(quantDtype: QuantDtype | undefined): string {
  return quantDtype ? contractValue(CONTRACT.compileOptions.quantDtypes, QUANT_DTYPE_VALUES[quantDtype], 'quantDtypes') : CONTRACT.quantDtypeNone;
}

/** The compiler target of a serving family, as the compile job reads it. */
export function compilerTargetValue(family: NeuronxInstanceFamily): string {
  return contractValue(CONTRACT.compileOptions.compilerTargets, COMPILER_TARGET_VALUES[family], 'compilerTargets');
}

/**
 * How the compile job reads the options whose values are one of a contract list, by option name. Any other option is
 * written as it is (a number or string as text, `true` as `compileJob.enabledValue`).
 */
export const CONTRACT_OPTION_VALUES: Record<string, (value: any) => string | number> = {
  optLevel: optLevelValue,
  quantDtype: quantDtypeValue,
};

function contractValue<T>(allowed: T[], value: T, list: string): T {
  if (!allowed.includes(value)) {
    throw new Error(`runtime/contract.json compileOptions.${list} has no ${value}: the constructs and the Python programs disagree.`);
  }
  return value;
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
