"""In-silico mutagenesis (ISM): the change of the model output for every single-base substitution.

Each mutant is tokenized the way the run tokenizes its inputs (same tokenizer, same
``data.max_length`` and ``data.crop``), so k-mer, BPE, nucleotide and protein models are all
mutated at the level of bases, never tokens. The effect is ``output(mutant) - output(reference)``
for every model output (each class's logit or probability, the regression value, or the output
of the token covering one base of a per-position task), so the reference letter scores 0.

Shapes (:class:`IsmResult`): ``effects`` is N x L x A x C (sequences, bases, letters, outputs),
A = 4 for DNA in the order ACGT, 20 for proteins (ACDEFGHIKLMNPQRSTVWY), plus one last letter
``-`` for the deletion of the base when ``deletions=True``; positions past a sequence's end are
NaN. ``selected()`` gives N x L x A for each sequence's target class.

Exact shortcuts (the result equals the naive loop of :func:`naive_ism`, which re-tokenizes and
runs every mutant alone; ``tests/test_interpret.py`` checks it):

- all mutants of one sequence go through the model in padded batches sorted by length, under
  ``torch.inference_mode``, with LoRA/IA3 adapters merged into a copy of the model;
- for fixed-rate tokenizers (k-mer, nucleotide, protein) a substitution at base p only changes the
  tokens whose window covers p (k tokens for k-mers, 1 otherwise), so mutant ids are edited from the
  reference ids instead of re-tokenizing (deletions shift every later token and are re-tokenized);
- mutants whose token ids equal the reference's (a base outside the cropped window, or a change
  hidden inside an [UNK] k-mer) get effect 0 without a forward pass, and identical mutants run once.

Example:
    >>> predictor = load_run("runs/demo")
    >>> result = ism(predictor, ["TATAAAAGGC" * 10])
    >>> result.effects.shape          # 1 sequence, 100 bases, ACGT, 2 classes
    (1, 100, 4, 2)
    >>> result.selected()[0, 3]       # change of the class-1 logit for A/C/G/T at base 3
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from ..data import _max_chars, crop_sequences, encode_sequences
from ..utils import progress_bar
from .targets import Target, check_target, inference_model, resolve_class_indices, task_outputs

__all__ = ["DNA_LETTERS", "PROTEIN_LETTERS", "DELETION", "IsmResult", "ism", "naive_ism", "ism_letters"]

logger = logging.getLogger(__name__)

DNA_LETTERS = "ACGT"
PROTEIN_LETTERS = "ACDEFGHIKLMNPQRSTVWY"
DELETION = "-"
FIXED_RATE_KINDS = ("kmer", "nucleotide", "protein")


@dataclass
class IsmResult:
    """ISM effects of N sequences; see the module docstring for shapes."""

    effects: np.ndarray
    """N x L x A x C: output(mutant) - output(reference); 0 for the reference letter, NaN past the end."""
    reference: np.ndarray
    """N x C: the model outputs of each unmutated sequence."""
    letters: str
    """The letters of axis 2, in order (``ACGT``, the 20 amino acids, then ``-`` if deletions were scored)."""
    lengths: np.ndarray
    """N: sequence lengths."""
    class_indices: np.ndarray
    """N: the output each sequence's explanation is about (see ``Target``)."""
    target: Target = field(default_factory=Target)
    forward_passes: int = 0
    """Mutants actually run through the model (after skipping and de-duplication)."""

    def selected(self) -> np.ndarray:
        """N x L x A: the effects on each sequence's target output."""
        return np.take_along_axis(self.effects, self.class_indices[:, None, None, None], axis=3)[..., 0]


def ism_letters(tokenizer) -> str:
    """The substitution alphabet for a run's tokenizer: 20 amino acids for protein models, else ACGT."""
    return PROTEIN_LETTERS if tokenizer.kind == "protein" else DNA_LETTERS


# ---------------------------------------------------------------- mutants


