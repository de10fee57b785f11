import { CopyObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CustomResourceEvent, errorMessage, respond, withThrottlingRetries } from './private/aws-calls';
import { InferenceCodeProperties } from './private/handler-protocol';

/**
 * Custom resource that places the inference code (`inference.py` and the contract it reads) under
 * `<model data prefix>code/`, where the SageMaker inference toolkit looks for it.
 *
 * Create and Update copy the files from the asset bucket; Delete leaves them, like the model data they serve
 * (compiled artifacts are kept on purpose: they take hours to make).
 */

const s3 = new S3Client({});

export type InferenceCodeEvent = CustomResourceEvent<InferenceCodeProperties>;

export async function handler(event: InferenceCodeEvent): Promise<void> {
  const props = event.ResourceProperties;
  const physicalId = `s3://${props.DestinationBucket}/${props.DestinationPrefix}`;
  try {
    if (event.RequestType !== 'Delete') {
      for (const file of props.Files) {
        await withThrottlingRetries(() => s3.send(new CopyObjectCommand({
          Bucket: props.DestinationBucket,
          Key: `${props.DestinationPrefix}${file.Name}`,
          CopySource: `${file.SourceBucket}/${encodeURIComponent(file.SourceKey)}`,
        })));
      }
    }
    await respond(event, 'SUCCESS', physicalId, `${props.Files.length} code file(s) at ${physicalId}`);
  } catch (error) {
    console.error(JSON.stringify({ message: 'placing inference code failed', error: errorMessage(error) }));
    await respond(event, 'FAILED', physicalId, `Placing the inference code at ${physicalId} failed: ${errorMessage(error)}`);
  }
}
