import * as crypto from 'crypto';
import * as fs from 'fs';
import { AssetHashType, AssetStaging, Aws, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';

/** A file or directory staged into the cloud assembly and published by `cdk deploy` to the bootstrap bucket. */
export interface StagedAsset {
  readonly bucketName: string;
  readonly objectKey: string;
  /** `s3://bucket/key`. */
  readonly s3ObjectUrl: string;
  /** The content hash (changes when the source changes). */
  readonly assetHash: string;
}

/**
 * Stages a file asset the way aws-s3-assets' Asset does (AssetStaging, then the stack synthesizer), without the
 * IBucket that Asset builds for the staging bucket: importing that bucket loads aws-cdk-lib's table of region
 * facts, the largest single cost of synthesizing these constructs. The cloud assembly is the same.
 */
export function stageAsset(scope: Construct, id: string, options: { path: string }): StagedAsset {
  // A file's hash is the SHA-256 of its bytes, computed here: AssetStaging's own fingerprint would set up its exclude
  // patterns (minimatch) for each asset, which for the library's few small files costs more than reading them.
  // A directory keeps AssetStaging's fingerprint.
  const contentHash = fs.existsSync(options.path) && fs.statSync(options.path).isFile()
    ? crypto.createHash('sha256').update(fs.readFileSync(options.path)).digest('hex')
    : undefined;
  const staging = new AssetStaging(scope, id, {
    sourcePath: options.path,
    ...(contentHash ? { assetHashType: AssetHashType.CUSTOM, assetHash: contentHash } : {}),
  });
  const stack = Stack.of(scope);
  const location = stack.synthesizer.addFileAsset({
    packaging: staging.packaging,
    sourceHash: staging.assetHash,
    fileName: staging.relativeStagedPath(stack),
  });
  return {
    bucketName: location.bucketName,
    objectKey: location.objectKey,
    s3ObjectUrl: location.s3ObjectUrl,
    assetHash: staging.assetHash,
  };
}

/**
 * Read access to one staged asset: the given object actions on its object only (never the whole bootstrap
 * bucket, which holds every asset of the account).
 */
export function grantAssetRead(asset: StagedAsset, grantee: iam.IGrantable, actions: string[] = ['s3:GetObject']): void {
  iam.Grant.addToPrincipal({
    grantee,
    actions,
    resourceArns: [`arn:${Aws.PARTITION}:s3:::${asset.bucketName}/${asset.objectKey}`],
  });
}
