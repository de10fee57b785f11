"""Each gate fails on a deliberately bad template or cloud assembly, names the finding, and passes a clean one."""
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import check_templates as ct
from conftest import FIXTURES

BAD = FIXTURES / 'bad.template.json'
CLEAN = FIXTURES / 'clean.template.json'
NAG_UNSUPPRESSED = FIXTURES / 'nag-unsuppressed'
NAG_CLEAN = FIXTURES / 'nag-clean'
SCRIPT = Path(ct.__file__)


@pytest.fixture()
def empty_allowlist(tmp_path: Path) -> Path:
    path = tmp_path / 'allowlist.yaml'
    path.write_text('{}\n')
    return path


def run(paths, allowlist, gates, require_nag_report=False):
    out = io.StringIO()
    code, results = ct.check(paths, allowlist, gates, require_nag_report, out=out)
    return code, {r.gate: r for r in results}, out.getvalue()


def rules(result):
    return {(f.rule, f.logical_id) for f in result.new}


# --- cfn-lint

@pytest.fixture(scope='module')
def cfn_lint_bad():
    return ct.run_cfn_lint(ct.collect_templates([BAD]))


def test_cfn_lint_reports_the_invalid_property(cfn_lint_bad):
    assert ('E3002', 'OpenBucket') in {(f.rule, f.logical_id) for f in cfn_lint_bad}
    finding = next(f for f in cfn_lint_bad if f.rule == 'E3002')
    assert 'BucketNameTypo' in finding.message
    assert finding.resource_type == 'AWS::S3::Bucket'


def test_cfn_lint_gate_fails_on_the_bad_template(empty_allowlist):
    code, results, out = run([BAD], empty_allowlist, ['cfn-lint'])
    assert code == 1
    assert ('E3002', 'OpenBucket') in rules(results['cfn-lint'])
    assert 'NEW cfn-lint E3002' in out and 'FAILED (cfn-lint)' in out


def test_cfn_lint_gate_passes_the_clean_template(empty_allowlist):
    code, results, out = run([CLEAN], empty_allowlist, ['cfn-lint'])
    assert code == 0, out
    assert results['cfn-lint'].findings == []


# --- checkov

@pytest.fixture(scope='module')
def checkov_bad():
    return ct.run_checkov(ct.collect_templates([BAD]))


@pytest.mark.parametrize('rule, logical_id', [
    ('CKV_AWS_24', 'SshFromAnywhere'),  # security group open to 0.0.0.0/0 on port 22
    ('CKV_AWS_53', 'OpenBucket'),  # no public access block
    ('CKV_AWS_109', 'AdminPolicy'),  # Action '*' on Resource '*'
    ('CKV_AWS_111', 'AdminPolicy'),
])
def test_checkov_reports_the_bad_resources(checkov_bad, rule, logical_id):
    assert (rule, logical_id) in {(f.rule, f.logical_id) for f in checkov_bad}


def test_checkov_gate_fails_on_the_bad_template(empty_allowlist):
    code, results, out = run([BAD], empty_allowlist, ['checkov'])
    assert code == 1
    assert ('CKV_AWS_24', 'SshFromAnywhere') in rules(results['checkov'])
    assert 'NEW checkov CKV_AWS_24' in out


def test_checkov_gate_passes_the_clean_template(empty_allowlist):
    code, results, out = run([CLEAN], empty_allowlist, ['checkov'])
    assert code == 0, out
    assert results['checkov'].findings == []


def test_checkov_runs_offline(monkeypatch):
    # No proxy that works: any download attempt would fail or hang; the run must still report the findings.
    for var in ('HTTPS_PROXY', 'HTTP_PROXY', 'https_proxy', 'http_proxy'):
        monkeypatch.setenv(var, 'http://127.0.0.1:9')
    monkeypatch.delenv('NO_PROXY', raising=False)
    monkeypatch.delenv('no_proxy', raising=False)
    findings = ct.run_checkov(ct.collect_templates([BAD]))
    assert 'CKV_AWS_24' in {f.rule for f in findings}


