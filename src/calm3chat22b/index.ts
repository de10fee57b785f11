// The calm3 model in three steps: which instances and compile options (strategy), then the construct that
// compiles and serves with them. The model's facts (model-facts.ts) are internal.
export * from './instance-type-strategy';
export * from './sagemaker-realtime-inference';
