"""Dataset export: frozen, versioned, leak-free training sets built from the human labels (issue 9, part 1).

`services` writes (create, build, decide, freeze, training manifest), `selectors` reads (what may go in, counts
and imbalance), `split` is the pure grouped/stratified/sticky split, `files` the manifest and the zip.
"""

from .selectors import ExportSummary, LabelCounts, export_exclusions, export_label_issues, export_list, export_summary
from .services import (
    ExportError,
    export_build,
    export_create,
    export_decide,
    export_freeze,
    export_freeze_enqueue,
    export_mark_used,
    training_manifest,
)

__all__ = [
    "ExportError",
    "ExportSummary",
    "LabelCounts",
    "export_build",
    "export_create",
    "export_decide",
    "export_exclusions",
    "export_freeze",
    "export_freeze_enqueue",
    "export_label_issues",
    "export_list",
    "export_mark_used",
    "export_summary",
    "training_manifest",
]
