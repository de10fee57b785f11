import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';

/**
 * Least-privilege S3 grants on one prefix: the object actions on `prefix*` and listing limited to the prefix,
 * never the whole bucket (s3:ListBucket is needed so a missing object reads as 404, not 403).
 */
export function grantPrefix(bucket: s3.IBucket, prefix: string, grantee: iam.IGrantable, access: 'read' | 'readWrite'): void {
  const actions = ['s3:GetObject'];
  if (access === 'readWrite') actions.push('s3:PutObject', 's3:AbortMultipartUpload');
  iam.Grant.addToPrincipal({ grantee, actions, resourceArns: [bucket.arnForObjects(`${prefix}*`)] });
  iam.Grant.addToPrincipal({
    grantee,
    actions: ['s3:ListBucket'],
    resourceArns: [bucket.bucketArn],
    conditions: { StringLike: { 's3:prefix': [`${prefix}*`] } },
  });
  if (bucket.encryptionKey) {
    if (access === 'readWrite') bucket.encryptionKey.grantEncryptDecrypt(grantee);
    else bucket.encryptionKey.grantDecrypt(grantee);
  }
}
