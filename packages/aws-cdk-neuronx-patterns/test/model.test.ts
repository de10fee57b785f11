import { App, CfnParameter, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Model } from '../src';
import { actionsOf, ENV, resourcesOf, statementsAllowing, statementsOfRole } from './fixtures';

describe('Model.fromHuggingFace', () => {
  test.each([
    ['cyberagent/calm3-22b-chat', 22e9],
    ['meta-llama/Meta-Llama-3-8B', 8e9],
    ['Qwen/Qwen2.5-1.5B-Instruct', 1.5e9],
    ['facebook/opt-350m', 350e6],
  ])('reads the parameter count from %s', (id, count) => {
    expect(Model.fromHuggingFace(id).parameterCount).toBe(count);
  });

  test('an explicit parameterCount wins over the id', () => {
    expect(Model.fromHuggingFace('cyberagent/calm3-22b-chat', { parameterCount: 22.5e9 }).parameterCount).toBe(22.5e9);
  });

  test('an id without a parameter count needs parameterCount', () => {
    expect(() => Model.fromHuggingFace('org/gpt2')).toThrow(/org\/gpt2.*parameter count.*set parameterCount/);
    expect(Model.fromHuggingFace('org/gpt2', { parameterCount: 124e6 }).parameterCount).toBe(124e6);
  });

  test.each(['gpt2', 'a/b/c', '/calm3-22b', 'owner/'])('rejects the id %s without owner/name', (id) => {
    expect(() => Model.fromHuggingFace(id, { parameterCount: 1e9 })).toThrow(/modelId '.*' is not a Hugging Face model id: use 'owner\/name'/);
  });

  test.each([0, -1, NaN])('rejects parameterCount %s', (count) => {
    expect(() => Model.fromHuggingFace('org/gpt2', { parameterCount: count })).toThrow(/parameterCount is .*: give the number of parameters/);
  });

  // The compile job builds transformers-neuronx's LlamaForSampling only: any other architecture would fail after
  // the instance has started and the weights have been downloaded.
  test.each(['mistral', 'gpt2', 'Llama', ''])('a model_type other than llama (%p) fails at synth, naming the prop and what compiles', (modelType) => {
    expect(() => Model.fromHuggingFace('org/m-7b', { architecture: { modelType, numLayers: 32, hiddenSize: 4096, numAttentionHeads: 32 } }))
      .toThrow(new RegExp(`^Model 'org/m-7b' cannot work:\n- architecture\\.modelType is '${modelType}': the compile builds transformers-neuronx's LlamaForSampling, `
        + 'so only Llama-architecture models \\(config\\.json model_type \'llama\'\\) compile'));
  });

  test('model_type and parameterCount problems are reported together', () => {
    expect(() => Model.fromHuggingFace('org/m-7b', { parameterCount: 0, architecture: { modelType: 'gpt_neox', numLayers: 1, hiddenSize: 1, numAttentionHeads: 1 } }))
      .toThrow(/parameterCount is 0.*\n- architecture\.modelType is 'gpt_neox'/);
  });

  test('a llama model_type is accepted and gives no warning; a model without one warns where it is compiled', () => {
    const warnings = (model: Model) => {
      const stack = new Stack(new App(), 'S', { env: ENV });
      model.bind(stack, new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com') }));
      return Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('modelTypeUnknown'));
    };
    const architecture = { numLayers: 32, hiddenSize: 4096, numAttentionHeads: 32 };
    expect(warnings(Model.fromHuggingFace('org/m-7b', { revision: 'abc', architecture: { ...architecture, modelType: 'llama' } }))).toEqual([]);
    expect(warnings(Model.fromBucket(s3.Bucket.fromBucketName(new Stack(), 'B', 'weights'), 'w/', { parameterCount: 7e9, architecture: { ...architecture, modelType: 'llama' } }))).toEqual([]);
    for (const model of [
      Model.fromHuggingFace('org/m-7b', { revision: 'abc' }),
      Model.fromHuggingFace('org/m-7b', { revision: 'abc', architecture }),
      Model.fromBucket(s3.Bucket.fromBucketName(new Stack(), 'B', 'weights'), 'w/', { parameterCount: 7e9 }),
    ]) {
      const found = warnings(model);
      expect(found).toHaveLength(1);
      expect(String(found[0].entry.data)).toMatch(/does not say its architecture\.modelType: only Llama-architecture models \(config\.json model_type 'llama'\) compile.*Set architecture\.modelType/);
    }
  });

  test('the revision defaults to main and can be pinned', () => {
    expect(Model.fromHuggingFace('org/m-1b').revision).toBe('main');
    expect(Model.fromHuggingFace('org/m-1b', { revision: 'abc123' }).revision).toBe('abc123');
  });
});

