"""Tests of compare_templates.py (stdlib unittest: run with `python3 -m unittest discover -s tools/bindings`)."""
import io
import json
import sys
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_templates  # noqa: E402

TEMPLATE = {
    "Description": "calm3 (lowCost)",
    "Resources": {
        "EndpointConfig": {
            "Type": "AWS::SageMaker::EndpointConfig",
            "Properties": {"ProductionVariants": [{"InstanceType": "ml.trn1.2xlarge", "InitialInstanceCount": 1}]},
            "Metadata": {"aws:cdk:path": "Calm3ChatStack/Calm3Chat/EndpointConfig"},
        },
        "Function": {
            "Type": "AWS::Lambda::Function",
            "Properties": {"Code": {"S3Key": "0261dc40.zip"}, "Environment": {"Variables": {"A": "1"}}},
        },
    },
}


class CompareTemplatesTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = Path(self._tmp.name)

    def tearDown(self):
        self._tmp.cleanup()

    def assembly(self, name, templates):
        d = self.tmp / name
        d.mkdir()
        (d / "manifest.json").write_text("{}")
        for file_name, template in templates.items():
            (d / file_name).write_text(json.dumps(template, indent=1))
        return d

    def variant(self, change):
        t = json.loads(json.dumps(TEMPLATE))
        change(t)
        return t

    def test_identical_templates_pass(self):
        a = self.assembly("a", {"S.template.json": TEMPLATE})
        b = self.assembly("b", {"S.template.json": json.loads(json.dumps(TEMPLATE))})
        self.assertEqual(compare_templates.compare(a, b), [])

    def test_formatting_and_key_order_do_not_matter(self):
        a = self.assembly("a", {"S.template.json": TEMPLATE})
        b = self.tmp / "b"
        b.mkdir()
        (b / "manifest.json").write_text("{}")
        (b / "S.template.json").write_text(json.dumps(TEMPLATE, sort_keys=True))
        self.assertEqual(compare_templates.compare(a, b), [])

    def test_changed_property_is_reported_with_its_path(self):
        a = self.assembly("a", {"S.template.json": TEMPLATE})
        b = self.assembly("b", {"S.template.json": self.variant(
            lambda t: t["Resources"]["EndpointConfig"]["Properties"]["ProductionVariants"][0].update(
                InstanceType="ml.inf2.24xlarge"))})
        problems = compare_templates.compare(a, b)
        self.assertEqual(len(problems), 1)
        self.assertIn("/Resources/EndpointConfig/Properties/ProductionVariants/0/InstanceType", problems[0])
        self.assertIn("ml.trn1.2xlarge", problems[0])
        self.assertIn("ml.inf2.24xlarge", problems[0])

    def test_asset_hashes_are_not_normalized(self):
        a = self.assembly("a", {"S.template.json": TEMPLATE})
        b = self.assembly("b", {"S.template.json": self.variant(
            lambda t: t["Resources"]["Function"]["Properties"]["Code"].update(S3Key="ffff.zip"))})
        self.assertEqual(len(compare_templates.compare(a, b)), 1)

    def test_missing_resource_metadata_and_type_changes_are_reported(self):
        a = self.assembly("a", {"S.template.json": TEMPLATE})

        def change(t):
            del t["Resources"]["Function"]
            del t["Resources"]["EndpointConfig"]["Metadata"]
            t["Resources"]["EndpointConfig"]["Properties"]["ProductionVariants"][0]["InitialInstanceCount"] = "1"

        problems = compare_templates.compare(a, self.assembly("b", {"S.template.json": self.variant(change)}))
        joined = "\n".join(problems)
        self.assertIn("/Resources/Function: ", joined)
        self.assertIn("<missing>", joined)
        self.assertIn("/Resources/EndpointConfig/Metadata", joined)
        self.assertIn("InitialInstanceCount: 1 vs \"1\"", joined)

    def test_list_length_difference(self):
        a = self.assembly("a", {"S.template.json": TEMPLATE})
        b = self.assembly("b", {"S.template.json": self.variant(
            lambda t: t["Resources"]["EndpointConfig"]["Properties"]["ProductionVariants"].append({}))})
        problems = compare_templates.compare(a, b)
        self.assertEqual(len(problems), 1)
        self.assertIn("1 items vs 2 items", problems[0])

    def test_template_sets_must_match(self):
        a = self.assembly("a", {"S.template.json": TEMPLATE, "SNested.nested.template.json": TEMPLATE})
        b = self.assembly("b", {"S.template.json": TEMPLATE})
        problems = compare_templates.compare(a, b)
        self.assertEqual(len(problems), 1)
        self.assertIn("SNested.nested.template.json: only in", problems[0])

    def test_expected_text_must_be_in_both(self):
        a = self.assembly("a", {"S.template.json": TEMPLATE})
        b = self.assembly("b", {"S.template.json": TEMPLATE})
        self.assertEqual(compare_templates.compare(a, b, ["ml.trn1.2xlarge", '"A": "1"']), [])
        problems = compare_templates.compare(a, b, ["ml.inf2.48xlarge"])
        self.assertEqual(len(problems), 2)

    def test_main_exit_codes(self):
        a = self.assembly("a", {"S.template.json": TEMPLATE})
        b = self.assembly("b", {"S.template.json": self.variant(lambda t: t.update(Description="x"))})
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            self.assertEqual(compare_templates.main([str(a), str(a)]), 0)
            self.assertEqual(compare_templates.main([str(a), str(b)]), 1)
            self.assertEqual(compare_templates.main([str(a), str(self.tmp / "nope")]), 2)
        self.assertIn("/Description: \"calm3 (lowCost)\" vs \"x\"", out.getvalue())
        self.assertIn("not a cloud assembly", err.getvalue())


if __name__ == "__main__":
    unittest.main()
