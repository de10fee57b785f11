import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { NeuronxImageUriOptions, NeuronxInstanceType, NeuronxRuntime } from '../src';
import { flatten } from './fixtures';
import { DLC_ACCOUNTS } from '../src/private/regions';

const TAG = '2.7.0-neuronx-py310-sdk2.25.0-ubuntu22.04';

function stackIn(region?: string): Stack {
  return new Stack(new App(), 'S', region ? { env: { account: '123456789012', region } } : {});
}

describe('NeuronxRuntime', () => {
  test('the default is the newest transformers-neuronx image, of Neuron SDK 2.25.0', () => {
    expect(NeuronxRuntime.DEFAULT).toBe(NeuronxRuntime.PYTORCH_2_7_0_SDK_2_25_0);
    expect(NeuronxRuntime.DEFAULT.toString()).toBe(`pytorch-inference-neuronx:${TAG}`);
    expect(NeuronxRuntime.DEFAULT.neuronSdkVersion).toBe('2.25.0');
  });

  test('the previous default stays selectable, for artifacts compiled under it', () => {
    expect(NeuronxRuntime.PYTORCH_2_5_1_SDK_2_21_0.toString())
      .toBe('pytorch-inference-neuronx:2.5.1-neuronx-py310-sdk2.21.0-ubuntu22.04');
    expect(NeuronxRuntime.PYTORCH_2_5_1_SDK_2_21_0.neuronSdkVersion).toBe('2.21.0');
  });

  test.each([
    ['us-east-1', '763104351884'],
    ['ap-northeast-1', '763104351884'],
    ['ap-south-2', '772153158452'],
    ['ap-southeast-4', '457447274322'],
    ['eu-south-2', '503227376785'],
  ])('in %s the image comes from the DLC registry account %s', (region, account) => {
    const stack = stackIn(region);
    expect(flatten(stack.resolve(NeuronxRuntime.DEFAULT.imageUri(stack))))
      .toBe(`${account}.dkr.ecr.${region}.\${AWS::URLSuffix}/pytorch-inference-neuronx:${TAG}`);
    expect(flatten(stack.resolve(NeuronxRuntime.DEFAULT.repositoryArn(stack))))
      .toBe(`arn:\${AWS::Partition}:ecr:${region}:${account}:repository/pytorch-inference-neuronx`);
  });

  test('the registry account table has ap-northeast-3 as AWS lists it (364406365360, not 763104351884)', () => {
    // aws/deep-learning-containers region_availability.md; sagemaker-python-sdk image_uri_config/pytorch.json.
    expect(DLC_ACCOUNTS['ap-northeast-3']).toBe('364406365360');
    expect(NeuronxRuntime.knownRegions().filter(region => !DLC_ACCOUNTS[region])).toEqual([]);
  });

  test('an environment-agnostic stack looks the account up in one mapping of the regions that serve the image', () => {
    const stack = stackIn();
    const uri = flatten(stack.resolve(NeuronxRuntime.DEFAULT.imageUri(stack)));
    NeuronxRuntime.DEFAULT.repositoryArn(stack); // a second use reuses the mapping
    expect(uri).toBe(`\${FindInMap:NeuronxDlcRegistryAccounts:\${AWS::Region}:account}.dkr.ecr.\${AWS::Region}.\${AWS::URLSuffix}/pytorch-inference-neuronx:${TAG}`);
    const mappings = Template.fromStack(stack).toJSON().Mappings;
    expect(Object.keys(mappings)).toEqual(['NeuronxDlcRegistryAccounts']);
    expect(mappings.NeuronxDlcRegistryAccounts['ap-south-2']).toEqual({ account: '772153158452' });
    expect(Object.keys(mappings.NeuronxDlcRegistryAccounts).sort()).toEqual(NeuronxRuntime.knownRegions().sort());
  });
});