@dataclass
class Mutant:
    position: int
    letter: int
    """Index into the letters (``len(letters)`` = deletion)."""
    sequence: str


def enumerate_mutants(sequence: str, letters: str, deletions: bool) -> list[Mutant]:
    """Every substitution to another letter at every base (and each single-base deletion)."""
    mutants = []
    for position, reference in enumerate(sequence):
        for index, letter in enumerate(letters):
            if letter != reference:
                mutants.append(Mutant(position, index, sequence[:position] + letter + sequence[position + 1 :]))
        if deletions:
            mutants.append(Mutant(position, len(letters), sequence[:position] + sequence[position + 1 :]))
    return mutants


class MutantTokenizer:
    """Token ids of mutants exactly as ``encode_sequences`` would give them, edited in place when possible."""

    def __init__(self, tokenizer, max_length: int, crop: str, position: Optional[int] = None):
        self.tokenizer, self.max_length, self.crop, self.position = tokenizer, max_length, crop, position
        self.fixed_rate = tokenizer.kind in FIXED_RATE_KINDS
        self.vocab = tokenizer.hf.get_vocab()
        self.unk_id = tokenizer.hf.unk_token_id

    def encode(self, sequences: Sequence[str]) -> tuple[list[list[int]], list[Optional[int]]]:
        """Re-tokenize whole sequences; returns ids and the index of the token covering ``position``."""
        encoded, starts = encode_sequences(self.tokenizer, list(sequences), self.max_length, self.crop)
        tokens = [self._token_at(spans, start) for spans, start in zip(encoded["token_spans"], starts)]
        return encoded["input_ids"], tokens

    def _token_at(self, spans, start: int) -> Optional[int]:
        if self.position is None:
            return None
        for index, span in enumerate(spans):
            if span is not None and span[0] + start <= self.position < span[1] + start:
                return index
        return -1  # the base is outside the model's window (cropped or truncated)

    def mutant_ids(self, reference: str, mutants: list[Mutant]) -> tuple[list[list[int]], list[Optional[int]]]:
        """Ids (and target token index) of every mutant of ``reference``."""
        if not self.fixed_rate:
            return self.encode([m.sequence for m in mutants])
        (ids,), (token,) = self.encode([reference])
        covering = self._covering_tokens(reference)
        deleted = [i for i, m in enumerate(mutants) if len(m.sequence) != len(reference)]
        redone = {}
        if deleted:  # a deletion shifts every later token: re-tokenize those mutants
            redone = dict(zip(deleted, zip(*self.encode([mutants[i].sequence for i in deleted]))))
        out_ids, out_tokens = [], []
        for i, mutant in enumerate(mutants):
            new_ids, new_token = redone[i] if i in redone else (self._edit(ids, covering, mutant), token)
            out_ids.append(new_ids)
            out_tokens.append(new_token)
        return out_ids, out_tokens

    def _covering_tokens(self, reference: str) -> dict[int, list[tuple[int, int, int]]]:
        """For each base of the full sequence: (token index, start, end) of the tokens covering it."""
        max_chars = _max_chars(self.tokenizer, self.max_length)
        if self.crop == "ends" and len(reference) > max_chars:
            raise ValueError(f"data.crop=ends joins two pieces of sequences longer than {max_chars}; the ISM "
                             f"shortcut needs start, end or center (or sequences that fit)")
        (crop,), (offset,) = crop_sequences([reference], max_chars, self.crop)
        encoded = self.tokenizer.encode([crop], max_length=self.max_length)
        width = self.tokenizer.k if self.tokenizer.kind == "kmer" else 1
        centre = (width - 1) // 2
        covering: dict[int, list[tuple[int, int, int]]] = {}
        for index, span in enumerate(encoded["token_spans"][0]):
            if span is None:
                continue
            start = span[0] - centre + offset  # the window of this token in full-sequence coordinates
            for base in range(start, start + width):
                covering.setdefault(base, []).append((index, start, start + width))
        return covering

    def _edit(self, ids: list[int], covering, mutant: Mutant) -> list[int]:
        """The reference ids with the tokens covering the substituted base looked up again."""
        new = list(ids)
        for index, start, end in covering.get(mutant.position, ()):
            new[index] = self.vocab.get(mutant.sequence[start:end], self.unk_id)
        return new


