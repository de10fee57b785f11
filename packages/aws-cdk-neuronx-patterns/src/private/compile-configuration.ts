import * as crypto from 'crypto';
import { Annotations, Duration, Size } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { IConstruct } from 'constructs';
import { CompileOptions, OptLevel } from '../compile-options';
import { Model } from '../model';
import { NeuronxInstanceType } from '../neuronx-instance-type';
import { NeuronxRuntime } from '../neuronx-runtime';
import { CONTRACT, CONTRACT_OPTION_VALUES, compileEnv, compilerTargetValue } from './contract';
import { checkPositiveInteger } from './problems';
import {
  compileHostBytesNeeded, compileInstanceProblems, compileVolumeBytes, DEFAULT_N_POSITIONS, GIB, hostBytes, modelSizing, ResolvedCompileOptions,
  servingProblems,
} from './sizing';

/**
 * What a NeuronxCompile is built from, before anything is built: its props with their defaults, the values derived
 * from them (instance types, timeouts, artifact prefix, volume size) and every reason they cannot work.
 */

// A WaitCondition waits at most 12 hours (AWS::CloudFormation::WaitCondition Timeout: 43200 s). This is the
// longest a deploy can wait for a compile; a custom resource could wait only one hour (ServiceTimeout 3600 s).
const MAX_WAIT = Duration.hours(12);
// Time for the job-state event to reach its Lambda and the signal to land, after the job ends.
const SIGNAL_MARGIN = Duration.minutes(15);
// Batch's job-state time limit action accepts 600 to 86400 seconds.
const MIN_START_TIMEOUT = Duration.minutes(10);
const DEFAULT_START_TIMEOUT = Duration.minutes(30);
const DEFAULT_TIMEOUT = Duration.hours(10);
const DEFAULT_OPT_LEVEL = OptLevel.BEST_BALANCE;
const DEFAULT_ARTIFACT_ROOT = 'neuronx-compile/';
/**
 * The job's variables that every artifact prefix has held since the first contract, in the order the job definition
 * lists them: always set, from the resolved options or (amp, compilerTarget, imageUri) by the library. Never add to
 * this list: every other `CompileOptions` field is set by its name in the contract's `compileJob.environment` only
 * when it has a value other than off and its contract default (see jobEnvironment), so that the prefixes compiled
 * before an option existed keep their value.
 */
const ALWAYS_SET = ['tpDegree', 'nPositions', 'batchSize', 'amp', 'quantDtype', 'optLevel', 'compilerTarget', 'imageUri'];
/** The job's variables in ALWAYS_SET that the library sets itself: they are not `CompileOptions` fields. */
const LIBRARY_SET = ['amp', 'compilerTarget', 'imageUri'];
/**
 * The job's other variables that are not `CompileOptions` fields (the model, the locations, the entry point): set from
 * other props, never from a key of the options (an object with extra keys passes TypeScript's checks).
 */
const NOT_OPTIONS = ['modelId', 'modelRevision', 'modelS3Uri', 'hfTokenSecretArn', 'artifactS3Uri', 'codeS3Uri', 'workDir', 'releaseEntrypoint'];
// On Spot, the most attempts when the instance is reclaimed (any other failure ends the job at once).
const MAX_SPOT_ATTEMPTS = 3;
// The largest gp3 volume.
const MAX_VOLUME_GIB = 16384;
// Instances big enough to compile, cheapest first (used when no compile instance type is given).
const COMPILE_CANDIDATES = [
  NeuronxInstanceType.INF2_8XLARGE, NeuronxInstanceType.INF2_24XLARGE, NeuronxInstanceType.INF2_48XLARGE, NeuronxInstanceType.TRN1_32XLARGE,
];

/** What is compiled, for what, and how: what `resolveConfiguration` reads (a NeuronxCompileConfiguration is one). */
export interface CompileConfigurationInput {
  readonly model: Model;
  readonly servingInstanceType?: NeuronxInstanceType;
  readonly compileInstanceType?: NeuronxInstanceType;
  readonly compileOptions?: CompileOptions;
}

/** The names the messages give the fields (a NeuronxCompileConfigurationNames is one). */
export interface ConfigurationNames {
  /** @default 'compileOptions' */
  readonly compileOptions?: string;
  /** @default 'compileInstanceType' */
  readonly compileInstanceType?: string;
}

