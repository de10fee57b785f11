import { Fn, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';

/**
 * Least-privilege S3 grants on one prefix: the object actions on `prefix*` and listing limited to the prefix,
 * never the whole bucket (s3:ListBucket is needed so a missing object reads as 404, not 403).
 *
 * @returns the statements added to the grantee's policy (for the cdk-nag findings they make, see wildcardFindings)
 */
export function grantPrefix(bucket: s3.IBucket, prefix: string, grantee: iam.IGrantable, access: 'read' | 'readWrite'): iam.PolicyStatement[] {
  const actions = ['s3:GetObject'];
  if (access === 'readWrite') actions.push('s3:PutObject', 's3:AbortMultipartUpload');
  const grants = [
    iam.Grant.addToPrincipal({ grantee, actions, resourceArns: [bucket.arnForObjects(`${prefix}*`)] }),
    iam.Grant.addToPrincipal({
      grantee,
      actions: ['s3:ListBucket'],
      resourceArns: [bucket.bucketArn],
      conditions: { StringLike: { 's3:prefix': [`${prefix}*`] } },
    }),
  ];
  if (bucket.encryptionKey) {
    grants.push(access === 'readWrite' ? bucket.encryptionKey.grantEncryptDecrypt(grantee) : bucket.encryptionKey.grantDecrypt(grantee));
  }
  return grants.flatMap(g => g.principalStatements);
}

/**
 * A key prefix given by a user, as a folder: ending with '/'. An empty prefix (the whole bucket) or one starting
 * with '/' (S3 keys do not) is an error naming `what`.
 *
 * A token (e.g. a CfnParameter) cannot be checked at synth; unless the string ends with a literal '/', a '/' is
 * joined to it, so that a grant on `prefix*` never matches a sibling folder (`models/a*` would match `models/ab/`).
 */
export function folderPrefix(what: string, prefix: string): string {
  if (Token.isUnresolved(prefix)) return prefix.endsWith('/') ? prefix : Fn.join('', [prefix, '/']);
  if (prefix === '' || prefix.startsWith('/')) {
    throw new Error(`${what}: prefix '${prefix}' must name a folder of the bucket, without a leading '/', e.g. 'models/my-model/'.`);
  }
  return prefix.endsWith('/') ? prefix : `${prefix}/`;
}

/**
 * Aborting the incomplete multipart uploads under one prefix: s3:AbortMultipartUpload on `prefix*`, and
 * s3:ListBucketMultipartUploads to find them. S3 authorizes that listing on the bucket (it lists uploads in progress,
 * not objects), and the service authorization reference gives it no s3:prefix condition key, so it is not limited to
 * the prefix: the caller passes the prefix in the request.
 *
 * @returns the statements added to the grantee's policy
 */
export function grantAbortPrefixUploads(bucket: s3.IBucket, prefix: string, grantee: iam.IGrantable): iam.PolicyStatement[] {
  return [
    iam.Grant.addToPrincipal({ grantee, actions: ['s3:AbortMultipartUpload'], resourceArns: [bucket.arnForObjects(`${prefix}*`)] }),
    iam.Grant.addToPrincipal({ grantee, actions: ['s3:ListBucketMultipartUploads'], resourceArns: [bucket.bucketArn] }),
  ].flatMap(g => g.principalStatements);
}
