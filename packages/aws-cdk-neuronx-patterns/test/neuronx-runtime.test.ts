import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { NeuronxRuntime } from '../src';
import { flatten } from './fixtures';

const TAG = '2.5.1-neuronx-py310-sdk2.21.0-ubuntu22.04';

function stackIn(region?: string): Stack {
  return new Stack(new App(), 'S', region ? { env: { account: '123456789012', region } } : {});
}

describe('NeuronxRuntime', () => {
  test('the default is the pinned transformers-neuronx image of Neuron SDK 2.21.0', () => {
    expect(NeuronxRuntime.DEFAULT).toBe(NeuronxRuntime.PYTORCH_2_5_1_SDK_2_21_0);
    expect(NeuronxRuntime.DEFAULT.toString()).toBe(`pytorch-inference-neuronx:${TAG}`);
    expect(NeuronxRuntime.DEFAULT.neuronSdkVersion).toBe('2.21.0');
  });

  test.each([
    ['us-east-1', '763104351884'],
    ['ap-northeast-1', '763104351884'],
    ['ap-east-1', '871362719292'],
    ['me-south-1', '217643126080'],
    ['eu-south-2', '503227376785'],
  ])('in %s the image comes from the DLC registry account %s', (region, account) => {
    const stack = stackIn(region);
    expect(flatten(stack.resolve(NeuronxRuntime.DEFAULT.imageUri(stack))))
      .toBe(`${account}.dkr.ecr.${region}.\${AWS::URLSuffix}/pytorch-inference-neuronx:${TAG}`);
    expect(flatten(stack.resolve(NeuronxRuntime.DEFAULT.repositoryArn(stack))))
      .toBe(`arn:\${AWS::Partition}:ecr:${region}:${account}:repository/pytorch-inference-neuronx`);
  });

  test('an environment-agnostic stack looks the account up in one mapping of every known region', () => {
    const stack = stackIn();
    const uri = flatten(stack.resolve(NeuronxRuntime.DEFAULT.imageUri(stack)));
    NeuronxRuntime.DEFAULT.repositoryArn(stack); // a second use reuses the mapping
    expect(uri).toBe(`\${FindInMap:NeuronxDlcRegistryAccounts:\${AWS::Region}:account}.dkr.ecr.\${AWS::Region}.\${AWS::URLSuffix}/pytorch-inference-neuronx:${TAG}`);
    const mappings = Template.fromStack(stack).toJSON().Mappings;
    expect(Object.keys(mappings)).toEqual(['NeuronxDlcRegistryAccounts']);
    expect(mappings.NeuronxDlcRegistryAccounts['ap-east-1']).toEqual({ account: '871362719292' });
    expect(Object.keys(mappings.NeuronxDlcRegistryAccounts).sort()).toEqual(NeuronxRuntime.knownRegions().sort());
  });

  test('a region without a known registry fails at synth and lists the known ones', () => {
    const stack = stackIn('xx-nowhere-1');
    expect(() => NeuronxRuntime.DEFAULT.imageUri(stack)).toThrow(/registry of region 'xx-nowhere-1' is not known.*us-east-1/);
  });

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