def _function_template(environment: dict) -> dict:
    return {'Resources': {'Fn': {'Type': 'AWS::Lambda::Function', 'Properties': {
        'Role': 'arn:aws:iam::111111111111:role/r', 'Runtime': 'nodejs22.x', 'Handler': 'index.handler',
        'Code': {'ZipFile': 'exports.handler = async () => {};'}, 'Environment': {'Variables': environment},
    }}}}


# CKV_AWS_45's pattern for a secret access key: exactly 40 characters of [A-Za-z0-9/+=].
SECRET_KEY_PATTERN = re.compile(r'(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])')


def test_checkov_secret_check_does_not_depend_on_where_the_template_is(tmp_path):
    # checkov's parser puts the file name into the Lambda environment it checks (as __file__); under a directory
    # whose path has such a run (CI's /check/work/main/examples/typescript/cdk.out had one), a function with
    # harmless variables was a finding.
    template = tmp_path / ('run-' + 'a' * 40 + '.d') / 'Stack.template.json'
    assert SECRET_KEY_PATTERN.search(str(template))
    template.parent.mkdir()
    template.write_text(json.dumps(_function_template({'MARKER_NAME': 'marker.json', 'TIMEOUT': '1800'})))
    findings = ct.run_checkov(ct.collect_templates([template]))
    assert 'CKV_AWS_115' in {f.rule for f in findings}  # the function was checked
    assert 'CKV_AWS_45' not in {f.rule for f in findings}