/** What `compileSettings` reads (NeuronxCompileProps are one). */
export interface CompileSettingsInput extends CompileConfigurationInput {
  readonly runtime?: NeuronxRuntime;
  readonly spot?: boolean;
  readonly vpcSubnets?: ec2.SubnetSelection;
  readonly volumeSize?: Size;
  readonly timeout?: Duration;
  readonly startTimeout?: Duration;
  readonly artifactRootPrefix?: string;
}

/** A NeuronxCompile's props resolved: what its resources are made from. */
export interface CompileSettings {
  readonly runtime: NeuronxRuntime;
  /** The instance type the job runs on. */
  readonly compileInstance: NeuronxInstanceType;
  /** The instance type the artifacts are compiled for. */
  readonly serving: NeuronxInstanceType;
  /** Every compile option, with its default applied where there is one. */
  readonly options: ResolvedCompileOptions & { readonly optLevel: OptLevel; readonly continuousBatching: boolean };
  /** The longest one attempt may run. */
  readonly timeout: Duration;
  /** The longest the job may wait for an instance. */
  readonly startTimeout: Duration;
  /**
   * The job's attempts: 1 on demand; on Spot, as many whole attempts (each up to startTimeout + timeout: a retry
   * waits for an instance again) as fit in the deploy's wait, at most 3.
   */
  readonly attempts: number;
  /** The longest the deploy waits: every attempt's start and run, and the signal; at most 12 hours. */
  readonly waitTimeout: Duration;
  readonly vpcSubnets: ec2.SubnetSelection;
  readonly volumeSize: Size;
  /** The job's variables that determine the artifacts (and so their prefix). */
  readonly jobEnvironment: Record<string, string>;
  /** The key prefix of the artifacts (ends with '/'). */
  readonly artifactPrefix: string;
  /** The key of the completion marker. */
  readonly markerKey: string;
  /** Every reason the props cannot work, except the subnets' (see subnetProblems). */
  readonly problems: string[];
}

/** The settings of a NeuronxCompile made with `props`. */
export function compileSettings(props: CompileSettingsInput): CompileSettings {
  const runtime = props.runtime ?? NeuronxRuntime.DEFAULT;
  const { compileInstance, serving, resolved, problems } = resolveConfiguration(props, {});
  const startTimeout = props.startTimeout ?? DEFAULT_START_TIMEOUT;
  const timeout = props.timeout ?? DEFAULT_TIMEOUT;
  const attemptSeconds = startTimeout.toSeconds() + timeout.toSeconds();
  const attempts = props.spot ? spotAttempts(attemptSeconds) : 1;
  const jobEnvironment = optionEnvironment(resolved, { compilerTarget: compilerTargetValue(serving.family), imageUri: runtime.toString() });
  const fingerprint = artifactFingerprint(props.model, runtime, jobEnvironment);
  const artifactPrefix = `${normalizePrefix(props.artifactRootPrefix ?? DEFAULT_ARTIFACT_ROOT)}${slug(props.model.modelId)}/${fingerprint}/`;
  return {
    runtime,
    compileInstance,
    serving,
    options: resolved,
    timeout,
    startTimeout,
    attempts,
    waitTimeout: Duration.seconds(Math.min(MAX_WAIT.toSeconds(), attempts * attemptSeconds + SIGNAL_MARGIN.toSeconds())),
    vpcSubnets: props.vpcSubnets ?? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
    volumeSize: props.volumeSize ?? Size.gibibytes(Math.min(MAX_VOLUME_GIB,
      Math.ceil(compileVolumeBytes(modelSizing(props.model), resolved.quantDtype) / GIB))),
    jobEnvironment,
    artifactPrefix,
    markerKey: `${artifactPrefix}${CONTRACT.layout.marker}`,
    problems: [...problems, ...timeoutProblems(timeout, startTimeout)],
  };
}

