#!/usr/bin/env python3
"""Runs cfn-lint, checkov and the cdk-nag findings gate over every CloudFormation template of CDK cloud assemblies.

    check_templates.py [--allowlist FILE] [--require-nag-report] [--gates cfn-lint,checkov,cdk-nag] PATH [PATH ...]

PATH is a cloud assembly directory (a `cdk.out`, an integ snapshot: anything with a manifest.json; nested assemblies
are followed), a directory of `*.template.json` files, or one template file.

Every finding of every tool counts, unless an entry of the allow list (allowlist.yaml beside this file) matches it;
each entry gives its reason. The script prints, per tool, how many findings it saw, how many the allow list accepts
and how many are new, lists the new ones, and exits 1 when any tool has a new finding. Exit 2: nothing to check, a
tool failed to run, or the allow list is malformed. It needs no network: checkov's guideline download and update
check are turned off.
"""
from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable

import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_ALLOWLIST = HERE / 'allowlist.yaml'
GATES = ('cfn-lint', 'checkov', 'cdk-nag')
# cdk-nag writes its findings as error/warning annotations whose text starts with the rule id; a rule that could not
# be evaluated is reported as CdkNagValidationFailure.
NAG_ANNOTATION_TYPES = ('aws:cdk:error', 'aws:cdk:warning', 'aws:cdk:info')
NAG_RULE = re.compile(r'^(AwsSolutions-[A-Za-z0-9]+|CdkNagValidationFailure)\b')
NAG_PACK = 'AwsSolutions'
DEFAULT_REGION = 'us-east-1'
# Keeps checkov offline: no guideline/severity download, no PyPI update check, no platform mapping.
CHECKOV_OFFLINE_ENV = {'CKV_SKIP_PACKAGE_UPDATE_CHECK': 'true', 'BC_SKIP_MAPPING': 'TRUE', 'CHECKOV_RUN_SCA_PACKAGE_SCAN_V2': 'false'}


class CheckError(Exception):
    """Something other than a finding went wrong: the run proves nothing."""


@dataclasses.dataclass(eq=False)
class Template:
    path: Path
    stack: str
    region: str
    assembly: Path | None
    # Construct path of each logical id, from the assembly's metadata (templates carry aws:cdk:path only when the
    # CDK CLI synthesized them).
    paths: dict[str, str] = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def body(self) -> dict:
        return _load_json(self.path)

    def resource(self, logical_id: str | None) -> dict:
        return (self.body.get('Resources') or {}).get(logical_id or '', {}) if logical_id else {}

    def cdk_path(self, logical_id: str | None) -> str | None:
        return _cdk_path(self.resource(logical_id)) or self.paths.get(logical_id or '')


@dataclasses.dataclass(frozen=True)
class Finding:
    tool: str
    rule: str
    template: str
    logical_id: str | None
    resource_type: str | None
    cdk_path: str | None
    message: str
    severity: str | None = None

    def describe(self) -> str:
        where = self.cdk_path or self.logical_id or '(template)'
        type_ = f' ({self.resource_type})' if self.resource_type else ''
        sev = f' [{self.severity}]' if self.severity else ''
        return f'{self.tool} {self.rule}{sev} {self.template} {where}{type_}: {self.message}'


# --------------------------------------------------------------------------------------------------------------------
# Finding the templates


def _load_json(path: Path) -> dict:
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def templates_of_assembly(directory: Path) -> list[Template]:
    """The stack templates of a cloud assembly, nested assemblies (stages) included."""
    manifest = _load_json(directory / 'manifest.json')
    result: list[Template] = []
    for artifact_id, artifact in (manifest.get('artifacts') or {}).items():
        props = artifact.get('properties') or {}
        if artifact.get('type') == 'aws:cloudformation:stack':
            env = artifact.get('environment', '')
            region = env.rsplit('/', 1)[-1] if env.startswith('aws://') else ''
            result.append(Template(
                path=directory / props['templateFile'],
                stack=props.get('stackName', artifact_id),
                region=region if region and region != 'unknown-region' else DEFAULT_REGION,
                assembly=directory,
                paths={e['data']: path.lstrip('/') for path, entries in _stack_metadata(directory, artifact).items()
                       for e in entries if e.get('type') == 'aws:cdk:logicalId' and isinstance(e.get('data'), str)},
            ))
        elif artifact.get('type') == 'cdk:cloud-assembly':
            result.extend(templates_of_assembly(directory / props['directoryName']))
    return result


