// Compiles TinyLlama for inf2, serves it on an ml.inf2.xlarge endpoint and asks it one question.
import { ExpectedResult, IntegTest, Match } from '@aws-cdk/integ-tests-alpha';
import { App, Stack } from 'aws-cdk-lib';
import { TransformersNeuronxSageMakerInferenceModelData, TransformersNeuronxSageMakerRealtimeInferenceEndpoint } from '../src';
import { network, tinyLlamaCompile } from './fixtures';

const app = new App();
const stack = new Stack(app, 'NeuronxEndpointInteg');
const { vpc, bucket } = network(stack, { autoDeleteObjects: true });

const compile = tinyLlamaCompile(stack, vpc, bucket);

const endpoint = new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(stack, 'Endpoint', {
  modelData: TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(compile),
});

const integ = new IntegTest(app, 'NeuronxEndpointIntegTest', {
  testCases: [stack],
});

integ.assertions.awsApiCall('SageMakerRuntime', 'invokeEndpoint', {
  EndpointName: endpoint.endpointName,
  ContentType: 'application/json',
  Accept: 'application/json',
  Body: JSON.stringify({
    messages: [{ role: 'user', content: 'What is the capital of Japan? Answer in one word.' }],
    max_new_tokens: 16,
    temperature: 0,
  }),
}).expect(ExpectedResult.objectLike({ Body: Match.stringLikeRegexp('"generated_text"') }));
