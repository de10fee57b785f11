import * as fs from 'fs';
import * as path from 'path';
import { CfnParameter, Stack } from 'aws-cdk-lib';
import { NeuronxInstanceFamily, NeuronxInstanceType, QuantDtype } from '../src';
import { CALM3_ARCHITECTURE, CALM3_PARAMETERS } from './fixtures';
import { checkPositiveInteger, throwIfProblems } from '../src/private/problems';
import {
  checkpointBytes, compileHostBytesNeeded, compileInstanceProblems, compileVolumeBytes, compileWorkDirBytes,
  cachedSequences, deviceBytesAvailable, deviceBytesNeeded, isSupportedTpDegree, kvCacheBytes, largestFittingBatchSize, ModelSizing,
  ROOT_VOLUME_ALLOWANCE_GIB, servingProblems,
  weightBytes, workersPerInstance, workingTpDegrees,
} from '../src/private/sizing';

const GIB = 1024 ** 3;
const MIB = 1024 ** 2;
const CALM3: ModelSizing = { parameterCount: CALM3_PARAMETERS, ...CALM3_ARCHITECTURE };
const { INF2_XLARGE, INF2_8XLARGE, INF2_24XLARGE, INF2_48XLARGE, TRN1_2XLARGE, TRN1_32XLARGE } = NeuronxInstanceType;
const BF16_4096 = { nPositions: 4096, batchSize: 1 };
const S8_1024 = { nPositions: 1024, batchSize: 1, quantDtype: QuantDtype.S8 };

describe('memory arithmetic (calm3-22b facts)', () => {
  test('bf16 weights are 2 bytes a parameter, int8 1 byte', () => {
    expect(weightBytes(CALM3)).toBe(45e9);
    expect(weightBytes(CALM3, QuantDtype.S8)).toBe(22.5e9);
    expect(checkpointBytes(CALM3)).toBe(45e9); // the download is bf16 whatever the storage type
  });

  test('KV cache is 1.125 MiB per token: 4.5 GiB at 4096 positions', () => {
    expect(kvCacheBytes(CALM3, 1, 1)).toBe(1.125 * MIB);
    expect(kvCacheBytes(CALM3, 4096, 1)).toBe(4.5 * GIB);
    expect(kvCacheBytes(CALM3, 4096, 2)).toBe(9 * GIB);
  });

  test('grouped-query attention shrinks the KV cache by heads / KV heads', () => {
    expect(kvCacheBytes({ ...CALM3, numKeyValueHeads: 8 }, 4096, 1)).toBe(0.75 * GIB);
  });

  test('without an architecture only the weights count', () => {
    expect(kvCacheBytes({ parameterCount: 22.5e9 }, 4096, 1)).toBe(0);
    expect(deviceBytesNeeded({ parameterCount: 22.5e9 }, { tpDegree: 2, ...BF16_4096 })).toBe(45e9);
  });

  test('a worker gets 90% of 16 GiB per NeuronCore', () => {
    expect(deviceBytesAvailable(INF2_24XLARGE, 2) / GIB).toBeCloseTo(28.8);
    expect(deviceBytesAvailable(INF2_24XLARGE, 4) / GIB).toBeCloseTo(57.6);
  });

  test('workers per instance is floor(cores / tpDegree)', () => {
    expect(workersPerInstance(INF2_24XLARGE, 4)).toBe(3);
    expect(workersPerInstance(INF2_24XLARGE, 8)).toBe(1);
    expect(workersPerInstance(TRN1_2XLARGE, 2)).toBe(1);
  });

  test('compiling holds the bf16 checkpoint, plus the int8 copy when quantizing', () => {
    expect(compileHostBytesNeeded(CALM3)).toBe(45e9);
    expect(compileHostBytesNeeded(CALM3, QuantDtype.S8)).toBe(67.5e9);
  });
});

describe('the compile instance\'s root volume', () => {
  // The rule as the compile job applies it (compile_job.py required_disk_bytes), read from runtime/contract.json.
  const diskSpace = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'runtime', 'contract.json'), 'utf-8')).compileJob.diskSpace;
  const jobRequires = (snapshotBytes: number, quantized: boolean) =>
    Math.trunc(snapshotBytes * (quantized ? diskSpace.factorQuantized : diskSpace.factorUnquantized) + diskSpace.marginGiB * GIB);

  test.each([undefined, QuantDtype.S8])('the work dir is what the job checks for, for the bf16 checkpoint (quantDtype %s)', (quantDtype) => {
    expect(compileWorkDirBytes(CALM3, quantDtype)).toBe(jobRequires(checkpointBytes(CALM3), quantDtype !== undefined));
  });

  test('the volume is the work dir plus one allowance for the image, the OS and logs (calm3: 67.5 GB or 90 GB + 10 GiB + 64 GiB)', () => {
    expect(ROOT_VOLUME_ALLOWANCE_GIB).toBe(64);
    expect(compileVolumeBytes(CALM3)).toBe(67.5e9 + 74 * GIB);
    expect(compileVolumeBytes(CALM3, QuantDtype.S8)).toBe(90e9 + 74 * GIB);
  });
});