# ---------------------------------------------------------------- forward passes


def _padded(id_lists: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids in id_lists)
    input_ids = torch.full((len(id_lists), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(id_lists), width), dtype=torch.long)
    for row, ids in enumerate(id_lists):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


def batched_outputs(model, id_lists: list[list[int]], tokens: list[Optional[int]], pad_id: int, *, batch_size: int,
                    problem_type: str, output: str) -> np.ndarray:
    """Model outputs (M, C) for M token-id lists, run in length-sorted padded batches."""
    order = sorted(range(len(id_lists)), key=lambda i: len(id_lists[i]))
    results: list[Optional[np.ndarray]] = [None] * len(id_lists)
    with torch.inference_mode():
        for begin in range(0, len(order), batch_size):
            chunk = order[begin : begin + batch_size]
            input_ids, attention_mask = _padded([id_lists[i] for i in chunk], pad_id)
            values = task_outputs(model(input_ids=input_ids, attention_mask=attention_mask)["logits"], problem_type,
                                  output)
            if problem_type == "token_classification":  # B, T, C -> B, C at the token covering the position
                values = values[torch.arange(len(chunk)), torch.tensor([tokens[i] for i in chunk])]
            for row, index in enumerate(chunk):
                results[index] = values[row].numpy()
    return np.stack(results)


def _check_position_tokens(tokens: list[Optional[int]], where: str) -> None:
    if any(t == -1 for t in tokens):
        raise ValueError(f"{where}: --position is outside the bases the model sees (cropped, truncated or a k-mer "
                         f"edge without its own token); choose a base inside the window")


# ---------------------------------------------------------------- ISM


@dataclass
class _SequenceIsm:
    effects: np.ndarray  # L, A, C
    reference: np.ndarray  # C
    forward_passes: int


def _ism_one(model, encoder: MutantTokenizer, sequence: str, *, letters: str, deletions: bool, batch_size: int,
             problem_type: str, output: str, where: str) -> _SequenceIsm:
    mutants = enumerate_mutants(sequence, letters, deletions)
    (ref_ids,), ref_tokens = encoder.encode([sequence])
    mutant_ids, mutant_tokens = encoder.mutant_ids(sequence, mutants) if mutants else ([], [])
    if encoder.position is not None:
        _check_position_tokens(ref_tokens + mutant_tokens, where)
    unique: dict[tuple, int] = {tuple(ref_ids) + (ref_tokens[0],): 0}
    rows, run_ids, run_tokens = [], [ref_ids], [ref_tokens[0]]
    for ids, token in zip(mutant_ids, mutant_tokens):
        key = tuple(ids) + (token,)
        if key not in unique:
            unique[key] = len(run_ids)
            run_ids.append(ids)
            run_tokens.append(token)
        rows.append(unique[key])
    pad_id = encoder.tokenizer.pad_token_id if encoder.tokenizer.pad_token_id is not None else 0
    values = batched_outputs(model, run_ids, run_tokens, pad_id, batch_size=batch_size, problem_type=problem_type,
                             output=output)  # M, C
    effects = np.zeros((len(sequence), len(letters) + deletions, values.shape[1]), dtype=np.float32)
    for mutant, row in zip(mutants, rows):
        effects[mutant.position, mutant.letter] = 0.0 if row == 0 else values[row] - values[0]
    return _SequenceIsm(effects, values[0], len(run_ids))


def _stack(per_sequence: list[_SequenceIsm]) -> tuple[np.ndarray, np.ndarray]:
    length = max(item.effects.shape[0] for item in per_sequence)
    shape = (len(per_sequence), length) + per_sequence[0].effects.shape[1:]
    effects = np.full(shape, np.nan, dtype=np.float32)
    for row, item in enumerate(per_sequence):
        effects[row, : item.effects.shape[0]] = item.effects
    return effects, np.stack([item.reference for item in per_sequence])


