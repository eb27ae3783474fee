"""The spec: its sections as frozen dataclasses and the vocabularies they check (the grid,
direction types, metric names, output formats, titles).

The face names the public entry points, imported on first use; everything here is
torch-free, since the launcher and merge validate specs without torch.
"""

from typing import TYPE_CHECKING

from landscape_job.base.lazy import lazy_names

_LAZY = {"Spec": "sections", **dict.fromkeys(("load_spec", "parse_spec", "spec_from_yaml"), "parse")}

if TYPE_CHECKING:  # pragma: no cover
    from landscape_job.spec.sections import Spec
    from landscape_job.spec.parse import load_spec, parse_spec, spec_from_yaml

__getattr__ = lazy_names(__name__, _LAZY)

__all__ = sorted(_LAZY)
