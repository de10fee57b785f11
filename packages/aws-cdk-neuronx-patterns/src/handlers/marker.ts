// Only in the Lambda handlers' bundle, where the runtime provides the SDK (esbuild externals: @aws-sdk/*).
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { withThrottlingRetries } from './aws-calls';

/** Whether the completion marker exists: a prefix without it is incomplete, whatever else is there. */
export async function markerExists(s3: S3Client, bucket: string, key: string): Promise<boolean> {
  try {
    await withThrottlingRetries(() => s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key })));
    return true;
  } catch (error) {
    const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if ((error as Error).name === 'NotFound' || status === 404) return false;
    throw error;
  }
}
