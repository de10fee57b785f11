import { CopyObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { errorMessage, withThrottlingRetries } from './aws-calls';
import { CustomResourceEvent, customResourceHandler } from './custom-resource';
import { markerExists } from './marker';
import { InferenceCodeProperties } from '../private/handler-protocol';

/**
 * Custom resource that places the inference code (`inference.py`, its modules and the contract it reads) under
 * `<model data prefix>code/<hash>/` and its entry as `code/neuronx_code_<hash>.py` (each file's Name is its key under
 * `code/`), where the endpoint's TorchServe imports it. The hash is the code's content hash, so a key is only ever
 * rewritten with the same content: an endpoint of another code (another deploy, another library version) keeps
 * downloading its own on every instance it starts.
 *
 * Create and Update first check the model data's completion marker, and fail without it: the SageMaker model
 * depends on this resource, and this resource on the compile's WaitCondition, so no model (hence no endpoint) is
 * made over artifacts that are incomplete, even when the wait was signalled SUCCESS by something other than a
 * compile that finished (its signal URL can be read by whoever may describe the stack's resources). Then they copy
 * the files from the asset bucket. Delete leaves them, like the model data they serve (compiled artifacts are kept
 * on purpose: they take hours to make).
 */

const s3 = new S3Client({});

export type InferenceCodeEvent = CustomResourceEvent<InferenceCodeProperties>;

export const handler = customResourceHandler<InferenceCodeProperties>({
  physicalResourceId: event => destination(event.ResourceProperties),
  onEvent: async (event, physicalId) => {
    const props = event.ResourceProperties;
    if (event.RequestType !== 'Delete') {
      await requireMarker(props);
      for (const file of props.Files) {
        await withThrottlingRetries(() => s3.send(new CopyObjectCommand({
          Bucket: props.DestinationBucket,
          Key: `${props.DestinationPrefix}${file.Name}`,
          CopySource: `${file.SourceBucket}/${encodeURIComponent(file.SourceKey)}`,
        })));
      }
      for (const object of props.Objects ?? []) {
        await withThrottlingRetries(() => s3.send(new PutObjectCommand({
          Bucket: props.DestinationBucket, Key: object.Key, Body: object.Body,
        })));
      }
    }
    const written = props.Objects?.length ? ` and ${props.Objects.length} configuration object(s)` : '';
    return { reason: `${props.Files.length} code file(s) at ${physicalId}${written}` };
  },
  failureReason: (event, error) => `Placing the inference code at ${destination(event.ResourceProperties)} failed: ${errorMessage(error)}`,
});

async function requireMarker(props: InferenceCodeProperties): Promise<void> {
  const marker = `s3://${props.DestinationBucket}/${props.MarkerKey}`;
  let present: boolean;
  try {
    present = await markerExists(s3, props.DestinationBucket, props.MarkerKey);
  } catch (error) {
    throw new Error(`the model data's completion marker ${marker} could not be read (${errorMessage(error)}), so the artifacts `
      + 'cannot be shown to be complete: no model is made over them.');
  }
  if (!present) {
    throw new Error(`the model data has no completion marker at ${marker}: the artifacts beside it are incomplete or were never `
      + 'compiled, so no model is made over them. A compile writes the marker last; if the compile\'s wait succeeded '
      + 'without it, the success signal did not come from a compile that finished. Deploy again to compile, or '
      + '(model data from a bucket) point it at a prefix that holds the marker.');
  }
}

/** Where the code goes, as an S3 URI: the resource's physical id. */
function destination(props: InferenceCodeProperties): string {
  return `s3://${props.DestinationBucket}/${props.DestinationPrefix}`;
}
