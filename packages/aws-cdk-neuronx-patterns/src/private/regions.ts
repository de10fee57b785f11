import { Aws, CfnRule, Fn, Stack, Token } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { NeuronxInstanceFamily, NeuronxInstanceType } from '../neuronx-instance-type';

/**
 * Where the library's parts exist: the Deep Learning Container (DLC) registries, the Neuron images in them, and the
 * Neuron instance families on EC2 (the compile job) and on SageMaker hosting (the endpoint). A stack in a region
 * that lacks one of them fails at synth; an environment-agnostic stack gets one template rule that fails the deploy
 * before any resource is created (CloudFormation evaluates `Rules` "before creating or updating any resources":
 * AWS CloudFormation User Guide, "CloudFormation template Rules syntax").
 */

/**
 * The AWS account of the DLC registry in each region.
 * Source: aws/deep-learning-containers `docs/reference/region_availability.md` (the "Deep Learning Containers"
 * table). It agrees with aws/sagemaker-python-sdk `image_uri_config/pytorch.json` for every region both list (among
 * them ap-northeast-3 = 364406365360, not 763104351884); us-gov-west-1 is from pytorch.json only.
 */
export const DLC_ACCOUNTS: { readonly [region: string]: string } = {
  'us-east-1': '763104351884',
  'us-east-2': '763104351884',
  'us-west-1': '763104351884',
  'us-west-2': '763104351884',
  'af-south-1': '626614931356',
  'ap-east-1': '871362719292',
  'ap-east-2': '975050140332',
  'ap-northeast-1': '763104351884',
  'ap-northeast-2': '763104351884',
  'ap-northeast-3': '364406365360',
  'ap-south-1': '763104351884',
  'ap-south-2': '772153158452',
  'ap-southeast-1': '763104351884',
  'ap-southeast-2': '763104351884',
  'ap-southeast-3': '907027046896',
  'ap-southeast-4': '457447274322',
  'ap-southeast-5': '550225433462',
  'ap-southeast-6': '633930458069',
  'ap-southeast-7': '590183813437',
  'ca-central-1': '763104351884',
  'ca-west-1': '204538143572',
  'eu-central-1': '763104351884',
  'eu-central-2': '380420809688',
  'eu-north-1': '763104351884',
  'eu-south-1': '692866216735',
  'eu-south-2': '503227376785',
  'eu-west-1': '763104351884',
  'eu-west-2': '763104351884',
  'eu-west-3': '763104351884',
  'il-central-1': '780543022126',
  'me-central-1': '914824155844',
  'me-south-1': '217643126080',
  'mx-central-1': '637423239942',
  'sa-east-1': '763104351884',
  'cn-north-1': '727897471807',
  'cn-northwest-1': '727897471807',
  'us-gov-west-1': '442386744353',
};

/**
 * Regions whose DLC registry serves the Neuron (neuronx) inference images.
 * Source: aws/sagemaker-python-sdk `sagemaker-core/src/sagemaker/core/image_uri_config/huggingface-neuronx.json`,
 * the `huggingface-pytorch-inference-neuronx` entries for Neuron SDK 2.20.0, 2.24.1 and 2.26.0 (the default image is
 * SDK 2.25.0, the older one 2.21.0), which list the same 24 regions. Narrowed, where the sources disagree: `djl-neuronx.json` 0.29.0
 * (Neuron SDK 2.19.1) lists more (eu-north-1, eu-west-2 and isolated regions), and the two GovCloud regions are not
 * in the DLC registry table above (region_availability.md), so neither is here.
 */
export const NEURONX_IMAGE_REGIONS: readonly string[] = [
  'ap-northeast-1', 'ap-south-1', 'ap-south-2', 'ap-southeast-1', 'ap-southeast-2', 'ap-southeast-4', 'ap-southeast-5',
  'ap-southeast-7', 'ca-west-1', 'cn-north-1', 'cn-northwest-1', 'eu-central-1', 'eu-central-2', 'eu-south-2',
  'eu-west-1', 'eu-west-3', 'il-central-1', 'mx-central-1', 'sa-east-1', 'us-east-1', 'us-east-2', 'us-west-2',
];

/**
 * Regions with each Neuron family on EC2 (all four inf2 sizes, both trn1 sizes).
 * Source: the AWS Price List's EC2 instance types per region, as aws-cloudformation/cfn-lint shipped them in
 * `src/cfnlint/data/ExtendedSpecs/<region>/05_pricing_property_values.json` (commit ede46a94, 2023-12-14: the last
 * release whose lists differ by region; later ones list every type in every region). Every region here also serves
 * the images. AWS may have added regions since: a region checked with
 * `aws ec2 describe-instance-type-offerings --region <region> --filters Name=instance-type,Values=inf2.*,trn1.*`
 * can be allowed with the ALLOW_REGIONS_CONTEXT context value.
 */
const EC2_REGIONS: Record<NeuronxInstanceFamily, readonly string[]> = {
  [NeuronxInstanceFamily.INF2]: [
    'ap-northeast-1', 'ap-south-1', 'ap-southeast-1', 'eu-central-1', 'eu-west-1', 'us-east-1', 'us-east-2', 'us-west-2',
  ],
  [NeuronxInstanceFamily.TRN1]: ['us-east-1', 'us-east-2', 'us-west-2'],
};

/**
 * Regions with each Neuron family on SageMaker hosting (`ml.inf2.*`, `ml.trn1.*`). No source found here lists
 * SageMaker's instance types per region; SageMaker hosts on EC2 instances of the region, so it is the narrower of
 * the EC2 table above and the regions the SageMaker Python SDK serves the Neuron inference images in (above).
 */
