// Only in the Lambda handlers' bundle, where the runtime provides the SDK (esbuild externals: @aws-sdk/*).
import { AbortMultipartUploadCommand, ListMultipartUploadsCommand, ListMultipartUploadsCommandOutput, S3Client } from '@aws-sdk/client-s3';
import { errorMessage, withThrottlingRetries } from './aws-calls';

/**
 * Aborts the incomplete multipart uploads under `prefix` that were initiated between `from` and `to` (epoch ms): those
 * of one compile job's attempts. An attempt that Batch stops (a Spot reclaim, its timeout, a TerminateJob when the
 * stack is rolled back) is killed: the container's entry point does not pass SIGTERM on, so the program gets SIGKILL
 * 30 seconds later and cannot abort what it was uploading, and S3 keeps (and bills) the uploaded parts until they are
 * aborted (S3 user guide, "Uploading and copying objects using multipart upload": "you are charged for all storage
 * ... until you either complete or abort"). The time window spares other jobs' uploads into a shared prefix.
 *
 * @returns the keys whose uploads were aborted
 */
export async function abortIncompleteUploads(s3: S3Client, bucket: string, prefix: string, from: number, to: number): Promise<string[]> {
  const aborted: string[] = [];
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  let page: ListMultipartUploadsCommandOutput;
  do {
    page = await withThrottlingRetries(() => s3.send(new ListMultipartUploadsCommand({
      Bucket: bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker,
    })));
    for (const upload of page.Uploads ?? []) {
      const initiated = upload.Initiated?.getTime();
      if (!upload.Key || !upload.UploadId || initiated === undefined || initiated < from || initiated > to) continue;
      try {
        await withThrottlingRetries(() => s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.Key, UploadId: upload.UploadId })));
        aborted.push(upload.Key);
      } catch (error) {
        // Completed or aborted since it was listed: nothing left to abort.
        if ((error as Error).name !== 'NoSuchUpload') throw error;
      }
    }
    keyMarker = page.NextKeyMarker;
    uploadIdMarker = page.NextUploadIdMarker;
  } while (page.IsTruncated);
  return aborted;
}

/** abortIncompleteUploads, logging instead of throwing: the deploy's signal must not wait on a clean-up. */
export async function tryAbortIncompleteUploads(s3: S3Client, bucket: string, prefix: string, from: number, to: number): Promise<void> {
  try {
    const aborted = await abortIncompleteUploads(s3, bucket, prefix, from, to);
    if (aborted.length > 0) console.log(JSON.stringify({ message: 'aborted incomplete multipart uploads of the job', bucket, keys: aborted }));
  } catch (error) {
    console.log(JSON.stringify({ message: 'could not abort incomplete multipart uploads', bucket, prefix, error: errorMessage(error) }));
  }
}
