import { Aws, CfnMapping, Stack, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { NeuronxInstanceType } from './neuronx-instance-type';
import { throwIfProblems } from './private/problems';
import { DLC_ACCOUNTS, NEURONX_IMAGE_REGIONS, RegionNeeds, regionProblems } from './private/regions';
import { shellQuote } from './private/shell';

const MAPPING_ID = 'NeuronxDlcRegistryAccounts';

/**
 * What runs an image, for the check that the stack's region has it.
 */
export interface NeuronxImageUriOptions {
  /**
   * The EC2 instance type that runs the image (e.g. the compile job's): the stack's region must have it.
   *
   * @default - not checked
   */
  readonly ec2InstanceType?: NeuronxInstanceType;
  /**
   * The SageMaker hosting instance type that runs the image (e.g. the endpoint's): the stack's region must have it.
   *
   * @default - not checked
   */
  readonly sageMakerInstanceType?: NeuronxInstanceType;
}

/**
 * A pinned AWS Deep Learning Container image with the Neuron SDK and transformers-neuronx.
 *
 * The compile job and the endpoint must run the same one: compiled artifacts (NEFFs) load only under the compiler
 * version that produced them. The image is pulled from the AWS registry of the stack's region as it is: no Docker
 * build, no image push.
 */
export class NeuronxRuntime {
  /**
   * PyTorch 2.5.1, Neuron SDK 2.21.0, transformers-neuronx 0.13.322, TorchServe 0.11.0, SageMaker PyTorch inference
   * toolkit 2.0.21, Python 3.10, Ubuntu 22.04 (aws-neuron/deep-learning-containers tag 2.21.0,
   * `docker/pytorch/inference/2.5.1/Dockerfile.neuronx`). The default before `PYTORCH_2_7_0_SDK_2_25_0`: name it as
   * the `runtime` to keep serving artifacts compiled under it, which load only under it.
   */
  public static readonly PYTORCH_2_5_1_SDK_2_21_0 = new NeuronxRuntime(
    'pytorch-inference-neuronx', '2.5.1-neuronx-py310-sdk2.21.0-ubuntu22.04', '2.21.0');

  /**
   * PyTorch 2.7.0, Neuron SDK 2.25.0, transformers-neuronx 0.13.1216, TorchServe 0.11.0, SageMaker PyTorch inference
   * toolkit 2.0.25, Python 3.10, Ubuntu 22.04: the newest image with transformers-neuronx.
   *
   * What it carries: aws-neuron/deep-learning-containers tag 2.25.0 (commit b08f346, 2025-08-11),
   * `docker/pytorch/inference/2.7.0/Dockerfile.neuronx` (ARG NEURONX_TRANSFORMERS_VERSION=0.13.1216,
   * TORCHSERVE_VERSION=0.11.0, SM_TOOLKIT_VERSION=2.0.25). transformers-neuronx was removed from the image in Neuron
   * 2.26 (tag 2.26.0: `2.8.0-neuronx-py311-sdk2.26.0` lists no transformers-neuronx), so no later tag qualifies.
   *
   * Where SageMaker pulls it: aws/deep-learning-containers lists this tag among the SageMaker images of the DLC
   * registries (`available_images.md`, added in commit bc28879, 2025-07-31, "Update Neuron DLC images for 2.25.0
   * release"; still listed at commit e0ecedea, 2026-08-21, as `docs/src/data/pytorch-inference-neuronx/
   * 2.7-neuronx-sdk2.25.0.yml`, platform `sagemaker`), with the registry account per region in
   * `docs/reference/region_availability.md`. The regions this library allows (`knownRegions()`) are those the
   * SageMaker Python SDK serves the Neuron inference images in for Neuron SDK 2.24.1 and 2.26.0, either side of 2.25.0.
   */
  public static readonly PYTORCH_2_7_0_SDK_2_25_0 = new NeuronxRuntime(
    'pytorch-inference-neuronx', '2.7.0-neuronx-py310-sdk2.25.0-ubuntu22.04', '2.25.0');

  /**
   * The runtime this library is tested with.
   *
   * Changing it changes the artifact prefix of every compile that does not name its runtime, so an upgrade that
   * changes it compiles again (see the changelog).
   */
  public static readonly DEFAULT = NeuronxRuntime.PYTORCH_2_7_0_SDK_2_25_0;

  /**
   * Regions whose Deep Learning Containers registry serves the Neuron inference images (sagemaker-python-sdk
   * `image_uri_config/huggingface-neuronx.json`), each with its registry account known to this library.
   */
  public static knownRegions(): string[] {
    return [...NEURONX_IMAGE_REGIONS];
  }

  /**
   * @param repositoryName ECR repository in the Deep Learning Containers registry
   * @param tag image tag
   * @param neuronSdkVersion the Neuron SDK release the image carries (names the artifacts it compiles)
   */
  private constructor(
    public readonly repositoryName: string,
    public readonly tag: string,
    public readonly neuronSdkVersion: string,
  ) {}

  /**
   * The image URI in the registry of the stack's region.
   *
   * Fails at synth when the stack's region does not serve the image, or lacks the instance type given in `options`,
   * naming the regions that have it. In an environment-agnostic stack the same checks become a template rule,
   * which fails the deploy before any resource is created.
   */
  public imageUri(scope: Construct, options: NeuronxImageUriOptions = {}): string {
    const stack = Stack.of(scope);
    const account = this.registryAccount(scope, {
      image: this.toString(),
      ec2: options.ec2InstanceType && { instanceType: options.ec2InstanceType },
      sageMaker: options.sageMakerInstanceType && { instanceType: options.sageMakerInstanceType },
    });
    return `${account}.dkr.ecr.${stack.region}.${stack.urlSuffix}/${this.repositoryName}:${this.tag}`;
  }

  /** The ARN of the image's repository in the stack's region. */
  public repositoryArn(scope: Construct): string {
    const stack = Stack.of(scope);
    return stack.formatArn({
      service: 'ecr',
      account: this.registryAccount(scope),
      resource: 'repository',
      resourceName: this.repositoryName,
    });
  }

  /** Grants pulling this image (from its foreign registry) and nothing else. */
  public grantPull(scope: Construct, grantee: iam.IGrantable): iam.Grant {
    iam.Grant.addToPrincipal({
      grantee,
      actions: ['ecr:GetAuthorizationToken'],
      resourceArns: ['*'], // GetAuthorizationToken has no resource type.
    });
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer', 'ecr:BatchCheckLayerAvailability'],
      resourceArns: [this.repositoryArn(scope)],
    });
  }

  /**
   * The container command that runs `args` in this image.
   *
   * The image's entrypoint runs a command other than `serve` as
   * `subprocess.check_call(shlex.split(' '.join(argv)))`, so each word is quoted for shlex: the program receives
   * exactly `args`. (The entrypoint then waits on `tail -f /dev/null`; the compile job releases it, see
   * `runtime/compile`.)
   */
  public containerCommand(args: string[]): string[] {
    return args.map(shellQuote);
  }

  /** Identifies the image in artifact prefixes and manifests. */
  public toString(): string {
    return `${this.repositoryName}:${this.tag}`;
  }

  /** The registry account of the stack's region, once the region is known to have what `needs` names. */
  private registryAccount(scope: Construct, needs: RegionNeeds = { image: this.toString() }): string {
    const stack = Stack.of(scope);
    throwIfProblems(`${this} in '${scope.node.path}'`, regionProblems(scope, needs));
    if (!Token.isUnresolved(stack.region)) {
      return DLC_ACCOUNTS[stack.region];
    }
    // Environment-agnostic stack: resolve at deploy time from a mapping of every region that serves the image (the
    // stack's rule stops a deploy anywhere else before the lookup).
    const mapping = (stack.node.tryFindChild(MAPPING_ID) as CfnMapping | undefined)
      ?? new CfnMapping(stack, MAPPING_ID, {
        mapping: Object.fromEntries(NEURONX_IMAGE_REGIONS.map(region => [region, { account: DLC_ACCOUNTS[region] }])),
      });
    return mapping.findInMap(Aws.REGION, 'account');
  }
}
