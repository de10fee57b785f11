// Compiles TinyLlama for inf2, serves it on an ml.inf2.xlarge endpoint and asks it one question.
import { ExpectedResult, IntegTest, Match } from '@aws-cdk/integ-tests-alpha';
import { App, Duration, Stack } from 'aws-cdk-lib';
import {
  NeuronxCompile, NeuronxInstanceType, OptLevel, TransformersNeuronxSageMakerInferenceModelData,
  TransformersNeuronxSageMakerRealtimeInferenceEndpoint,
} from '../src';
import { network, tinyLlama } from './fixtures';

const app = new App();
const stack = new Stack(app, 'NeuronxEndpointInteg');
const { vpc, bucket } = network(stack, { autoDeleteObjects: true });

const compile = new NeuronxCompile(stack, 'Compile', {
  vpc,
  bucket,
  model: tinyLlama(),
  instanceType: NeuronxInstanceType.INF2_8XLARGE,
  servingInstanceType: NeuronxInstanceType.INF2_XLARGE,
  compileOptions: { tpDegree: 2, nPositions: 2048, optLevel: OptLevel.MINIMIZE_COMPILE_TIME },
  timeout: Duration.hours(2),
});

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
