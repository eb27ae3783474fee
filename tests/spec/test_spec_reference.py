"""docs/spec-reference.md is what ``launcher schema --markdown`` prints: the reference cannot drift."""

from __future__ import annotations

from pathlib import Path

from launcher.spec_reference import spec_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "spec-reference.md"


def test_the_spec_reference_is_generated_from_the_declarations():
    assert DOC.read_text(encoding="utf-8") == spec_reference(), (
        "docs/spec-reference.md is stale: run `launcher schema --markdown > docs/spec-reference.md`")


def test_every_key_of_every_section_is_in_the_reference():
    from landscape_job.spec.sections import ComputeSpec, DataSpec, DirectionsSpec
    from landscape_job.base.schema import declared_keys

    text = spec_reference()
    for section, cls in (("compute", ComputeSpec), ("data", DataSpec), ("directions", DirectionsSpec)):
        for name in declared_keys(cls):
            assert f"| `{section}.{name}` |" in text, f"{section}.{name}"
