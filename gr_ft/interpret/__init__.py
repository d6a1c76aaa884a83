"""Explain fine-tuned models per base: in-silico mutagenesis, gradient attributions and attention maps.

Every method works for any gr-ft tokenizer (k-mer, BPE, nucleotide, protein): ISM re-tokenizes each
mutant with the run's own tokenizer, and token-level attributions and attention are projected to
bases through the tokenizer's token spans (:mod:`gr_ft.interpret.projection` states the rule).
The command line is ``gr-ft interpret`` (:mod:`gr_ft.interpret.cli`); docs/interpret.md has the details.
Motifs recurring across many sequences' attributions (TF-MoDISco, matched to JASPAR): ``gr-ft motifs``,
:mod:`gr_ft.interpret.motifs` (imported on demand: modisco-lite, memelite and pyjaspar are optional).

Example:
    >>> predictor = load_run("runs/demo")
    >>> ism(predictor, ["TATAAAAGGC" * 10]).selected().shape        # N x L x ACGT
    (1, 100, 4)
    >>> attribute(predictor, ["TATAAAAGGC" * 10], method="ig").bases.shape   # N x L
    (1, 100)
"""

from .attention import AttentionResult, attention_maps
from .attribution import ATTRIBUTION_METHODS, AttributionResult, attribute, embedding_layer
from .ism import IsmResult, ism, naive_ism
from .projection import project_attention, project_tokens, projection_matrix, token_windows
from .targets import Target

__all__ = [
    "ATTRIBUTION_METHODS",
    "AttentionResult",
    "AttributionResult",
    "IsmResult",
    "Target",
    "attention_maps",
    "attribute",
    "embedding_layer",
    "ism",
    "naive_ism",
    "project_attention",
    "project_tokens",
    "projection_matrix",
    "token_windows",
]
