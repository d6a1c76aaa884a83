"""Label schemes: binary, multi-class, multi-label, regression and per-position labels.

A :class:`LabelSpec` is inferred from the training split once, saved as ``label_map.json`` in
the run folder, and used to encode dev/test labels and to decode predictions. Label names are
kept as strings (``"acceptor"``, ``"1"``) and mapped to ids in sorted order.

Example:
    >>> spec = infer_label_spec(["donor", "none", "acceptor"], problem_type="auto")
    >>> spec.problem_type, spec.names
    ('multiclass', ['acceptor', 'donor', 'none'])
    >>> spec.encode("none", where="dev.csv:7")
    2
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

__all__ = ["LabelSpec", "infer_label_spec", "load_label_spec", "check_no_empty_labels"]

POSITION_ALPHABET = frozenset("0123456789")


@dataclass
class LabelSpec:
    """How labels map to model outputs."""

    problem_type: str
    """binary, multiclass, multilabel, regression or token_classification."""
    names: list[str] = field(default_factory=list)
    """Class names by id (empty for regression)."""
    separator: str = ";"
    """Separator between names in a multilabel cell."""

    @property
    def num_labels(self) -> int:
        """Model output width: 1 for regression, else the number of classes."""
        return 1 if self.problem_type == "regression" else len(self.names)

    @property
    def id_of(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def encode(self, value: Any, where: str, sequence_length: Optional[int] = None):
        """Encode one raw label; ``where`` ("file:line") goes into any error."""
        text = str(value).strip()
        if not text and self.problem_type != "multilabel":
            raise ValueError(f"{where}: empty label; fill it in or remove the row (an empty cell is never a class)")
        if self.problem_type == "regression":
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"{where}: label {text!r} is not a number (regression task)") from None
            if not math.isfinite(number):
                raise ValueError(f"{where}: label {text!r} is not a finite number (regression task); fix or drop the row")
            return number
        if self.problem_type == "token_classification":
            return self._encode_positions(text, where, sequence_length)
        if self.problem_type == "multilabel":
            hot = [0.0] * len(self.names)
            for name in filter(None, (n.strip() for n in text.split(self.separator))):
                hot[self._class_id(name, where)] = 1.0
            return hot
        return self._class_id(text, where)

    def _class_id(self, name: str, where: str) -> int:
        ids = self.id_of
        if name not in ids:
            raise ValueError(
                f"{where}: unknown label {name!r}; this model knows {self.names}. "
                f"Fix the label or train a model that includes it."
            )
        return ids[name]

    def _encode_positions(self, text: str, where: str, sequence_length: Optional[int]) -> list[int]:
        if sequence_length is not None and len(text) != sequence_length:
            raise ValueError(
                f"{where}: per-position label has length {len(text)} but the sequence has length "
                f"{sequence_length}; give one label character per residue"
            )
        ids = self.id_of
        bad = sorted(set(text) - set(ids))
        if bad:
            raise ValueError(f"{where}: per-position label has unknown class(es) {bad}; known: {self.names}")
        return [ids[c] for c in text]

    def decode(self, class_id: int) -> str:
        return self.names[class_id]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")


def load_label_spec(path: str | Path) -> LabelSpec:
    """Read a ``label_map.json`` written by :meth:`LabelSpec.save`."""
    return LabelSpec(**json.loads(Path(path).read_text()))


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _looks_like_positions(labels: Sequence[str], sequences: Optional[Sequence[str]]) -> bool:
    if sequences is None:
        return False
    return all(
        len(lab) == len(seq) > 1 and set(lab) <= POSITION_ALPHABET for lab, seq in zip(labels, sequences)
    )


def check_no_empty_labels(labels: Sequence[Any], where: Sequence[str]) -> None:
    """Refuse empty label cells, naming the first one's ``where`` ("file:line"): an empty cell is never a class.

    Example:
        >>> check_no_empty_labels(["1", " "], ["a.csv:2", "a.csv:3"])  # raises: a.csv:3: empty label
    """
    empty = [i for i, label in enumerate(labels) if not str(label).strip()]
    if empty:
        raise ValueError(f"{where[empty[0]]}: empty label ({len(empty)} such row(s)); fill them in or remove the "
                         f"rows (an empty cell is never a class)")


def _check_position_lengths(labels: Sequence[str], sequences: Optional[Sequence[str]], where: Sequence[str]) -> None:
    """Digit strings that mostly match their sequence's length are per-position labels: a row whose length
    differs is an error saying so (not a class of its own, nor an 'unknown label' later)."""
    if sequences is None or not labels or not all(len(lab) > 1 and set(lab) <= POSITION_ALPHABET for lab in labels):
        return
    wrong = [i for i, (lab, seq) in enumerate(zip(labels, sequences)) if len(lab) != len(seq)]
    if wrong and len(wrong) <= len(labels) // 2:
        i = wrong[0]
        raise ValueError(
            f"{where[i]}: per-position label has length {len(labels[i])} but the sequence has length "
            f"{len(sequences[i])} ({len(wrong)} such row(s)); give one label character per residue"
        )


def _guess_problem_type(labels: list[str], sequences, separator: str) -> str:
    if _looks_like_positions(labels, sequences):
        return "token_classification"
    if any(separator in lab for lab in labels):
        return "multilabel"
    distinct = set(labels)
    if all(_is_number(lab) for lab in distinct) and any(not float(lab).is_integer() for lab in distinct):
        return "regression"
    return "binary" if len(distinct) <= 2 else "multiclass"


def _sort_names(names: set[str]) -> list[str]:
    if all(_is_number(n) for n in names):
        return sorted(names, key=float)
    return sorted(names)


def infer_label_spec(
    labels: Sequence[Any],
    problem_type: str = "auto",
    sequences: Optional[Sequence[str]] = None,
    separator: str = ";",
    where: Optional[Sequence[str]] = None,
) -> LabelSpec:
    """Infer the label scheme from the training labels (and sequences, for per-position labels).

    ``where`` ("file:line" per label) goes into errors about single rows.
    """
    texts = [str(v).strip() for v in labels]
    if not texts:
        raise ValueError("no training labels: the train split is empty")
    where = list(where) if where is not None else [f"train row {i + 1}" for i in range(len(texts))]
    if problem_type in ("auto", "token_classification"):
        _check_position_lengths(texts, sequences, where)
    if problem_type == "auto":
        problem_type = _guess_problem_type(texts, sequences, separator)
    if problem_type != "multilabel":  # an empty multilabel cell means "no class"
        check_no_empty_labels(texts, where)
    if problem_type == "regression":
        return LabelSpec(problem_type, [], separator)
    if problem_type == "token_classification":
        names = set("".join(texts))
    elif problem_type == "multilabel":
        names = {n.strip() for t in texts for n in t.split(separator) if n.strip()}
    else:
        names = set(texts)
    if len(names) < 2 and problem_type != "multilabel":
        raise ValueError(f"the train split has a single label {sorted(names)}; a classifier needs at least two")
    if problem_type == "binary" and len(names) != 2:
        raise ValueError(f"data.problem_type=binary but train has {len(names)} labels: {_sort_names(names)[:10]}")
    return LabelSpec(problem_type, _sort_names(names), separator)
