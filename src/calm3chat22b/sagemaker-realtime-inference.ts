import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import {
  Model,
  NeuronxCompile,
  TransformersNeuronxSageMakerInferenceModelData,
  TransformersNeuronxSageMakerRealtimeInferenceEndpoint,
} from 'aws-cdk-neuronx-patterns';
import { Construct } from 'constructs';
import { InstanceTypeStrategy } from './instance-type-strategy';
import { ARCHITECTURE, MODEL_ID, PARAMETER_COUNT, PINNED_REVISION } from './model-facts';

/**
 * Properties of a calm3-22b-chat SageMaker real-time inference endpoint.
 */
export interface SageMakerRealtimeInferenceProps {
  /**
   * The bucket to upload model data for hosting.
   */
  readonly bucket: s3.IBucket;

  /**
   * VPC in which this will launch compile worker instance.
   */
  readonly compileVpc: ec2.IVpc;

  /**
   * The strategy of instance types.
   */
  readonly instanceTypeStrategy: InstanceTypeStrategy;

  /**
   * Number of instances behind the endpoint.
   *
   * @default 1
   */
  readonly instanceCount?: number;

  /**
   * The Hugging Face revision (a commit hash) of cyberagent/calm3-22b-chat to compile. A different revision gets
   * its own artifact prefix and a new compile.
   *
   * @default '055922aa0f0fb1fbfbc97a2e31134532485ee99b' (the head of `main`, July 2024)
   */
  readonly revision?: string;
}

/**
 * cyberagent/calm3-22b-chat on a SageMaker real-time endpoint on AWS Inferentia2 or Trainium.
 *
 * During `cdk deploy` an AWS Batch job on a Neuron instance in `compileVpc` downloads the model from Hugging Face,
 * compiles it with transformers-neuronx for the serving instance and writes the artifacts under a prefix of
 * `bucket`; the endpoint then serves them. The instance types and compile options come from `instanceTypeStrategy`.
 */
export class SageMakerRealtimeInference extends Construct {
  /** The SageMaker endpoint that serves the model. */
  public readonly endpoint: TransformersNeuronxSageMakerRealtimeInferenceEndpoint;

  /** The compile job that produces the endpoint's model data. */
  public readonly compile: NeuronxCompile;

  /**
   * @param scope the construct this one is created in, usually a Stack
   * @param id the construct id, unique within `scope`
   * @param props the bucket, the compile VPC and the instance type strategy
   */
  constructor(scope: Construct, id: string, props: SageMakerRealtimeInferenceProps) {
    super(scope, id);
    const strategy = props.instanceTypeStrategy;
    const model = Model.fromHuggingFace(MODEL_ID, {
      revision: props.revision ?? PINNED_REVISION,
      parameterCount: PARAMETER_COUNT,
      architecture: ARCHITECTURE,
    });

    // The strategy was checked against the model when it was made; the patterns check again before they build.
    this.compile = new NeuronxCompile(this, 'NeuronxCompile', {
      vpc: props.compileVpc,
      bucket: props.bucket,
      model,
      servingInstanceType: strategy.instanceType,
      compileInstanceType: strategy.instanceTypeForCompile,
      compileOptions: strategy._compileOptions(),
    });
    this.endpoint = new TransformersNeuronxSageMakerRealtimeInferenceEndpoint(this, 'RealtimeInference', {
      modelData: TransformersNeuronxSageMakerInferenceModelData.fromNeuronxCompile(this.compile),
      instanceType: strategy.instanceType,
      instanceCount: props.instanceCount,
    });
  }
}
