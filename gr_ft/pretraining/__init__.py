"""Self-supervised masked-LM pretraining (DNABERT / ESM style) and continued pretraining on FASTA.

- :mod:`.config`: ``PretrainConfig`` (corpus, model, masking, train sections).
- :mod:`.corpus`: streamed FASTA windows (both strands, N runs skipped, held-out records), batches.
- :mod:`.masking`: 80/10/10 token masking and DNABERT span masking for overlapping k-mers.
- :mod:`.model`: masked-LM models and the objective that scores masked positions only.

The recipe ``recipes/pretrain_mlm.py`` puts them together::

    accelerate launch recipes/pretrain_mlm.py --config recipes/configs/pretrain_dna_kmer.yaml

Example:
    >>> tokenizer = SequenceTokenizer.from_pretrained("kmer6")
    >>> stream = WindowStream(CorpusConfig(train_files=["corpus.fa.gz"]), tokenizer, batch_size=32)
    >>> loader = DataLoader(stream, batch_size=None, collate_fn=MaskedLMCollator(tokenizer, MaskingConfig()))
    >>> objective = MaskedLMObjective(build_mlm_model(ModelConfig(), tokenizer))
    >>> objective(**next(iter(loader)))["loss"].backward()
"""

from .config import CorpusConfig, MaskingConfig, PretrainConfig, PretrainTrainConfig
from .corpus import (
    TokenBatch,
    WindowStream,
    build_window_encoder,
    is_held_out,
    resolve_alphabet,
    tokens_per_window,
    validation_windows,
)
from .masking import MaskedLMCollator, mask_tokens, resolve_span_length, select_mask_positions
from .model import MaskedLMObjective, build_mlm_model, evaluate_masked_lm, load_mlm_model

__all__ = [
    "PretrainConfig",
    "CorpusConfig",
    "MaskingConfig",
    "PretrainTrainConfig",
    "TokenBatch",
    "WindowStream",
    "validation_windows",
    "build_window_encoder",
    "tokens_per_window",
    "is_held_out",
    "resolve_alphabet",
    "MaskedLMCollator",
    "mask_tokens",
    "select_mask_positions",
    "resolve_span_length",
    "MaskedLMObjective",
    "build_mlm_model",
    "load_mlm_model",
    "evaluate_masked_lm",
]