def test_checkov_still_reports_a_secret_in_a_lambda_environment(tmp_path):
    template = tmp_path / 'Stack.template.json'
    template.write_text(json.dumps(_function_template({'AWS_SECRET': 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'})))
    findings = ct.run_checkov(ct.collect_templates([template]))
    assert ('CKV_AWS_45', 'Fn', 'Stack.template.json') in {(f.rule, f.logical_id, f.template) for f in findings}


# --- cdk-nag

def test_nag_gate_fails_on_an_unsuppressed_annotation(empty_allowlist):
    code, results, out = run([NAG_UNSUPPRESSED], empty_allowlist, ['cdk-nag'])
    assert code == 1
    found = {(f.rule, f.cdk_path) for f in results['cdk-nag'].new}
    assert ('AwsSolutions-S1', 'Bad/Bucket/Resource') in found
    assert ('AwsSolutions-S10', 'Bad/Bucket/Resource') in found
    # The suppressed bucket is not a finding.
    assert not any(path == 'Bad/Suppressed/Resource' for _, path in found)
    assert 'NEW cdk-nag AwsSolutions-S1' in out


def test_nag_gate_reads_the_nag_report_when_annotations_are_gone(tmp_path, empty_allowlist):
    assembly = tmp_path / 'assembly'
    assembly.mkdir()
    for f in NAG_UNSUPPRESSED.iterdir():
        (assembly / f.name).write_bytes(f.read_bytes())
    (assembly / 'Bad.metadata.json').write_text('{"/Bad/Bucket/Resource": [{"type": "aws:cdk:logicalId", "data": "Bucket83908E77"}]}')
    code, results, _ = run([assembly], empty_allowlist, ['cdk-nag'])
    assert code == 1
    assert {f.rule for f in results['cdk-nag'].new} == {'AwsSolutions-S1', 'AwsSolutions-S10'}


def test_nag_gate_passes_suppressed_findings_and_other_warnings(empty_allowlist):
    code, results, out = run([NAG_CLEAN], empty_allowlist, ['cdk-nag'], require_nag_report=True)
    assert code == 0, out
    assert results['cdk-nag'].findings == []


def test_nag_gate_requires_a_report_when_asked(tmp_path, empty_allowlist):
    assembly = tmp_path / 'assembly'
    assembly.mkdir()
    for f in NAG_CLEAN.iterdir():
        if not f.name.endswith('.csv'):
            (assembly / f.name).write_bytes(f.read_bytes())
    assert run([assembly], empty_allowlist, ['cdk-nag'])[0] == 0
    code, results, _ = run([assembly], empty_allowlist, ['cdk-nag'], require_nag_report=True)
    assert code == 1
    assert [f.rule for f in results['cdk-nag'].new] == ['not-run']


def test_nag_annotations_in_the_manifest_itself_count(tmp_path, empty_allowlist):
    import json
    assembly = tmp_path / 'assembly'
    assembly.mkdir()
    (assembly / 'Bad.template.json').write_bytes((NAG_UNSUPPRESSED / 'Bad.template.json').read_bytes())
    (assembly / 'manifest.json').write_text(json.dumps({'version': '36.0.0', 'artifacts': {'Bad': {
        'type': 'aws:cloudformation:stack', 'environment': 'aws://unknown-account/unknown-region',
        'properties': {'templateFile': 'Bad.template.json'},
        'metadata': {'/Bad/Bucket/Resource': [
            {'type': 'aws:cdk:logicalId', 'data': 'Bucket83908E77'},
            {'type': 'aws:cdk:warning', 'data': 'AwsSolutions-IAM5[Resource::*]: The IAM entity contains wildcard permissions.'},
        ]}}}}))
    code, results, _ = run([assembly], empty_allowlist, ['cdk-nag'])
    assert code == 1
    (finding,) = results['cdk-nag'].new
    assert finding.rule == 'AwsSolutions-IAM5' and finding.resource_type == 'AWS::S3::Bucket'
    assert finding.message.startswith('[Resource::*]')


# --- the allow list

def test_an_allowlist_entry_accepts_only_what_it_names(tmp_path):
    allow = tmp_path / 'allow.yaml'
    allow.write_text(
        'cdk-nag:\n'
        '  - rule: AwsSolutions-S1\n'
        '    paths: ["^Bad/Bucket/"]\n'
        '    reason: The test bucket is a fixture, never deployed anywhere.\n')
    code, results, _ = run([NAG_UNSUPPRESSED], allow, ['cdk-nag'])
    assert code == 1
    assert {f.rule for f in results['cdk-nag'].allowed} == {'AwsSolutions-S1'}
    assert {f.rule for f in results['cdk-nag'].new} == {'AwsSolutions-S10'}


@pytest.mark.parametrize('body, message', [
    ('cfn-lint:\n  - rule: W3005\n', 'reason'),
    ('cfn-lint:\n  - rule: W3005\n    reason: because\n', 'reason'),
    ('cfn-lint:\n  - reason: A reason long enough to count as one.\n', 'rule is required'),
    ('cfn_lint: []\n', 'unknown tool'),
    ('checkov:\n  - rule: CKV_AWS_1\n    reason: A reason long enough to count as one.\n    resource: X\n', 'keys must be'),
])
def test_a_malformed_allowlist_is_an_error(tmp_path, body, message):
    allow = tmp_path / 'allow.yaml'
    allow.write_text(body)
    with pytest.raises(ct.CheckError, match=message):
        ct.load_allowlist(allow)


def test_the_repository_allowlist_is_well_formed():
    entries = ct.load_allowlist(ct.DEFAULT_ALLOWLIST)
    assert entries, 'the allow list has entries'
    assert len({(e.tool, e.rule, str(e.paths), str(e.resource_types)) for e in entries}) == len(entries)


# --- the command line

def test_cli_exits_1_and_names_findings_of_every_gate(empty_allowlist):
    out = subprocess.run([sys.executable, str(SCRIPT), '--allowlist', str(empty_allowlist), str(BAD), str(NAG_UNSUPPRESSED)],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 1, out.stderr
    for expected in ('NEW cfn-lint E3002', 'NEW checkov CKV_AWS_24', 'NEW cdk-nag AwsSolutions-S1',
                     'FAILED (cfn-lint, checkov, cdk-nag)'):
        assert expected in out.stdout


def test_cli_exits_0_on_clean_input(empty_allowlist):
    out = subprocess.run([sys.executable, str(SCRIPT), '--allowlist', str(empty_allowlist), str(CLEAN)],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert 'template-checks: passed' in out.stdout


def test_cli_exits_2_when_there_is_nothing_to_check(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert 'no *.template.json' in out.stderr


def test_templates_without_resources_are_skipped(tmp_path, empty_allowlist):
    (tmp_path / 'Empty.template.json').write_text('{"Parameters": {"BootstrapVersion": {"Type": "String"}}}')
    (tmp_path / 'Clean.template.json').write_bytes(CLEAN.read_bytes())
    code, results, out = run([tmp_path], empty_allowlist, ['cfn-lint'])
    assert code == 0, out
    assert 'without resources skipped' in out and 'Empty.template.json' in out