const servingImage = (regions: readonly string[]) => regions.filter(r => NEURONX_IMAGE_REGIONS.includes(r));
const SAGEMAKER_REGIONS: Record<NeuronxInstanceFamily, readonly string[]> = {
  [NeuronxInstanceFamily.INF2]: servingImage(EC2_REGIONS[NeuronxInstanceFamily.INF2]),
  [NeuronxInstanceFamily.TRN1]: servingImage(EC2_REGIONS[NeuronxInstanceFamily.TRN1]),
};

/**
 * CDK context: regions (a list, or a comma-separated string) in which the instance checks are waived, for a region
 * where AWS has added the family after the tables above were made. The image check stays: the image must exist there.
 */
export const ALLOW_REGIONS_CONTEXT = 'aws-cdk-neuronx-patterns:allowRegions';

const RULE_ID = 'NeuronxRegions';

/** What must exist in the stack's region for a construct to deploy. */
export interface RegionNeeds {
  /** The image, by name (`repository:tag`). */
  readonly image: string;
  /** An EC2 instance type that runs it, and the prop that chose it. */
  readonly ec2?: InstanceNeed;
  /** A SageMaker hosting instance type that runs it, and the prop that chose it. */
  readonly sageMaker?: InstanceNeed;
}

/** An instance type a construct runs the image on, and the prop that chose it (named in the message). */
export interface InstanceNeed {
  readonly instanceType: NeuronxInstanceType;
  readonly prop?: string;
}

/** One thing the region must have: the regions that have it and the sentence that says so. */
interface Requirement {
  readonly key: string;
  readonly regions: readonly string[];
  describe(region: string): string;
}

/**
 * Every reason the stack's region cannot run `needs`, as sentences naming the region, what it lacks and the regions
 * that have it. For an environment-agnostic stack: none, and the stack's rule asserts the same at deploy time.
 */
export function regionProblems(scope: Construct, needs: RegionNeeds): string[] {
  const stack = Stack.of(scope);
  const requirements = requirementsOf(scope, needs);
  if (Token.isUnresolved(stack.region)) {
    addAssertions(stack, requirements);
    return [];
  }
  return requirements.filter(r => !r.regions.includes(stack.region)).map(r => r.describe(`Region '${stack.region}'`));
}

function requirementsOf(scope: Construct, needs: RegionNeeds): Requirement[] {
  const allowed = allowedRegions(scope);
  const requirements: Requirement[] = [{
    key: `image ${needs.image}`,
    regions: NEURONX_IMAGE_REGIONS,
    describe: region => `${region} has no AWS Deep Learning Container registry serving the Neuron image ${needs.image}: `
      + `deploy the stack to one of ${NEURONX_IMAGE_REGIONS.join(', ')}.`,
  }];
  const instance = (service: string, tables: Record<NeuronxInstanceFamily, readonly string[]>,
    need: InstanceNeed | undefined, name: (t: NeuronxInstanceType) => string) => {
    if (!need) return;
    const regions = [...new Set([...tables[need.instanceType.family], ...allowed])];
    requirements.push({
      key: `${service} ${name(need.instanceType)}`,
      regions,
      describe: region => `${region} has no ${service} ${name(need.instanceType)} instances${need.prop ? ` (${need.prop})` : ''}: deploy the stack to one of `
        + `${regions.join(', ')}, or choose another instance type. If AWS has added ${need.instanceType.family} there since, `
        + `allow the region with the CDK context value '${ALLOW_REGIONS_CONTEXT}'.`,
    });
  };
  instance('EC2', EC2_REGIONS, needs.ec2, t => t.instanceTypeName);
  instance('SageMaker', SAGEMAKER_REGIONS, needs.sageMaker, t => t.toString());
  return requirements;
}

// A region name: 'us-east-1', 'ap-southeast-7', 'us-gov-west-1', 'cn-north-1'.
const REGION_NAME = /^[a-z]{2}(-[a-z]+)+-\d+$/;

/** The context value's regions; a value of another form fails, naming the key, the value and the forms that work. */
function allowedRegions(scope: Construct): string[] {
  const value: unknown = scope.node.tryGetContext(ALLOW_REGIONS_CONTEXT);
  if (value === undefined) return [];
  const list: unknown[] = typeof value === 'string' ? value.split(',').map(r => r.trim()).filter(r => r !== '') : Array.isArray(value) ? value : [value];
  if (list.some(r => typeof r !== 'string' || !REGION_NAME.test(r))) {
    throw new Error(`The CDK context value '${ALLOW_REGIONS_CONTEXT}' is ${JSON.stringify(value)}: give region names, as a list `
      + '(cdk.json: ["ap-northeast-3", "eu-north-1"]) or one comma-separated string (-c '
      + `${ALLOW_REGIONS_CONTEXT}=ap-northeast-3,eu-north-1).`);
  }
  return list as string[];
}

/** The stack's one rule: one assertion per requirement, however many constructs need it. */
class RegionsRule extends CfnRule {
  /** The requirement keys asserted so far. */
  private readonly asserted = new Set<string>();

  public assert(requirement: Requirement): void {
    if (this.asserted.has(requirement.key)) return;
    this.asserted.add(requirement.key);
    this.addAssertion(Fn.conditionContains([...requirement.regions], Aws.REGION), requirement.describe('The stack\'s region'));
  }
}

function addAssertions(stack: Stack, requirements: Requirement[]): void {
  const rule = (stack.node.tryFindChild(RULE_ID) as RegionsRule | undefined) ?? new RegionsRule(stack, RULE_ID);
  requirements.forEach(requirement => rule.assert(requirement));
}