describe('NeuronxRuntime: regions without the image or the instance type fail at synth', () => {
  const IMAGE_REGIONS = 'ap-northeast-1, ap-south-1, ap-south-2, ap-southeast-1, ap-southeast-2, ap-southeast-4, ap-southeast-5, '
    + 'ap-southeast-7, ca-west-1, cn-north-1, cn-northwest-1, eu-central-1, eu-central-2, eu-south-2, eu-west-1, eu-west-3, '
    + 'il-central-1, mx-central-1, sa-east-1, us-east-1, us-east-2, us-west-2';
  const INF2_REGIONS = 'ap-northeast-1, ap-south-1, ap-southeast-1, eu-central-1, eu-west-1, us-east-1, us-east-2, us-west-2';
  const TRN1_REGIONS = 'us-east-1, us-east-2, us-west-2';

  function imageUriError(region: string, options: NeuronxImageUriOptions = {}, context: Record<string, unknown> = {}): string {
    const stack = new Stack(new App({ context }), 'S', { env: { account: '123456789012', region } });
    try {
      NeuronxRuntime.DEFAULT.imageUri(stack, options);
    } catch (error) {
      return (error as Error).message;
    }
    throw new Error(`expected imageUri to fail in ${region}`);
  }

  test('af-south-1 has no Neuron image: the error names the region, the image and every region that has it', () => {
    expect(imageUriError('af-south-1')).toContain('Region \'af-south-1\' has no AWS Deep Learning Container registry serving the Neuron image '
      + `pytorch-inference-neuronx:${TAG}: deploy the stack to one of ${IMAGE_REGIONS}.`);
    expect(() => NeuronxRuntime.DEFAULT.grantPull(stackIn('af-south-1'), new iam.AnyPrincipal())).toThrow(/Region 'af-south-1' has no AWS Deep Learning Container registry/);
  });

  test('ap-northeast-3 has a registry but no Neuron image', () => {
    expect(imageUriError('ap-northeast-3')).toContain('Region \'ap-northeast-3\' has no AWS Deep Learning Container registry serving the Neuron image');
  });

  test('a region with the image but no EC2 inf2 fails for the compile instance, naming the type and the regions that have it', () => {
    expect(imageUriError('ap-south-2', { ec2InstanceType: NeuronxInstanceType.INF2_8XLARGE })).toContain(
      `Region 'ap-south-2' has no EC2 inf2.8xlarge instances: deploy the stack to one of ${INF2_REGIONS}, or choose another instance type.`);
  });

  test('a region with inf2 but no SageMaker trn1 fails for the serving instance', () => {
    expect(imageUriError('ap-northeast-1', { sageMakerInstanceType: NeuronxInstanceType.TRN1_2XLARGE })).toContain(
      `Region 'ap-northeast-1' has no SageMaker ml.trn1.2xlarge instances: deploy the stack to one of ${TRN1_REGIONS}, or choose another instance type.`);
  });

  test('every missing part is reported at once', () => {
    const message = imageUriError('af-south-1', { ec2InstanceType: NeuronxInstanceType.INF2_24XLARGE, sageMakerInstanceType: NeuronxInstanceType.TRN1_2XLARGE });
    expect(message).toMatch(new RegExp(`^pytorch-inference-neuronx:${TAG} in 'S' cannot work:\n`));
    expect(message.split('\n- ')).toHaveLength(4);
    expect(message).toContain('has no EC2 inf2.24xlarge instances');
    expect(message).toContain('has no SageMaker ml.trn1.2xlarge instances');
  });

  test.each([
    ['us-east-1', NeuronxInstanceType.TRN1_32XLARGE, NeuronxInstanceType.INF2_48XLARGE],
    ['us-west-2', NeuronxInstanceType.INF2_8XLARGE, NeuronxInstanceType.TRN1_2XLARGE],
    ['ap-northeast-1', NeuronxInstanceType.INF2_8XLARGE, NeuronxInstanceType.INF2_24XLARGE],
  ])('%s has the image and both instance types (EC2 %s, SageMaker %s)', (region, ec2InstanceType, sageMakerInstanceType) => {
    const stack = stackIn(region);
    expect(() => NeuronxRuntime.DEFAULT.imageUri(stack, { ec2InstanceType, sageMakerInstanceType })).not.toThrow();
    expect(Template.fromStack(stack).toJSON().Rules.NeuronxRegions).toBeUndefined();
  });

  test('a region allowed by context passes the instance checks, not the image check', () => {
    const context = { 'aws-cdk-neuronx-patterns:allowRegions': ['ap-northeast-1', 'af-south-1'] };
    const stack = new Stack(new App({ context }), 'S', { env: { account: '123456789012', region: 'ap-northeast-1' } });
    expect(() => NeuronxRuntime.DEFAULT.imageUri(stack, { sageMakerInstanceType: NeuronxInstanceType.TRN1_2XLARGE })).not.toThrow();
    expect(imageUriError('af-south-1', { ec2InstanceType: NeuronxInstanceType.INF2_8XLARGE }, context).split('\n- ')).toHaveLength(2);
    expect(imageUriError('ap-northeast-1', { sageMakerInstanceType: NeuronxInstanceType.TRN1_2XLARGE },
      { 'aws-cdk-neuronx-patterns:allowRegions': 'eu-west-1, sa-east-1' })).toContain('one of us-east-1, us-east-2, us-west-2, eu-west-1, sa-east-1,');
  });

  test.each([
    ['a number', 42, '42'],
    ['a list with a number', ['eu-north-1', 7], '["eu-north-1",7]'],
    ['an object', { region: 'eu-north-1' }, '{"region":"eu-north-1"}'],
    ['a string that is not region names', 'eu-north-1;us-west-1', '"eu-north-1;us-west-1"'],
  ])('an allowRegions context value that is %s fails at synth, naming the key, the value and the forms that work', (_what, value, shown) => {
    const message = imageUriError('us-east-1', { ec2InstanceType: NeuronxInstanceType.INF2_8XLARGE },
      { 'aws-cdk-neuronx-patterns:allowRegions': value });
    expect(message).toBe(`The CDK context value 'aws-cdk-neuronx-patterns:allowRegions' is ${shown}: give region names, as a list `
      + '(cdk.json: ["ap-northeast-3", "eu-north-1"]) or one comma-separated string (-c aws-cdk-neuronx-patterns:allowRegions=ap-northeast-3,eu-north-1).');
  });

  test('an environment-agnostic stack gets one rule that fails the deploy with the same sentences, before any resource', () => {
    const stack = stackIn();
    NeuronxRuntime.DEFAULT.imageUri(stack, { ec2InstanceType: NeuronxInstanceType.INF2_8XLARGE });
    NeuronxRuntime.DEFAULT.imageUri(stack, { sageMakerInstanceType: NeuronxInstanceType.TRN1_2XLARGE });
    NeuronxRuntime.DEFAULT.imageUri(stack, { ec2InstanceType: NeuronxInstanceType.INF2_8XLARGE }); // nothing new
    NeuronxRuntime.DEFAULT.grantPull(stack, new iam.Role(stack, 'Role', { assumedBy: new iam.AnyPrincipal() }));
    const rules = Template.fromStack(stack).toJSON().Rules;
    expect(Object.keys(rules).sort()).toEqual(['CheckBootstrapVersion', 'NeuronxRegions']);
    const contains = (regions: string) => ({ 'Fn::Contains': [regions.split(', '), { Ref: 'AWS::Region' }] });
    expect(rules.NeuronxRegions.Assertions).toEqual([
      {
        Assert: contains(IMAGE_REGIONS),
        AssertDescription: `The stack's region has no AWS Deep Learning Container registry serving the Neuron image pytorch-inference-neuronx:${TAG}: `
          + `deploy the stack to one of ${IMAGE_REGIONS}.`,
      },
      {
        Assert: contains(INF2_REGIONS),
        AssertDescription: expect.stringMatching(new RegExp(`^The stack's region has no EC2 inf2\\.8xlarge instances: deploy the stack to one of ${INF2_REGIONS}, `)),
      },
      {
        Assert: contains(TRN1_REGIONS),
        AssertDescription: expect.stringMatching(new RegExp(`^The stack's region has no SageMaker ml\\.trn1\\.2xlarge instances: deploy the stack to one of ${TRN1_REGIONS}, `)),
      },
    ]);
  });

});

