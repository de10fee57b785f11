/**
 * The contract between the constructs and the Python programs (runtime/contract.json), from the TypeScript side:
 * the job and the endpoint get, under the contract's names, exactly the values the compile job records in its
 * manifest (documented in runtime/manifest.example.json, which the Python tests hold the job to) and the
 * inference handler compares with that manifest at startup.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Template } from 'aws-cdk-lib/assertions';
import { NeuronxInstanceFamily, OptLevel, QuantDtype } from '../src';
import { endpointFixture, jobEnvironment, PINNED_REVISION } from './fixtures';
import {
  COMPILER_TARGET_VALUES, compilerTargetValue, OPT_LEVEL_VALUES, optLevelValue, QUANT_DTYPE_VALUES, quantDtypeValue,
} from '../src/private/contract';

const RUNTIME = path.join(__dirname, '..', 'runtime');
const contract = JSON.parse(fs.readFileSync(path.join(RUNTIME, 'contract.json'), 'utf-8'));
// The manifest a lowCost compile of calm3 writes (runtime/README.md documents it).
const example = JSON.parse(fs.readFileSync(path.join(RUNTIME, 'manifest.example.json'), 'utf-8'));

/** The value of an option as the Python programs parse it from the environment. */
function parsed(key: string, raw: string): string | number {
  return typeof example.options[key] === 'number' ? Number(raw) : raw;
}

describe('the public enums and the compile options the job accepts (contract compileOptions)', () => {
  test.each([
    ['optLevels', OptLevel, OPT_LEVEL_VALUES, optLevelValue],
    ['quantDtypes', QuantDtype, QUANT_DTYPE_VALUES, quantDtypeValue],
    ['compilerTargets', NeuronxInstanceFamily, COMPILER_TARGET_VALUES, compilerTargetValue],
  ] as Array<[string, object, Record<string, unknown>, (v: any) => unknown]>)('%s: every enum value maps onto a contract value and every contract value is reached', (list, enumType, values, value) => {
    const members = Object.values(enumType);
    expect(Object.keys(values).sort()).toEqual([...members].sort());
    const reached = members.map(m => value(m));
    expect(reached.filter(v => !contract.compileOptions[list].includes(v))).toEqual([]);
    expect([...contract.compileOptions[list]].sort()).toEqual([...new Set(reached)].sort());
  });

  test('a value the contract does not list fails loudly, naming the list', () => {
    const saved = OPT_LEVEL_VALUES[OptLevel.BEST_EXECUTION];
    (OPT_LEVEL_VALUES as Record<OptLevel, number>)[OptLevel.BEST_EXECUTION] = 4;
    try {
      expect(() => optLevelValue(OptLevel.BEST_EXECUTION)).toThrow(/runtime\/contract.json compileOptions.optLevels has no 4/);
    } finally {
      (OPT_LEVEL_VALUES as Record<OptLevel, number>)[OptLevel.BEST_EXECUTION] = saved;
    }
  });
});

describe('the compile manifest', () => {
  test('the documented manifest has exactly the contract\'s keys and option keys, in order', () => {
    expect(Object.keys(example)).toEqual(contract.manifest.requiredKeys);
    expect(Object.keys(example.options)).toEqual(contract.manifest.optionKeys);
    expect(example.schemaVersion).toBe(contract.manifest.schemaVersion);
  });

  test('every file of a manifest is under the checkpoint or compiled dir of the layout', () => {
    for (const file of example.files) {
      expect([contract.layout.checkpointDir, contract.layout.compiledDir].some((dir: string) => file.key.startsWith(dir))).toBe(true);
    }
  });
});

describe('the lowCost compile of calm3 and its endpoint', () => {
  const { stack, endpoint } = endpointFixture();
  const template = Template.fromStack(stack);
  const job = jobEnvironment(template);
  const model = Object.values(template.findResources('AWS::SageMaker::Model'))[0];
  const serving: Record<string, string> = model.Properties.PrimaryContainer.Environment;

  test('the job gets every manifest option under its contract name, with the value the manifest records (unset: the contract default)', () => {
    for (const key of contract.manifest.optionKeys) {
      const name = contract.compileJob.environment[key];
      const value = job[name] === undefined ? contract.defaults[key] : parsed(key, job[name]);
      expect({ key, value }).toEqual({ key, value: example.options[key] });
    }
  });

  test('the job gets the model, revision, compiler target and image the manifest records', () => {
    const env = contract.compileJob.environment;
    expect(job[env.modelId]).toBe(example.modelId);
    expect(job[env.modelRevision]).toBe(PINNED_REVISION);
    expect(job[env.compilerTarget]).toBe(example.compilerTarget);
    expect(job[env.imageUri]).toBe(example.imageUri);
  });

  test('the endpoint gets the same options, which the handler compares with the manifest before loading', () => {
    for (const key of contract.manifest.optionKeys.filter((k: string) => k in contract.endpoint.environment)) {
      const name = contract.endpoint.environment[key];
      expect({ key, value: parsed(key, serving[name]) }).toEqual({ key, value: example.options[key] });
    }
    // Each worker its own tpDegree NeuronCores; the handler checks this against the manifest's tpDegree too.
    expect(Number(serving[contract.endpoint.environment.coresPerWorker])).toBe(example.options.tpDegree);
    expect(endpoint.workersPerInstance).toBe(1);
  });

  test('the endpoint sets every variable of the contract\'s endpoint environment, the handler entry and time limit as the contract says', () => {
    // The toolkit's batching variables (server*) are set only above batch size 1 (endpoint.test.ts).
    const names = Object.entries(contract.endpoint.environment as Record<string, string>)
      .filter(([key]) => !key.startsWith('server')).map(([, name]) => name);
    expect(names.filter(name => serving[name] === undefined)).toEqual([]);
    // The served code's entry, named by the code's hash (contract endpoint.servedCode).
    expect(serving[contract.endpoint.environment.serviceHandler])
      .toBe(`${contract.endpoint.servedCode.entryModulePrefix}${serving.NEURONX_CODE_HASH}:${contract.endpoint.serviceHandlerFunction}`);
    expect(serving[contract.endpoint.environment.javaOptions])
      .toBe(`-javaagent:${contract.endpoint.modelDir}${contract.layout.codeDir}${serving.NEURONX_CODE_HASH}/${contract.endpoint.readiness.jar}`);
    // Served without continuous batching: the time limit that fits a wait for a whole batch, and the queue bounded.
    expect(Number(serving[contract.endpoint.environment.generationTimeLimit]))
      .toBe(contract.endpoint.batching.staticAdmission.generationTimeLimitSeconds);
    expect(serving[contract.endpoint.environment.serverJobQueueSize]).toBe('1');
  });

  test('every variable the job gets from the contract is one the compile program reads', () => {
    const contractNames = new Set(Object.values(contract.compileJob.environment));
    const libraryNames = Object.keys(job).filter(name => name.startsWith('NEURONX_'));
    expect(libraryNames.filter(name => !contractNames.has(name))).toEqual([]);
  });
});