describe('tensor-parallel degrees', () => {
  test.each([
    [NeuronxInstanceFamily.INF2, [1, 2, 4, 6, 8, 12, 24], [3, 5, 7]],
    [NeuronxInstanceFamily.TRN1, [1, 2, 8, 16, 32], [3, 4, 6, 12, 24]],
  ])('on %s the runtime supports %j and not %j', (family, supported, unsupported) => {
    for (const tp of supported) expect(isSupportedTpDegree(family, tp)).toBe(true);
    for (const tp of unsupported) expect(isSupportedTpDegree(family, tp)).toBe(false);
  });

  test('the degrees that work for calm3 bf16 on inf2.24xlarge are those that divide 48 and fit', () => {
    expect(workingTpDegrees(CALM3, INF2_24XLARGE, BF16_4096)).toEqual([4, 6, 8, 12]);
  });

  test('on trn1.32xlarge 32 is supported by the runtime but does not divide 48 heads', () => {
    expect(workingTpDegrees(CALM3, TRN1_32XLARGE, BF16_4096)).toEqual([8, 16]);
  });
});

describe('servingProblems', () => {
  test('the seed presets have no problem', () => {
    expect(servingProblems('o', CALM3, TRN1_2XLARGE, { tpDegree: 2, ...S8_1024 })).toEqual([]);
    expect(servingProblems('o', CALM3, INF2_24XLARGE, { tpDegree: 4, ...BF16_4096 })).toEqual([]);
  });

  test('a model that does not fit names the need, the offer and what would work', () => {
    const problems = servingProblems('compileOptions', CALM3, INF2_24XLARGE, { tpDegree: 2, ...BF16_4096 });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/compileOptions: the model needs 46\.4 GiB .*weights 41\.9 GiB \+ KV cache 4\.5 GiB for 4096 positions.*tpDegree 2 on ml\.inf2\.24xlarge gives 28\.8 GiB: use tpDegree 4 or 6 or 8 or 12/);
  });

  test('nothing fits: the message says to change instance, dtype or positions', () => {
    const problems = servingProblems('o', CALM3, INF2_8XLARGE, { tpDegree: 2, ...BF16_4096 });
    expect(problems.join('\n')).toMatch(/no tpDegree works on this instance: choose a larger instance type, int8 weights \(QuantDtype\.S8\) or fewer positions/);
  });

  // Every suggested value must itself be accepted (issue 23; the root's suggestions.test.ts applies each one).
  test('suggested tpDegrees fit the compile instance\'s NeuronCores too', () => {
    expect(servingProblems('o', CALM3, INF2_48XLARGE, { tpDegree: 5, ...BF16_4096 }, INF2_24XLARGE).join('\n'))
      .toMatch(/use tpDegree 4 or 6 or 8 or 12\./);
    expect(servingProblems('o', CALM3, INF2_24XLARGE, { tpDegree: 2, ...BF16_4096 }, INF2_8XLARGE)[0])
      .toMatch(/no tpDegree works on both ml\.inf2\.24xlarge and the compile instance inf2\.8xlarge \(2 NeuronCores\): compile on an instance with at least 4 NeuronCores/);
  });

  test('suggested tpDegrees are sized for the positions the nPositions suggestion allows', () => {
    const problems = servingProblems('o', CALM3, INF2_48XLARGE, { tpDegree: 4, nPositions: 100000, batchSize: 1 });
    expect(problems.join('\n')).toMatch(/o\.nPositions is 100000 but the model has 16384 position embeddings: use at most 16384\./);
    expect(problems.join('\n')).toMatch(/use tpDegree 6 or 8 or 12 or 16 or 24\./);
  });

  test('more degrees than cores', () => {
    expect(servingProblems('o', CALM3, INF2_8XLARGE, { tpDegree: 4, ...S8_1024 })[0])
      .toMatch(/o\.tpDegree is 4 but ml\.inf2\.8xlarge has 2 NeuronCores: use tpDegree 2/);
  });

  test('nPositions beyond the model\'s position embeddings', () => {
    expect(servingProblems('o', CALM3, INF2_48XLARGE, { tpDegree: 24, nPositions: 32768, batchSize: 1 }).join('\n'))
      .toMatch(/o\.nPositions is 32768 but the model has 16384 position embeddings: use at most 16384/);
  });

  test('too little host memory for every worker to load its copy', () => {
    // 10e9 int8 parameters on inf2.xlarge: 2 single-core workers x 9.3 GiB = 18.6 GiB > 16 GiB of host memory.
    const small: ModelSizing = { parameterCount: 10e9 };
    expect(servingProblems('o', small, INF2_XLARGE, { tpDegree: 1, nPositions: 128, batchSize: 1, quantDtype: QuantDtype.S8 }).join('\n'))
      .toMatch(/2 worker\(s\) on ml\.inf2\.xlarge need 18\.6 GiB of host memory .* but it has 16\.0 GiB/);
  });

  test('non-integers are reported as such before any arithmetic', () => {
    expect(servingProblems('o', CALM3, INF2_24XLARGE, { tpDegree: 1.5, nPositions: 0, batchSize: 1 })).toEqual([
      'o.tpDegree is 1.5: it must be a positive whole number.',
      'o.nPositions is 0: it must be a positive whole number.',
    ]);
  });
});