describe('NeuronxRuntime: pulling and running the image', () => {
  test('grantPull allows pulling that one repository, plus the token that has no resource', () => {
    const stack = stackIn('us-east-1');
    const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('sagemaker.amazonaws.com') });
    NeuronxRuntime.DEFAULT.grantPull(stack, role);
    const statements = stack.resolve((role.node.findChild('DefaultPolicy') as iam.Policy).document.toJSON()).Statement;
    expect(statements).toHaveLength(2);
    expect(statements[0]).toEqual({ Action: 'ecr:GetAuthorizationToken', Effect: 'Allow', Resource: '*' });
    expect(statements[1].Action).toEqual(['ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer', 'ecr:BatchCheckLayerAvailability']);
    expect(flatten(statements[1].Resource)).toBe('arn:${AWS::Partition}:ecr:us-east-1:763104351884:repository/pytorch-inference-neuronx');
  });

  test('containerCommand quotes each word so that shlex gives the program exactly its arguments', () => {
    expect(NeuronxRuntime.DEFAULT.containerCommand(['bash', '-c', 'echo "a b" && ls']))
      .toEqual(['bash', '-c', '\'echo "a b" && ls\'']);
    expect(NeuronxRuntime.DEFAULT.containerCommand(['echo', "it's", ''])).toEqual(['echo', '\'it\'"\'"\'s\'', "''"]);
  });
});
