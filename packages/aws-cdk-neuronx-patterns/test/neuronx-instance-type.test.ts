import { NeuronxInstanceFamily, NeuronxInstanceType } from '../src';

describe('NeuronxInstanceType', () => {
  // aws-neuron-sdk inf2-arch / trn1-arch: 2 NeuronCores and 32 GiB of device memory per chip.
  test.each([
    [NeuronxInstanceType.INF2_XLARGE, 'inf2.xlarge', NeuronxInstanceFamily.INF2, 1, 2, 4, 16, 32],
    [NeuronxInstanceType.INF2_8XLARGE, 'inf2.8xlarge', NeuronxInstanceFamily.INF2, 1, 2, 32, 128, 32],
    [NeuronxInstanceType.INF2_24XLARGE, 'inf2.24xlarge', NeuronxInstanceFamily.INF2, 6, 12, 96, 384, 192],
    [NeuronxInstanceType.INF2_48XLARGE, 'inf2.48xlarge', NeuronxInstanceFamily.INF2, 12, 24, 192, 768, 384],
    [NeuronxInstanceType.TRN1_2XLARGE, 'trn1.2xlarge', NeuronxInstanceFamily.TRN1, 1, 2, 8, 32, 32],
    [NeuronxInstanceType.TRN1_32XLARGE, 'trn1.32xlarge', NeuronxInstanceFamily.TRN1, 16, 32, 128, 512, 512],
  ])('%s has the documented chips, cores, vCPUs and memory', (type, name, family, chips, cores, vcpus, hostGiB, deviceGiB) => {
    expect(type.instanceTypeName).toBe(name);
    expect(type.family).toBe(family);
    expect(type.chips).toBe(chips);
    expect(type.neuronCores).toBe(cores);
    expect(type.vcpus).toBe(vcpus);
    expect(type.memory.toGibibytes()).toBe(hostGiB);
    expect(type.acceleratorMemory.toGibibytes()).toBe(deviceGiB);
    expect(type.acceleratorMemoryPerCore.toGibibytes()).toBe(16);
    expect(type.ec2InstanceType.toString()).toBe(name);
    expect(type.toString()).toBe(`ml.${name}`);
  });

  test('device paths are exactly /dev/neuron0 to /dev/neuron{chips-1}', () => {
    expect(NeuronxInstanceType.INF2_8XLARGE.devicePaths).toEqual(['/dev/neuron0']);
    expect(NeuronxInstanceType.INF2_24XLARGE.devicePaths).toEqual(
      ['/dev/neuron0', '/dev/neuron1', '/dev/neuron2', '/dev/neuron3', '/dev/neuron4', '/dev/neuron5']);
    expect(NeuronxInstanceType.TRN1_32XLARGE.devicePaths).toHaveLength(16);
    expect(NeuronxInstanceType.TRN1_32XLARGE.devicePaths[15]).toBe('/dev/neuron15');
  });

  test('only inf2 accepts a SageMaker volume size (trn1 has local NVMe)', () => {
    for (const type of NeuronxInstanceType.all()) {
      expect(type.volumeSizeSupported).toBe(type.family === NeuronxInstanceFamily.INF2);
    }
  });

  test('of() finds a type by its EC2 or SageMaker name', () => {
    expect(NeuronxInstanceType.of('inf2.24xlarge')).toBe(NeuronxInstanceType.INF2_24XLARGE);
    expect(NeuronxInstanceType.of('ml.trn1.2xlarge')).toBe(NeuronxInstanceType.TRN1_2XLARGE);
  });

  test('of() names the unknown type and lists the known ones', () => {
    expect(() => NeuronxInstanceType.of('inf1.xlarge')).toThrow(/Unknown Neuron instance type 'inf1.xlarge'.*inf2.xlarge.*trn1.32xlarge/);
  });

  test('all() lists every type once', () => {
    const names = NeuronxInstanceType.all().map(t => t.instanceTypeName);
    expect(new Set(names).size).toBe(6);
  });
});
