#!/usr/bin/env python3
"""Compare the CloudFormation templates of two CDK cloud assemblies (cdk.out directories).

    compare_templates.py REFERENCE OTHER [--expect TEXT ...] [--max-diffs N]

The bindings promise that a Python or Java app builds exactly what the same TypeScript app builds, so the
templates are compared whole: every resource, property, output, parameter, rule, condition and metadata entry
(including `aws:cdk:path` and the cdk-nag suppressions), and the set of templates (stacks and nested stacks).

Nothing is normalized. Two things that could differ between languages without a difference in what is deployed
are kept out of the templates at synth time instead of being normalized here:
- `AWS::CDK::Metadata` (version reporting): its `Analytics` string encodes the jsii runtime the app ran under
  (e.g. `Python/3.11.7` vs `node.js`), so the apps are synthesized with `cdk synth --no-version-reporting`.
- Asset hashes are NOT normalized: they are content hashes of the asset directories (the patterns' bundled
  Lambda handlers and Python programs), which a Python or Java app reads from the npm tarball embedded in the
  wheel/jar and a TypeScript app reads from the package directory. Equal hashes prove that the bindings ship the
  same handler code the TypeScript build uses; a difference means a stale or incomplete package.

Exit status: 0 equal (and every --expect text found in both), 1 different, 2 usage or input error.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterator

MISSING = object()


def load_templates(assembly_dir: Path) -> dict[str, Any]:
    """All `*.template.json` files of a cloud assembly (top-level stacks and nested stacks), by file name."""
    if not (assembly_dir / "manifest.json").is_file():
        raise ValueError(f"{assembly_dir} is not a cloud assembly (no manifest.json)")
    templates = {}
    for path in sorted(assembly_dir.glob("*.template.json")):
        with path.open(encoding="utf-8") as f:
            templates[path.name] = json.load(f)
    if not templates:
        raise ValueError(f"{assembly_dir} holds no *.template.json")
    return templates


def _fmt(value: Any, limit: int = 160) -> str:
    if value is MISSING:
        return "<missing>"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key(part: str) -> str:
    return "/" + part.replace("~", "~0").replace("/", "~1")


def diff(reference: Any, other: Any, path: str = "") -> Iterator[str]:
    """Yield one line per difference, each naming a JSON pointer into the template."""
    if isinstance(reference, dict) and isinstance(other, dict):
        for k in sorted(set(reference) | set(other)):
            yield from diff(reference.get(k, MISSING), other.get(k, MISSING), path + _key(str(k)))
    elif isinstance(reference, list) and isinstance(other, list):
        if len(reference) != len(other):
            yield f"{path or '/'}: {len(reference)} items vs {len(other)} items: {_fmt(reference)} vs {_fmt(other)}"
            return
        for i, (a, b) in enumerate(zip(reference, other)):
            yield from diff(a, b, f"{path}/{i}")
    elif type(reference) is not type(other) or reference != other:
        yield f"{path or '/'}: {_fmt(reference)} vs {_fmt(other)}"


def compare(reference_dir: Path, other_dir: Path, expect: list[str] | None = None) -> list[str]:
    """Return the problems found (empty when the assemblies' templates are identical)."""
    problems = []
    ref, oth = load_templates(reference_dir), load_templates(other_dir)
    for name in sorted(set(ref) - set(oth)):
        problems.append(f"{name}: only in {reference_dir}")
    for name in sorted(set(oth) - set(ref)):
        problems.append(f"{name}: only in {other_dir}")
    for name in sorted(set(ref) & set(oth)):
        problems.extend(f"{name}{line}" for line in diff(ref[name], oth[name]))
    for text in expect or []:
        for label, templates in ((reference_dir, ref), (other_dir, oth)):
            if not any(text in json.dumps(t) for t in templates.values()):
                problems.append(f"expected {text!r} in the templates of {label}, not found")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="cdk.out of the reference (TypeScript) app")
    parser.add_argument("other", type=Path, help="cdk.out of the app to check")
    parser.add_argument("--expect", action="append", default=[],
                        help="text that must occur in both template sets (e.g. the preset's instance type)")
    parser.add_argument("--max-diffs", type=int, default=40, help="differences to print at most")
    args = parser.parse_args(argv)
    try:
        problems = compare(args.reference, args.other, args.expect)
    except (OSError, ValueError) as e:
        print(f"compare_templates: {e}", file=sys.stderr)
        return 2
    if not problems:
        print(f"compare_templates: {args.other} == {args.reference}")
        return 0
    print(f"compare_templates: {args.other} differs from {args.reference} ({len(problems)} differences):")
    for line in problems[: args.max_diffs]:
        print(f"  {line}")
    if len(problems) > args.max_diffs:
        print(f"  ... and {len(problems) - args.max_diffs} more")
    return 1


if __name__ == "__main__":
    sys.exit(main())
