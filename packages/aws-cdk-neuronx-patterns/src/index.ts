// The pipeline, in order: the model, how it is compiled, where the artifacts go, and the endpoint that serves them.
export * from './neuronx-instance-type';
export * from './compile-options';
export * from './model';
export * from './neuronx-runtime';
export * from './neuronx-compile';
export * from './inference-model-data';
export * from './transformers-neuronx-sagemaker-realtime-inference-endpoint';
// What the endpoint offers besides its resources: IEndpoint, metrics, alarms (EndpointAlarms), autoscaling.
export * from './transformers-neuronx-sagemaker-realtime-inference-endpoint-base';
export * from './scalable-instance-count';