/** The configuration with its defaults applied, and every reason it cannot work. */
export function resolveConfiguration(config: CompileConfigurationInput, names: ConfigurationNames) {
  const optionsName = names.compileOptions ?? 'compileOptions';
  const instanceTypeName = names.compileInstanceType ?? 'compileInstanceType';
  const sizing = modelSizing(config.model);
  const options = config.compileOptions ?? {};
  const compileInstance = config.compileInstanceType
    ?? COMPILE_CANDIDATES.find(t => hostBytes(t) >= compileHostBytesNeeded(sizing, options.quantDtype)
      && t.neuronCores >= (options.tpDegree ?? config.servingInstanceType?.neuronCores ?? 1))
    ?? NeuronxInstanceType.INF2_48XLARGE;
  const serving = config.servingInstanceType ?? compileInstance;
  const resolved: CompileSettings['options'] = {
    ...contractOptionDefaults(),
    ...Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)),
    tpDegree: options.tpDegree ?? serving.neuronCores,
    nPositions: options.nPositions ?? DEFAULT_N_POSITIONS,
    batchSize: options.batchSize ?? CONTRACT.defaults.batchSize,
    optLevel: options.optLevel ?? DEFAULT_OPT_LEVEL,
    continuousBatching: options.continuousBatching ?? false,
  };
  const notIntegers = [
    ...checkPositiveInteger(`${optionsName}.tpDegree`, options.tpDegree),
    ...checkPositiveInteger(`${optionsName}.nPositions`, options.nPositions),
    ...checkPositiveInteger(`${optionsName}.batchSize`, options.batchSize),
  ];
  const problems = notIntegers.length > 0 ? notIntegers : [
    ...servingProblems(optionsName, sizing, serving, resolved, compileInstance),
    ...compileInstanceProblems(instanceTypeName, sizing, compileInstance, resolved),
  ];
  return { compileInstance, serving, resolved, problems };
}

/** The contract's `defaults` of the compile job's options (its `compileJob.environment` keys that the library does not set itself). */
function contractOptionDefaults(): Record<string, unknown> {
  return Object.fromEntries(Object.entries(CONTRACT.defaults)
    .filter(([key]) => key in CONTRACT.compileJob.environment && !LIBRARY_SET.includes(key)));
}

/**
 * The compile job's variables that determine the artifacts (and so their prefix): ALWAYS_SET, then every other
 * option, by its name in the contract's `compileJob.environment`, in the contract's order, when it is on and not
 * its contract default. A value from a contract list is written as the contract has it (CONTRACT_OPTION_VALUES),
 * `true` as `compileJob.enabledValue`, any other value as text.
 */
function optionEnvironment(options: ResolvedCompileOptions, librarySet: { compilerTarget: string; imageUri: string }): Record<string, string> {
  const values: Record<string, unknown> = { ...options, amp: CONTRACT.defaults.amp, ...librarySet };
  const optional = Object.keys(CONTRACT.compileJob.environment).filter(key => !ALWAYS_SET.includes(key) && !NOT_OPTIONS.includes(key)
    && values[key] !== undefined && values[key] !== false && values[key] !== CONTRACT.defaults[key]);
  return Object.fromEntries([...ALWAYS_SET, ...optional].map(key => [compileEnv(key), envValue(key, values[key])]));
}

function envValue(key: string, value: unknown): string {
  if (value === true) return CONTRACT.compileJob.enabledValue;
  const contractValue = CONTRACT_OPTION_VALUES[key];
  return String(contractValue ? contractValue(value) : value);
}

/**
 * Batch launches the compile instance without a public IP: in a public subnet it can reach neither ECS nor
 * Hugging Face and the job never starts. Isolated subnets work only with VPC endpoints (ECS, ECR, S3, logs)
 * and weights in S3: a warning on `compile`.
 */
export function subnetProblems(compile: IConstruct, vpc: ec2.IVpc, selection: ec2.SubnetSelection): string[] {
  const selected = vpc.selectSubnets(selection).subnets;
  const isolated = new Set(vpc.isolatedSubnets.map(s => s.node.path));
  const publicSubnets = new Set(vpc.publicSubnets.map(s => s.node.path));
  if (selected.some(s => publicSubnets.has(s.node.path))) {
    return ['vpcSubnets selects public subnets, where the compile instance gets no public IP and can reach neither ECS nor Hugging Face: '
      + 'select private subnets with egress (a NAT gateway), e.g. { subnetType: SubnetType.PRIVATE_WITH_EGRESS }.'];
  }
  if (selected.length > 0 && selected.every(s => isolated.has(s.node.path))) {
    Annotations.of(compile).addWarningV2('aws-cdk-neuronx-patterns:isolatedSubnets',
      'vpcSubnets selects isolated subnets: the compile job needs VPC endpoints for ECS, ECR, S3 and CloudWatch Logs, and cannot download from Hugging Face (use Model.fromBucket).');
  }
  return [];
}

