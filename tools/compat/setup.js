// Runs before every test file of test:compat (jest.config.js): the aws-cdk-lib and cdk-nag the file loads, through
// the same module mapping as the code under test, must be the ones pinned in this directory, or the run proves nothing.
const pinned = require('./package.json').dependencies;

const cdkLib = require('aws-cdk-lib/package.json').version;
if (cdkLib !== pinned['aws-cdk-lib']) {
  throw new Error(`test:compat loads aws-cdk-lib ${cdkLib}, not the pinned ${pinned['aws-cdk-lib']}: run npm ci in tools/compat`);
}
// The jsii type information of the class the tests construct carries the version of the module really loaded.
const loaded = require('aws-cdk-lib').App[Symbol.for('jsii.rtti')].version;
if (loaded !== cdkLib) throw new Error(`test:compat: aws-cdk-lib's App is from ${loaded}, not ${cdkLib}`);
const cdkNag = require('cdk-nag/package.json').version;
if (cdkNag !== globalThis.COMPAT_CDK_NAG) {
  throw new Error(`test:compat loads cdk-nag ${cdkNag}, not ${globalThis.COMPAT_CDK_NAG}`);
}