describe('batchSize: every compiled batch size keeps its KV cache', () => {
  test('batch 1 keeps one cache; a larger batch compiles batch 1 too and keeps 1 + batchSize', () => {
    expect(cachedSequences(1)).toBe(1);
    expect(cachedSequences(5)).toBe(6);
    expect(deviceBytesNeeded(CALM3, { tpDegree: 2, ...S8_1024, batchSize: 5 })).toBe(22.5e9 + 6 * 1.125 * GIB);
  });

  test('the presets\' batch sizes are the largest that fit: lowCost 5 (1024 positions, int8), highPerformance 2 (4096, bf16)', () => {
    expect(largestFittingBatchSize(CALM3, TRN1_2XLARGE, { tpDegree: 2, ...S8_1024 })).toBe(5);
    expect(largestFittingBatchSize(CALM3, INF2_24XLARGE, { tpDegree: 4, ...BF16_4096 })).toBe(2);
    expect(largestFittingBatchSize(CALM3, INF2_24XLARGE, { tpDegree: 4, ...BF16_4096, nPositions: 2048 })).toBe(5);
    expect(servingProblems('o', CALM3, TRN1_2XLARGE, { tpDegree: 2, ...S8_1024, batchSize: 5 })).toEqual([]);
    expect(servingProblems('o', CALM3, INF2_24XLARGE, { tpDegree: 4, ...BF16_4096, batchSize: 2 })).toEqual([]);
  });

  test('one more does not fit, and the message names batchSize and the one that does', () => {
    const problems = servingProblems('o', CALM3, INF2_24XLARGE, { tpDegree: 4, ...BF16_4096, batchSize: 3 });
    expect(problems).toEqual([
      'o.batchSize is 3: the model needs 59.9 GiB of accelerator memory per worker (weights 41.9 GiB + 4 KV caches of 4.5 GiB for 4096 positions: '
      + 'batch 3 and batch 1) but tpDegree 4 on ml.inf2.24xlarge gives 57.6 GiB: use batchSize 2 or less, fewer positions, or more NeuronCores per worker.',
    ]);
  });

  test('a batch size that is not a positive whole number is named', () => {
    expect(servingProblems('o', CALM3, INF2_24XLARGE, { tpDegree: 4, ...BF16_4096, batchSize: 0 }))
      .toEqual(['o.batchSize is 0: it must be a positive whole number.']);
  });
});

describe('compileInstanceProblems', () => {
  test('inf2.xlarge cannot hold a 22B bf16 checkpoint; the message lists instances that can', () => {
    const problems = compileInstanceProblems('compileInstanceType', CALM3, INF2_XLARGE, { tpDegree: 2, ...BF16_4096 });
    expect(problems[0]).toMatch(/compileInstanceType is inf2\.xlarge, whose 16\.0 GiB of host memory cannot hold the 41\.9 GiB the compile needs \(bf16 checkpoint\): use inf2\.8xlarge or/);
  });

  test('trn1.2xlarge (32 GiB) cannot compile calm3 int8 either (checkpoint plus int8 copy)', () => {
    expect(compileInstanceProblems('compileInstanceType', CALM3, TRN1_2XLARGE, { tpDegree: 2, ...S8_1024 })[0]).toMatch(/bf16 checkpoint plus int8 copy/);
  });

  test('inf2.8xlarge compiles the lowCost preset', () => {
    expect(compileInstanceProblems('compileInstanceType', CALM3, INF2_8XLARGE, { tpDegree: 2, ...S8_1024 })).toEqual([]);
  });
});

describe('checkPositiveInteger and throwIfProblems', () => {
  test.each([0, -2, 1.5, NaN])('%s is not a positive whole number', (value) => {
    expect(checkPositiveInteger('p', value)).toEqual([`p is ${value}: it must be a positive whole number.`]);
  });

  test('undefined (use the default) and positive integers pass', () => {
    expect(checkPositiveInteger('p', undefined)).toEqual([]);
    expect(checkPositiveInteger('p', 3)).toEqual([]);
  });

  test('throwIfProblems throws one error listing every problem', () => {
    expect(() => throwIfProblems('X', ['a.', 'b.'])).toThrow('X cannot work:\n- a.\n- b.');
    expect(() => throwIfProblems('X', [])).not.toThrow();
  });
});

test('a token (e.g. a CfnParameter) for a value that decides the artifacts is rejected, not checked as a number', () => {
  const stack = new Stack();
  const tp = new CfnParameter(stack, 'Tp', { type: 'Number' }).valueAsNumber;
  expect(checkPositiveInteger('compileOptions.tpDegree', tp))
    .toEqual(['compileOptions.tpDegree is a token (e.g. a CfnParameter): it decides what is compiled and must be a number known at synth.']);
});