def ism(predictor, sequences: Sequence[str], target: Optional[Target] = None, *, deletions: bool = False,
        batch_size: int = 128, merge_adapter: bool = True, letters: Optional[str] = None,
        progress: bool = False) -> IsmResult:
    """Score every single-base substitution (and optionally deletion) of each sequence.

    ``predictor`` is what :func:`gr_ft.load_run` returns (model, tokenizer, label spec, config);
    ``batch_size`` counts mutants per forward pass.

        >>> result = ism(load_run("runs/demo"), ["ACGT" * 25], Target(output="prob"))
        >>> result.selected().shape
        (1, 100, 4)
    """
    target = target or Target()
    spec, cfg = predictor.spec, predictor.cfg
    check_target(target, spec.problem_type, spec.num_labels)
    if deletions and target.position is not None:
        raise ValueError("deletions move every later base, so they cannot be scored for one --position; "
                         "drop --deletions for per-position models")
    letters = letters or ism_letters(predictor.tokenizer)
    model = inference_model(predictor.model, merge_adapter)
    encoder = MutantTokenizer(predictor.tokenizer, cfg.data.max_length, cfg.data.crop, target.position)
    sequences = [s.strip().upper() for s in sequences]
    results = [
        _ism_one(model, encoder, seq, letters=letters, deletions=deletions, batch_size=batch_size,
                 problem_type=spec.problem_type, output=target.output, where=f"sequence {number}")
        for number, seq in enumerate(progress_bar(sequences, desc="ism", unit="seq", enabled=progress), start=1)
    ]
    effects, reference = _stack(results)
    return IsmResult(
        effects=effects, reference=reference, letters=letters + (DELETION if deletions else ""),
        lengths=np.array([len(s) for s in sequences]), target=target,
        class_indices=resolve_class_indices(target, spec.problem_type, reference),
        forward_passes=sum(r.forward_passes for r in results),
    )


def naive_ism(predictor, sequences: Sequence[str], target: Optional[Target] = None, deletions: bool = False,
              letters: Optional[str] = None) -> IsmResult:
    """The reference ISM: every mutant re-tokenized and run alone through the model as loaded (slow).

    Kept to check :func:`ism` against and to benchmark it (``benchmarks/ism_speed.py``).
    """
    target = target or Target()
    spec, cfg, tokenizer = predictor.spec, predictor.cfg, predictor.tokenizer
    check_target(target, spec.problem_type, spec.num_labels)
    letters = letters or ism_letters(tokenizer)
    encoder = MutantTokenizer(tokenizer, cfg.data.max_length, cfg.data.crop, target.position)
    per_sequence = []
    for sequence in (s.strip().upper() for s in sequences):
        outputs = {}
        for mutant in [Mutant(-1, -1, sequence)] + enumerate_mutants(sequence, letters, deletions):
            (ids,), (token,) = encoder.encode([mutant.sequence])
            outputs[(mutant.position, mutant.letter)] = batched_outputs(
                predictor.model, [ids], [token], 0, batch_size=1, problem_type=spec.problem_type,
                output=target.output)[0]
        reference = outputs.pop((-1, -1))
        effects = np.zeros((len(sequence), len(letters) + deletions, reference.shape[0]), dtype=np.float32)
        for (position, letter), value in outputs.items():
            effects[position, letter] = value - reference
        per_sequence.append(_SequenceIsm(effects, reference, len(outputs) + 1))
    effects, reference = _stack(per_sequence)
    return IsmResult(effects, reference, letters + (DELETION if deletions else ""),
                     np.array([len(s) for s in sequences]), resolve_class_indices(target, spec.problem_type, reference),
                     target, sum(r.forward_passes for r in per_sequence))
