// The construct tests against the newest aws-cdk-lib (test:compat in .projenrc.ts). The packages' own test runs use
// aws-cdk-lib 2.245.0, the floor of the `^2.245.0` peer range; this run maps every import of aws-cdk-lib,
// constructs and cdk-nag, from the tests, the library's sources, its compiled lib/ and cdk-nag itself, to the
// versions pinned in this directory's package.json and lock file (`npm ci` here first). Three projects:
// - the patterns package's construct tests (test/*.test.ts; not test/handlers, which load no aws-cdk-lib) and
// - the root package's tests (they load the patterns package's compiled lib/), both with cdk-nag 2.37.55;
// - test/ here: the library's resources under cdk-nag 3.x, which reads aws-cdk-lib's Validations, not the metadata.
// setup.js fails every test file whose aws-cdk-lib or cdk-nag is not the pinned one.
// Type checking is the packages' own build's job: the tests are transpiled only (isolatedModules).
const path = require('path');

const repo = path.resolve(__dirname, '..', '..');
const patterns = path.join(repo, 'packages', 'aws-cdk-neuronx-patterns');
const pinned = name => path.join(__dirname, 'node_modules', name);
const tsJest = tsconfig => ({ '^.+\\.tsx?$': [require.resolve('ts-jest', { paths: [repo] }), { tsconfig }] });

function project(displayName, rootDir, tsconfig, cdkNag, testMatch = ['<rootDir>/test/*.test.ts']) {
  return {
    displayName,
    rootDir,
    testMatch,
    testEnvironment: 'node',
    transform: tsJest(tsconfig),
    moduleNameMapper: {
      '^aws-cdk-lib$': pinned('aws-cdk-lib'),
      '^aws-cdk-lib/(.*)$': `${pinned('aws-cdk-lib')}/$1`,
      '^constructs$': pinned('constructs'),
      '^cdk-nag$': pinned(cdkNag),
      '^cdk-nag/(.*)$': `${pinned(cdkNag)}/$1`,
    },
    setupFiles: [path.join(__dirname, 'setup.js')],
    globals: { COMPAT_CDK_NAG: require(path.join(pinned(cdkNag), 'package.json')).version },
  };
}

module.exports = {
  projects: [
    project('patterns', patterns, path.join(patterns, 'test', 'tsconfig.json'), 'cdk-nag-v2'),
    project('root', repo, path.join(repo, 'test', 'tsconfig.json'), 'cdk-nag-v2'),
    project('cdk-nag 3', __dirname, path.join(patterns, 'test', 'tsconfig.json'), 'cdk-nag'),
    // The wiring example (issue 12's app) under cdk-nag 3: its test applies whichever cdk-nag major is loaded.
    project('root, cdk-nag 3', repo, path.join(repo, 'test', 'tsconfig.json'), 'cdk-nag', ['<rootDir>/test/wiring-app.test.ts']),
  ],
};
