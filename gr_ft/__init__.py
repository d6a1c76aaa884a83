"""gr-ft: fine-tune DNA and protein language models for gene regulation.

Example:
    >>> import gr_ft
    >>> predictor = gr_ft.load_run("runs/demo")          # a folder written by `gr-ft finetune`
    >>> predictor.predict(["TATAAAAGGCGC" * 8])
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public names, imported lazily so `gr-ft --help` stays fast.
_EXPORTS = {
    "FinetuneConfig": "gr_ft.config",
    "load_config": "gr_ft.config",
    "SequenceTokenizer": "gr_ft.tokenization",
    "SequenceModel": "gr_ft.modeling",
    "load_backbone": "gr_ft.modeling",
    "build_backbone": "gr_ft.modeling",
    "apply_adapter": "gr_ft.adapters",
    "load_run": "gr_ft.predictor",
    "evaluate_run": "gr_ft.predictor",
    "Predictor": "gr_ft.predictor",
    "MetricAccumulator": "gr_ft.evaluation",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gr_ft' has no attribute {name!r}")
