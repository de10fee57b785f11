import { Aws, CfnMapping, Stack, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { shellQuote } from './private/shell';

// The AWS account of the Deep Learning Containers registry in each region with Neuron instances.
// Source: aws/deep-learning-containers docs/reference/region_availability.md and the sagemaker-python-sdk
// image_uri_config. aws-cdk-lib's own DLC_REPOSITORY_ACCOUNT fact knows only about 20 regions.
const DLC_DEFAULT_ACCOUNT = '763104351884';
const DLC_ACCOUNTS: { [region: string]: string } = {
  'us-east-1': DLC_DEFAULT_ACCOUNT,
  'us-east-2': DLC_DEFAULT_ACCOUNT,
  'us-west-1': DLC_DEFAULT_ACCOUNT,
  'us-west-2': DLC_DEFAULT_ACCOUNT,
  'ca-central-1': DLC_DEFAULT_ACCOUNT,
  'sa-east-1': DLC_DEFAULT_ACCOUNT,
  'eu-central-1': DLC_DEFAULT_ACCOUNT,
  'eu-north-1': DLC_DEFAULT_ACCOUNT,
  'eu-west-1': DLC_DEFAULT_ACCOUNT,
  'eu-west-2': DLC_DEFAULT_ACCOUNT,
  'eu-west-3': DLC_DEFAULT_ACCOUNT,
  'ap-northeast-1': DLC_DEFAULT_ACCOUNT,
  'ap-northeast-2': DLC_DEFAULT_ACCOUNT,
  'ap-northeast-3': DLC_DEFAULT_ACCOUNT,
  'ap-south-1': DLC_DEFAULT_ACCOUNT,
  'ap-southeast-1': DLC_DEFAULT_ACCOUNT,
  'ap-southeast-2': DLC_DEFAULT_ACCOUNT,
  'af-south-1': '626614931356',
  'ap-east-1': '871362719292',
  'ap-south-2': '772153158452',
  'ap-southeast-3': '907027046896',
  'ap-southeast-4': '457447274322',
  'ca-west-1': '204538143572',
  'eu-central-2': '380420809688',
  'eu-south-1': '692866216735',
  'eu-south-2': '503227376785',
  'il-central-1': '780543022126',
  'me-central-1': '914824155844',
  'me-south-1': '217643126080',
  'mx-central-1': '637423239942',
  'cn-north-1': '727897471807',
  'cn-northwest-1': '727897471807',
  'us-gov-west-1': '442386744353',
};
const MAPPING_ID = 'NeuronxDlcRegistryAccounts';

/**
 * A pinned AWS Deep Learning Container image with the Neuron SDK and transformers-neuronx.
 *
 * The compile job and the endpoint must run the same one: compiled artifacts (NEFFs) load only under the compiler
 * version that produced them. The image is pulled from the AWS registry of the stack's region as it is: no Docker
 * build, no image push.
 */
export class NeuronxRuntime {
  /**
   * PyTorch 2.5.1, Neuron SDK 2.21.0, transformers-neuronx 0.13, Python 3.10, Ubuntu 22.04.
   *
   * transformers-neuronx left the DLC images in Neuron 2.26; 2.21.0 is the newest release listed in the
   * aws-neuron/deep-learning-containers README with transformers-neuronx, torchserve and the SageMaker toolkit.
   */
  public static readonly PYTORCH_2_5_1_SDK_2_21_0 = new NeuronxRuntime(
    'pytorch-inference-neuronx', '2.5.1-neuronx-py310-sdk2.21.0-ubuntu22.04', '2.21.0');

  /** The runtime this library is tested with. */
  public static readonly DEFAULT = NeuronxRuntime.PYTORCH_2_5_1_SDK_2_21_0;

  /**
   * Regions this library knows the Deep Learning Containers registry account of.
   */
  public static knownRegions(): string[] {
    return Object.keys(DLC_ACCOUNTS);
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

  /** The image URI in the registry of the stack's region. */
  public imageUri(scope: Construct): string {
    const stack = Stack.of(scope);
    return `${this.registryAccount(scope)}.dkr.ecr.${stack.region}.${stack.urlSuffix}/${this.repositoryName}:${this.tag}`;
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

  private registryAccount(scope: Construct): string {
    const stack = Stack.of(scope);
    if (!Token.isUnresolved(stack.region)) {
      const account = DLC_ACCOUNTS[stack.region];
      if (!account) {
        throw new Error(`The Deep Learning Containers registry of region '${stack.region}' is not known to this library. Known regions: ${NeuronxRuntime.knownRegions().join(', ')}.`);
      }
      return account;
    }
    // Environment-agnostic stack: resolve at deploy time from a mapping of every known region.
    const mapping = (stack.node.tryFindChild(MAPPING_ID) as CfnMapping | undefined)
      ?? new CfnMapping(stack, MAPPING_ID, {
        mapping: Object.fromEntries(Object.entries(DLC_ACCOUNTS).map(([region, account]) => [region, { account }])),
      });
    return mapping.findInMap(Aws.REGION, 'account');
  }
}