def collect_templates(paths: Iterable[Path]) -> list[Template]:
    templates: list[Template] = []
    for p in paths:
        if p.is_file():
            templates.append(Template(p, p.name.removesuffix('.template.json'), DEFAULT_REGION, None))
        elif (p / 'manifest.json').is_file():
            templates.extend(templates_of_assembly(p))
        elif p.is_dir():
            templates.extend(Template(t, t.name.removesuffix('.template.json'), DEFAULT_REGION, None)
                             for t in sorted(p.glob('*.template.json')))
        else:
            raise CheckError(f'{p}: no such file or directory')
    seen: set[Path] = set()
    unique = []
    for t in templates:
        if t.path.resolve() not in seen:
            seen.add(t.path.resolve())
            unique.append(t)
    return unique


def is_deployable(template: Template) -> bool:
    """The CDK CLI does not deploy a stack without resources (e.g. an integ test's empty DeployAssert stack)."""
    return bool(template.body.get('Resources'))


def _cdk_path(resource: dict) -> str | None:
    path = (resource.get('Metadata') or {}).get('aws:cdk:path')
    return path.lstrip('/') if isinstance(path, str) else None


# --------------------------------------------------------------------------------------------------------------------
# The tools


def _tool(name: str) -> str:
    """The console script installed beside this interpreter (the venv), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise CheckError(f'{name} is not installed: run tools/template-checks/setup.sh')
    return found


def tool_version(name: str) -> str:
    out = subprocess.run([_tool(name), '--version'], capture_output=True, text=True, env=_offline_env(), check=False)
    return (out.stdout.strip() or out.stderr.strip()).split()[-1] if (out.stdout or out.stderr) else '?'


def _offline_env() -> dict:
    return {**os.environ, **CHECKOV_OFFLINE_ENV}


def run_cfn_lint(templates: list[Template]) -> list[Finding]:
    findings: list[Finding] = []
    by_region: dict[str, list[Template]] = {}
    for t in templates:
        by_region.setdefault(t.region, []).append(t)
    by_file = {str(t.path.resolve()): t for t in templates}
    for region, group in sorted(by_region.items()):
        # An empty working directory: a .cfnlintrc of the caller's directory must not change the rules.
        with tempfile.TemporaryDirectory() as cwd:
            cmd = [_tool('cfn-lint'), '--format', 'json', '--regions', region, '--', *[str(t.path.resolve()) for t in group]]
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
        # cfn-lint's exit code is a bit mask of the levels found (2 error, 4 warning, 8 informational); 1 is a failure.
        if out.returncode & 1:
            raise CheckError(f'cfn-lint failed (exit {out.returncode}): {out.stderr.strip() or out.stdout.strip()}')
        try:
            matches = json.loads(out.stdout or '[]')
        except json.JSONDecodeError as e:
            raise CheckError(f'cfn-lint printed no JSON (exit {out.returncode}): {out.stderr.strip() or out.stdout.strip()}') from e
        for m in matches:
            template = by_file.get(str(Path(m['Filename']).resolve()))
            loc = m.get('Location', {}).get('Path') or []
            logical_id = loc[1] if len(loc) > 1 and loc[0] == 'Resources' else None
            resource = template.resource(logical_id) if template else {}
            findings.append(Finding(
                tool='cfn-lint', rule=m['Rule']['Id'], template=_display(template, m['Filename']),
                logical_id=logical_id, resource_type=resource.get('Type'), cdk_path=template.cdk_path(logical_id) if template else None,
                message=m['Message'].strip(), severity=m.get('Level'),
            ))
    return findings


def run_checkov(templates: list[Template]) -> list[Finding]:
    if not templates:
        return []
    with tempfile.TemporaryDirectory() as cwd:
        # checkov sees each template as a copy named by its index, given by a relative path. Its parser adds the file
        # name to every mapping as the key __file__, and CKV_AWS_45 tests every value of a Lambda environment,
        # that one too, against a pattern for secret keys (40 characters of [A-Za-z0-9/+=]): a function in a template
        # at /check/work/main/examples/typescript/cdk.out/... was reported as a hard-coded secret, in another
        # checkout of the same commit not. A short name makes the result independent of where the templates are.
        by_file: dict[str, Template] = {}
        cmd = [_tool('checkov'), '--framework', 'cloudformation', '--skip-download', '--output', 'json', '--quiet',
               '--compact']
        for index, t in enumerate(templates):
            name = f'{index}.json'
            shutil.copyfile(t.path, Path(cwd, name))
            by_file[name] = t
            cmd += ['--file', name]
        # No .checkov.yaml of the caller's directory, no cache outside the temporary directory.
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False,
                             env={**_offline_env(), 'CKV_CACHE_DIR': cwd, 'HOME': cwd})
    try:
        reports = json.loads(out.stdout)
    except json.JSONDecodeError as e:
        raise CheckError(f'checkov failed (exit {out.returncode}): {out.stderr.strip()[-2000:] or out.stdout[-2000:]}') from e
    findings: list[Finding] = []
    for report in reports if isinstance(reports, list) else [reports]:
        summary = report.get('summary', report)
        if summary.get('parsing_errors'):
            for path in (report.get('results') or {}).get('parsing_errors', []) or ['(unknown file)']:
                template = by_file.get(Path(str(path)).name)
                findings.append(Finding('checkov', 'parsing-error', _display(template, str(path)), None, None, None,
                                        'checkov could not parse the template'))
        for r in (report.get('results') or {}).get('failed_checks', []):
            template = by_file.get(Path(r.get('file_path') or '').name)
            resource_type, _, logical_id = r['resource'].partition('.')
            findings.append(Finding(
                tool='checkov', rule=r['check_id'], template=_display(template, r.get('file_path', '?')),
                logical_id=logical_id or None, resource_type=resource_type or None,
                cdk_path=template.cdk_path(logical_id) if template else None,
                message=r['check_name'], severity=r.get('severity'),
            ))
    return findings


def _display(template: Template | None, fallback: str) -> str:
    if template is None:
        return fallback
    return template.path.name if template.assembly is None else f'{template.assembly.name}/{template.path.name}'


def _stack_metadata(assembly: Path, artifact: dict) -> dict:
    metadata = dict(artifact.get('metadata') or {})
    extra = artifact.get('additionalMetadataFile')
    if extra and (assembly / extra).is_file():
        for path, entries in _load_json(assembly / extra).items():
            metadata.setdefault(path, [])
            metadata[path] = [*metadata[path], *entries]
    return metadata


def nag_findings_of_assembly(assembly: Path) -> tuple[list[Finding], list[str]]:
    """cdk-nag findings of a cloud assembly (annotations in the manifest and metadata files, and Non-Compliant rows of
    the NagReport CSV files), and the names of the stacks that have a NagReport."""
    manifest = _load_json(assembly / 'manifest.json')
    findings: dict[tuple, Finding] = {}
    reported: list[str] = []
    for artifact_id, artifact in (manifest.get('artifacts') or {}).items():
        props = artifact.get('properties') or {}
        if artifact.get('type') == 'cdk:cloud-assembly':
            nested, nested_reported = nag_findings_of_assembly(assembly / props['directoryName'])
            findings.update({(f.rule, f.template, f.cdk_path, f.message): f for f in nested})
            reported += nested_reported
            continue
        if artifact.get('type') != 'aws:cloudformation:stack':
            continue
        template = Template(assembly / props['templateFile'], props.get('stackName', artifact_id), DEFAULT_REGION, assembly)
        resources = template.body.get('Resources') or {}
        metadata = _stack_metadata(assembly, artifact)
        for path, entries in metadata.items():
            logical_id = next((e['data'] for e in entries if e.get('type') == 'aws:cdk:logicalId'), None)
            for e in entries:
                data = e.get('data')
                if e.get('type') not in NAG_ANNOTATION_TYPES or not isinstance(data, str):
                    continue
                match = NAG_RULE.match(data)
                if not match:
                    continue
                cdk_path = path.lstrip('/')
                rest = data[match.end():].lstrip(':').strip()
                f = Finding('cdk-nag', match.group(1), _display(template, ''), logical_id,
                            (resources.get(logical_id) or {}).get('Type'), cdk_path,
                            rest.splitlines()[0] if rest else '', severity=e['type'].rsplit(':', 1)[-1])
                findings[(f.rule, f.template, cdk_path, f.message)] = f
        for report in sorted(assembly.glob(f'{NAG_PACK}-{template.stack}-NagReport.csv')):
            reported.append(template.stack)
            with open(report, newline='', encoding='utf-8') as fh:
                for row in csv.DictReader(fh):
                    if row.get('Compliance') != 'Non-Compliant':
                        continue
                    cdk_path = row['Resource ID'].lstrip('/')
                    key = (row['Rule ID'], _display(template, ''), cdk_path)
                    if not any(k[:3] == key for k in findings):
                        logical_id = _logical_id_by_path(resources, cdk_path)
                        findings[key] = Finding('cdk-nag', row['Rule ID'], key[1], logical_id,
                                                (resources.get(logical_id or '') or {}).get('Type'), cdk_path,
                                                row.get('Rule Info', ''), severity=row.get('Rule Level'))
    return list(findings.values()), reported


def _logical_id_by_path(resources: dict, cdk_path: str) -> str | None:
    for logical_id, resource in resources.items():
        if _cdk_path(resource) == cdk_path:
            return logical_id
    return None


def run_cdk_nag(templates: list[Template], require_report: bool) -> list[Finding]:
    findings: list[Finding] = []
    for assembly in sorted({t.assembly for t in templates if t.assembly is not None}):
        found, reported = nag_findings_of_assembly(assembly)
        findings += found
        if require_report:
            for t in templates:
                if t.assembly == assembly and is_deployable(t) and t.stack not in reported:
                    findings.append(Finding('cdk-nag', 'not-run', _display(t, ''), None, None, None,
                                            f'no {NAG_PACK}-{t.stack}-NagReport.csv: AwsSolutionsChecks did not run on this stack'))
    return findings


# --------------------------------------------------------------------------------------------------------------------
# The allow list

ENTRY_KEYS = {'rule', 'reason', 'owner', 'resource_types', 'paths', 'logical_ids'}


@dataclasses.dataclass
class AllowEntry:
    tool: str
    rule: str
    reason: str
    resource_types: list[str] | None = None
    paths: list[re.Pattern] | None = None
    logical_ids: list[re.Pattern] | None = None
    owner: str | None = None
    used: int = 0

    def matches(self, f: Finding) -> bool:
        if f.tool != self.tool or f.rule != self.rule:
            return False
        if self.resource_types is not None and f.resource_type not in self.resource_types:
            return False
        if self.paths is not None and not any(p.search(f.cdk_path or '') for p in self.paths):
            return False
        if self.logical_ids is not None and not any(p.search(f.logical_id or '') for p in self.logical_ids):
            return False
        return True


def load_allowlist(path: Path) -> list[AllowEntry]:
    with open(path, encoding='utf-8') as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise CheckError(f'{path}: expected a mapping of tool name to entries')
    entries: list[AllowEntry] = []
    for tool, items in data.items():
        if tool not in GATES:
            raise CheckError(f'{path}: unknown tool {tool!r} (known: {", ".join(GATES)})')
        for i, item in enumerate(items or []):
            where = f'{path}: {tool}[{i}]'
            if not isinstance(item, dict) or set(item) - ENTRY_KEYS:
                raise CheckError(f'{where}: keys must be among {sorted(ENTRY_KEYS)}')
            if not str(item.get('rule', '')).strip():
                raise CheckError(f'{where}: rule is required')
            if len(str(item.get('reason', '')).strip()) < 20:
                raise CheckError(f'{where} ({item.get("rule")}): a reason of at least one sentence is required')
            entries.append(AllowEntry(
                tool=tool, rule=str(item['rule']), reason=str(item['reason']).strip(), owner=item.get('owner'),
                resource_types=item.get('resource_types'),
                paths=[re.compile(p) for p in item['paths']] if 'paths' in item else None,
                logical_ids=[re.compile(p) for p in item['logical_ids']] if 'logical_ids' in item else None,
            ))
    return entries


def classify(findings: list[Finding], allowlist: list[AllowEntry]) -> tuple[list[Finding], list[Finding]]:
    """(allowed, new)."""
    allowed, new = [], []
    for f in findings:
        entry = next((e for e in allowlist if e.matches(f)), None)
        if entry:
            entry.used += 1
            allowed.append(f)
        else:
            new.append(f)
    return allowed, new


# --------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class GateResult:
    gate: str
    version: str
    findings: list[Finding]
    allowed: list[Finding]
    new: list[Finding]


def check(paths: list[Path], allowlist_path: Path = DEFAULT_ALLOWLIST, gates: Iterable[str] = GATES,
          require_nag_report: bool = False, out=sys.stdout) -> tuple[int, list[GateResult]]:
    allowlist = load_allowlist(allowlist_path)
    templates = collect_templates(paths)
    if not templates:
        raise CheckError(f'no *.template.json in {", ".join(map(str, paths))}')
    deployable = [t for t in templates if is_deployable(t)]
    skipped = [t for t in templates if not is_deployable(t)]
    print(f'template-checks: {len(deployable)} template(s) to check' + (
        f'; {len(skipped)} without resources skipped (the CDK CLI does not deploy them): '
        + ', '.join(_display(t, str(t.path)) for t in skipped) if skipped else ''), file=out)
    results: list[GateResult] = []
    for gate in gates:
        if gate == 'cfn-lint':
            findings, version = run_cfn_lint(deployable), tool_version('cfn-lint')
        elif gate == 'checkov':
            findings, version = run_checkov(deployable), tool_version('checkov')
        elif gate == 'cdk-nag':
            findings, version = run_cdk_nag(templates, require_nag_report), 'annotations'
        else:
            raise CheckError(f'unknown gate {gate!r}')
        allowed, new = classify(findings, allowlist)
        results.append(GateResult(gate, version, findings, allowed, new))
        print(f'{gate} ({version}): {len(findings)} finding(s), {len(allowed)} allowed by the allow list, {len(new)} new', file=out)
        if allowed:
            print('  allowed: ' + ', '.join(f'{rule} x{n}' for rule, n in sorted(collections.Counter(f.rule for f in allowed).items())), file=out)
        for f in new:
            print(f'  NEW {f.describe()}', file=out)
    for entry in allowlist:
        if entry.used == 0 and entry.tool in gates:
            print(f'note: allow-list entry {entry.tool} {entry.rule} matched nothing in these templates', file=out)
    failed = [r.gate for r in results if r.new]
    print('template-checks: ' + (f'FAILED ({", ".join(failed)}): fix the finding, or add it to '
                                 f'{allowlist_path.name} with its reason' if failed else 'passed'), file=out)
    return (1 if failed else 0), results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('paths', nargs='+', type=Path, help='cloud assembly directories, template directories or files')
    parser.add_argument('--allowlist', type=Path, default=DEFAULT_ALLOWLIST)
    parser.add_argument('--gates', default=','.join(GATES), help=f'comma-separated subset of {",".join(GATES)}')
    parser.add_argument('--require-nag-report', action='store_true',
                        help='fail a stack with resources that has no AwsSolutions NagReport (AwsSolutionsChecks did not run)')
    args = parser.parse_args(argv)
    try:
        code, _ = check(args.paths, args.allowlist, [g.strip() for g in args.gates.split(',') if g.strip()],
                        args.require_nag_report)
        return code
    except CheckError as e:
        print(f'template-checks: error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
