"""Which backbone an adapter belongs to: the record written as a run folder's ``base_model.json``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

__all__ = ["BaseModelRecord"]


@dataclass
class BaseModelRecord:
    """The backbone an adapter was trained on.

    ``needs_remote_code`` only says that loading the backbone runs the checkpoint's own code; it never
    switches remote code on. The person loading the run opts in (``--trust-remote-code``,
    ``load_run(..., trust_remote_code=True)``).
    """

    name_or_path: Optional[str]
    revision: Optional[str]
    fingerprint: str
    built_from_config: bool
    needs_remote_code: bool = False
    family: Optional[str] = None
    """Registry name of the backbone family (gr_ft.backbones.BACKBONES)."""

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "BaseModelRecord":
        raw = json.loads(Path(path).read_text())
        if "trust_remote_code" in raw:  # run folders written before 0.2 named the flag after the permission
            raw["needs_remote_code"] = raw.pop("trust_remote_code")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; is this a base_model.json written by gr-ft?")
        return cls(**raw)