describe('Model.fromBucket', () => {
  test('reads only its prefix and hands the job its S3 URI', () => {
    const stack = new Stack(new App(), 'S', { env: ENV });
    const bucket = new s3.Bucket(stack, 'Weights');
    const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com') });
    const model = Model.fromBucket(bucket, 'weights/llama-8b', { parameterCount: 8e9 });
    const config = model.bind(stack, role);

    expect(model.modelId).toBe('weights/llama-8b');
    expect(model.revision).toBe('unversioned');
    expect(stack.resolve(config.environment.NEURONX_MODEL_S3_URI)).toEqual(
      { 'Fn::Join': ['', ['s3://', { Ref: stack.getLogicalId(bucket.node.defaultChild as s3.CfnBucket) }, '/weights/llama-8b/']] });
    const statements = statementsOfRole(Template.fromStack(stack), stack.getLogicalId(role.node.defaultChild as iam.CfnRole));
    const bucketArn = `\${${stack.getLogicalId(bucket.node.defaultChild as s3.CfnBucket)}.Arn}`;
    expect(statementsAllowing(statements, 's3:GetObject').flatMap(resourcesOf)).toEqual([`${bucketArn}/weights/llama-8b/*`]);
    // Listing is limited to the prefix: the job cannot enumerate the rest of the bucket.
    const lists = statements.filter(st => actionsOf(st).some(a => a.startsWith('s3:List')));
    expect(lists).toHaveLength(1);
    expect(lists[0].Condition).toEqual({ StringLike: { 's3:prefix': ['weights/llama-8b/*'] } });
    expect(statements.flatMap(actionsOf).filter(a => a.startsWith('s3:Put') || a.startsWith('s3:Delete'))).toEqual([]);
  });

  test('takes the parameter count from modelId when given', () => {
    const stack = new Stack();
    const bucket = new s3.Bucket(stack, 'Weights');
    expect(Model.fromBucket(bucket, 'w/', { modelId: 'org/llama-8b' }).parameterCount).toBe(8e9);
    expect(() => Model.fromBucket(bucket, 'weights/')).toThrow(/parameter count cannot be read.*set parameterCount/);
  });
});

test.each(['', '/weights/calm3'])('Model.fromBucket rejects the prefix %p: it must name a folder without a leading /', (prefix) => {
  const stack = new Stack();
  expect(() => Model.fromBucket(new s3.Bucket(stack, 'Weights'), prefix))
    .toThrow(/Model\.fromBucket: prefix '.*' must name a folder of the bucket, without a leading '\/'/);
});

test('Model.fromBucket treats its prefix as a folder', () => {
  const stack = new Stack(new App(), 'Folder', { env: ENV });
  const r = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com') });
  const config = Model.fromBucket(new s3.Bucket(stack, 'Weights'), 'weights/calm3', { parameterCount: 22.5e9 }).bind(stack, r);
  expect(JSON.stringify(stack.resolve(config.environment.NEURONX_MODEL_S3_URI))).toMatch(/\/weights\/calm3\/"\]\]}$/);
});

describe('Model.fromBucket with a token prefix (e.g. a CfnParameter)', () => {
  function tokenPrefix(stack: Stack): string {
    return new CfnParameter(stack, 'WeightsPrefix', { type: 'String' }).valueAsString;
  }

  test('fails at synth without modelId: the token would name the artifacts, differently on each synth', () => {
    const stack = new Stack();
    const bucket = new s3.Bucket(stack, 'Weights');
    expect(() => Model.fromBucket(bucket, tokenPrefix(stack), { parameterCount: 8e9 }))
      .toThrow(/Model\.fromBucket: prefix is a token \(\$\{Token\[.*\]\}\), known only at deploy time, and modelId is not set: .* Set modelId, e\.g\. 'my-org\/llama-8b'/);
  });

  test('with modelId, the model id is that name and the grants end the prefix with a /', () => {
    const stack = new Stack(new App(), 'S', { env: ENV });
    const bucket = new s3.Bucket(stack, 'Weights');
    const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com') });
    const model = Model.fromBucket(bucket, tokenPrefix(stack), { modelId: 'org/llama-8b', revision: 'v1' });
    expect(model.modelId).toBe('org/llama-8b');
    const config = model.bind(stack, role);
    const statements = statementsOfRole(Template.fromStack(stack), stack.getLogicalId(role.node.defaultChild as iam.CfnRole));
    const bucketArn = `\${${stack.getLogicalId(bucket.node.defaultChild as s3.CfnBucket)}.Arn}`;
    // `<prefix>/*`, not `<prefix>*`, which would also match a sibling folder such as `<prefix>-old/`.
    expect(statementsAllowing(statements, 's3:GetObject').flatMap(resourcesOf)).toEqual([`${bucketArn}/\${WeightsPrefix}/*`]);
    const lists = statementsAllowing(statements, 's3:ListBucket');
    expect(JSON.stringify(lists[0].Condition)).toBe(JSON.stringify({ StringLike: { 's3:prefix': [{ 'Fn::Join': ['', [{ Ref: 'WeightsPrefix' }, '/*']] }] } }));
    expect(JSON.stringify(stack.resolve(config.environment.NEURONX_MODEL_S3_URI))).toMatch(/\{"Ref":"WeightsPrefix"\},"\/"\]\]\}$/);
  });

  test('a token modelId or revision fails at synth: both are hashed into the artifact prefix', () => {
    const stack = new Stack();
    const bucket = new s3.Bucket(stack, 'Weights');
    const token = new CfnParameter(stack, 'P', { type: 'String' }).valueAsString;
    expect(() => Model.fromBucket(bucket, 'w/', { modelId: token, parameterCount: 8e9 }))
      .toThrow(/Model: modelId is a token .* must be known at synth; give it as a plain string/);
    expect(() => Model.fromBucket(bucket, 'w/', { revision: token, parameterCount: 8e9 }))
      .toThrow(/Model: revision is a token .* must be known at synth/);
    expect(() => Model.fromHuggingFace('org/m-1b', { revision: token }))
      .toThrow(/Model: revision is a token/);
  });
});
