import { Size } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';

/**
 * The Neuron accelerator family of an instance type: what the compiler targets (`neuronx-cc --target`).
 */
export enum NeuronxInstanceFamily {
  /** AWS Inferentia2. */
  INF2 = 'inf2',
  /** AWS Trainium. */
  TRN1 = 'trn1',
}

/** Sizes of one Neuron instance type. */
interface NeuronxInstanceSpec {
  readonly family: NeuronxInstanceFamily;
  readonly size: string;
  readonly chips: number;
  readonly vcpus: number;
  readonly hostMemoryGiB: number;
}

// Each Inferentia2 or Trainium chip has 2 NeuronCore-v2 and 32 GiB of device memory (16 GiB per core).
// Source: aws-neuron-sdk docs, "Inf2 Architecture" and "Trn1 Architecture".
const NEURON_CORES_PER_CHIP = 2;
const DEVICE_MEMORY_GIB_PER_CHIP = 32;

/**
 * An EC2 / SageMaker instance type with AWS Neuron accelerators, and the facts the library sizes models with.
 *
 * Figures from the aws-neuron-sdk architecture pages (inf2-arch, trn1-arch).
 */
export class NeuronxInstanceType {
  /** inf2.xlarge: 1 Inferentia2 chip, 2 NeuronCores, 4 vCPUs, 16 GiB host memory. */
  public static readonly INF2_XLARGE = new NeuronxInstanceType({ family: NeuronxInstanceFamily.INF2, size: 'xlarge', chips: 1, vcpus: 4, hostMemoryGiB: 16 });
  /** inf2.8xlarge: 1 Inferentia2 chip, 2 NeuronCores, 32 vCPUs, 128 GiB host memory. */
  public static readonly INF2_8XLARGE = new NeuronxInstanceType({ family: NeuronxInstanceFamily.INF2, size: '8xlarge', chips: 1, vcpus: 32, hostMemoryGiB: 128 });
  /** inf2.24xlarge: 6 Inferentia2 chips, 12 NeuronCores, 96 vCPUs, 384 GiB host memory. */
  public static readonly INF2_24XLARGE = new NeuronxInstanceType({ family: NeuronxInstanceFamily.INF2, size: '24xlarge', chips: 6, vcpus: 96, hostMemoryGiB: 384 });
  /** inf2.48xlarge: 12 Inferentia2 chips, 24 NeuronCores, 192 vCPUs, 768 GiB host memory. */
  public static readonly INF2_48XLARGE = new NeuronxInstanceType({ family: NeuronxInstanceFamily.INF2, size: '48xlarge', chips: 12, vcpus: 192, hostMemoryGiB: 768 });
  /** trn1.2xlarge: 1 Trainium chip, 2 NeuronCores, 8 vCPUs, 32 GiB host memory. */
  public static readonly TRN1_2XLARGE = new NeuronxInstanceType({ family: NeuronxInstanceFamily.TRN1, size: '2xlarge', chips: 1, vcpus: 8, hostMemoryGiB: 32 });
  /** trn1.32xlarge: 16 Trainium chips, 32 NeuronCores, 128 vCPUs, 512 GiB host memory. */
  public static readonly TRN1_32XLARGE = new NeuronxInstanceType({ family: NeuronxInstanceFamily.TRN1, size: '32xlarge', chips: 16, vcpus: 128, hostMemoryGiB: 512 });

  /** Every instance type this library knows, smallest first within a family. */
  public static all(): NeuronxInstanceType[] {
    return [
      NeuronxInstanceType.INF2_XLARGE, NeuronxInstanceType.INF2_8XLARGE, NeuronxInstanceType.INF2_24XLARGE,
      NeuronxInstanceType.INF2_48XLARGE, NeuronxInstanceType.TRN1_2XLARGE, NeuronxInstanceType.TRN1_32XLARGE,
    ];
  }

  /**
   * Look up a known instance type by its EC2 (`inf2.24xlarge`) or SageMaker (`ml.inf2.24xlarge`) name.
   */
  public static of(name: string): NeuronxInstanceType {
    const ec2Name = name.startsWith('ml.') ? name.slice(3) : name;
    const found = NeuronxInstanceType.all().find(t => t.instanceTypeName === ec2Name);
    if (!found) {
      const known = NeuronxInstanceType.all().map(t => t.instanceTypeName).join(', ');
      throw new Error(`Unknown Neuron instance type '${name}'. Use one of: ${known}.`);
    }
    return found;
  }

  /** The accelerator family (compiler target). */
  public readonly family: NeuronxInstanceFamily;
  /** The EC2 name, e.g. `inf2.24xlarge`. */
  public readonly instanceTypeName: string;
  /** Number of Inferentia2 or Trainium chips (= `/dev/neuronN` devices). */
  public readonly chips: number;
  /** Number of NeuronCore-v2. */
  public readonly neuronCores: number;
  /** Number of vCPUs. */
  public readonly vcpus: number;
  /** Host (instance) memory. */
  public readonly memory: Size;
  /** Accelerator (device) memory, all chips together. */
  public readonly acceleratorMemory: Size;

  private constructor(spec: NeuronxInstanceSpec) {
    this.family = spec.family;
    this.instanceTypeName = `${spec.family}.${spec.size}`;
    this.chips = spec.chips;
    this.neuronCores = spec.chips * NEURON_CORES_PER_CHIP;
    this.vcpus = spec.vcpus;
    this.memory = Size.gibibytes(spec.hostMemoryGiB);
    this.acceleratorMemory = Size.gibibytes(spec.chips * DEVICE_MEMORY_GIB_PER_CHIP);
  }

  /** Accelerator memory of one NeuronCore. */
  public get acceleratorMemoryPerCore(): Size {
    return Size.gibibytes(this.acceleratorMemory.toGibibytes() / this.neuronCores);
  }

  /** The EC2 instance type, for the compile worker. */
  public get ec2InstanceType(): ec2.InstanceType {
    return new ec2.InstanceType(this.instanceTypeName);
  }

  /** The device paths the Neuron driver creates on this instance: `/dev/neuron0` ... `/dev/neuron{chips-1}`. */
  public get devicePaths(): string[] {
    return Array.from({ length: this.chips }, (_, i) => `/dev/neuron${i}`);
  }

  /**
   * Whether a SageMaker production variant on this instance accepts `VolumeSizeInGB`.
   *
   * trn1 has local NVMe storage and SageMaker rejects a volume size for it; inf2 accepts one
   * (sagemaker-python-sdk `volume_size_supported()`).
   */
  public get volumeSizeSupported(): boolean {
    return this.family === NeuronxInstanceFamily.INF2;
  }

  /** The SageMaker hosting name, e.g. `ml.inf2.24xlarge`. */
  public toString(): string {
    return `ml.${this.instanceTypeName}`;
  }
}