/**
 * The attempts of a Spot job that fit in the deploy's wait. Batch's attempt timeout applies to each attempt
 * (JobTimeout: "measured from the job attempt's startedAt"), and a retried job waits for an instance again, so a
 * retry that did not fit would be cut off by the WaitCondition's 12 hours, with the Neuron instance still running until
 * the rollback stops the job.
 */
function spotAttempts(attemptSeconds: number): number {
  const budget = MAX_WAIT.toSeconds() - SIGNAL_MARGIN.toSeconds();
  return Math.max(1, Math.min(MAX_SPOT_ATTEMPTS, Math.floor(budget / attemptSeconds)));
}

/** The longest `timeout` that lets `attempts` Spot attempts fit in the wait, with `startTimeout`. */
function spotTimeoutFor(attempts: number, startTimeout: Duration): Duration {
  const budget = MAX_WAIT.toSeconds() - SIGNAL_MARGIN.toSeconds();
  return Duration.minutes(Math.floor((Math.floor(budget / attempts) - startTimeout.toSeconds()) / 60));
}

/**
 * Warns when a Spot compile gets fewer attempts than it could: a reclaimed instance then fails the deploy (or, with
 * two, the second reclaim does), and says which `timeout` gives more.
 */
export function spotAttemptsWarning(scope: IConstruct, spot: boolean | undefined, settings: CompileSettings): void {
  if (!spot || settings.attempts >= MAX_SPOT_ATTEMPTS) return;
  const options = [2, 3].filter(n => n > settings.attempts)
    .map(n => `at most ${spotTimeoutFor(n, settings.startTimeout).toHumanString()} for ${n} attempts`);
  Annotations.of(scope).addWarningV2('aws-cdk-neuronx-patterns:spotAttempts',
    `spot is true, but with timeout ${settings.timeout.toHumanString()} and startTimeout ${settings.startTimeout.toHumanString()} only `
    + `${settings.attempts} attempt${settings.attempts === 1 ? '' : 's'} fit${settings.attempts === 1 ? 's' : ''} in the deploy's wait (at most ${MAX_WAIT.toHumanString()}): `
    + `${settings.attempts === 1 ? 'a reclaimed Spot instance fails the deploy' : 'the job is retried only once'}. `
    + `For more, set timeout to ${options.join(', or ')}.`);
}

function timeoutProblems(timeout: Duration, startTimeout: Duration): string[] {
  const problems: string[] = [];
  if (startTimeout.toSeconds() < MIN_START_TIMEOUT.toSeconds()) {
    problems.push(`startTimeout is ${startTimeout.toHumanString()}: Batch needs at least ${MIN_START_TIMEOUT.toHumanString()}.`);
  }
  const budget = MAX_WAIT.toSeconds() - SIGNAL_MARGIN.toSeconds() - startTimeout.toSeconds();
  if (timeout.toSeconds() > budget) {
    problems.push(`timeout is ${timeout.toHumanString()}: with startTimeout ${startTimeout.toHumanString()} the deploy cannot wait for it `
      + `(a WaitCondition waits at most ${MAX_WAIT.toHumanString()}); use at most ${Duration.seconds(budget).toHumanString()}.`);
  }
  if (timeout.toSeconds() < 60) {
    problems.push(`timeout is ${timeout.toHumanString()}: Batch needs at least 60 seconds.`);
  }
  return problems;
}

/** Everything that determines the artifacts, hashed: the same inputs give the same prefix. */
function artifactFingerprint(model: Model, runtime: NeuronxRuntime, jobEnvironment: Record<string, string>): string {
  const inputs = {
    contract: CONTRACT.version,
    modelId: model.modelId,
    revision: model.revision,
    // The key stays 'image' (the runtime's name): renaming it would change every artifact prefix.
    image: runtime.toString(),
    // Sorted by code unit (localeCompare would load ICU collation for ASCII names: measurable at synth).
    ...Object.fromEntries(Object.entries(jobEnvironment).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
  };
  return crypto.createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 16);
}

function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+/, '');
  return trimmed === '' || trimmed.endsWith('/') ? trimmed : `${trimmed}/`;
}

function slug(modelId: string): string {
  return modelId.replace(/\//g, '--').replace(/[^A-Za-z0-9._-]/g, '-');
}
