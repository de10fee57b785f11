import { CopyObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { errorMessage, withThrottlingRetries } from './aws-calls';
import { CustomResourceEvent, customResourceHandler } from './custom-resource';
import { InferenceCodeProperties } from '../private/handler-protocol';

/**
 * Custom resource that places the inference code (`inference.py` and the contract it reads) under
 * `<model data prefix>code/`, where the SageMaker inference toolkit looks for it.
 *
 * Create and Update copy the files from the asset bucket; Delete leaves them, like the model data they serve
 * (compiled artifacts are kept on purpose: they take hours to make).
 */

const s3 = new S3Client({});

export type InferenceCodeEvent = CustomResourceEvent<InferenceCodeProperties>;

export const handler = customResourceHandler<InferenceCodeProperties>({
  physicalResourceId: event => destination(event.ResourceProperties),
  onEvent: async (event, physicalId) => {
    const props = event.ResourceProperties;
    if (event.RequestType !== 'Delete') {
      for (const file of props.Files) {
        await withThrottlingRetries(() => s3.send(new CopyObjectCommand({
          Bucket: props.DestinationBucket,
          Key: `${props.DestinationPrefix}${file.Name}`,
          CopySource: `${file.SourceBucket}/${encodeURIComponent(file.SourceKey)}`,
        })));
      }
    }
    return { reason: `${props.Files.length} code file(s) at ${physicalId}` };
  },
  failureReason: (event, error) => `Placing the inference code at ${destination(event.ResourceProperties)} failed: ${errorMessage(error)}`,
});

/** Where the code goes, as an S3 URI: the resource's physical id. */
function destination(props: InferenceCodeProperties): string {
  return `s3://${props.DestinationBucket}/${props.DestinationPrefix}`;
}
