"""Publishing runs: a model card (card.py), the exact repository folder and its upload (publish.py), and LoRA
merging (merge.py); folder.py reads a run folder the way they need it.

A run folder (see :mod:`gr_ft.run_folder`) becomes a Hub repository in three steps, each usable alone:

- :func:`render_model_card` fills ``model_cards/adapter_card.md`` from the run's own files (config,
  metrics, base model record, label map, leakage report) and checks the Hub metadata locally.
- :func:`build_repo_folder` writes exactly the files that would be uploaded (adapter, tokenizer,
  label map, config, base model record, metrics, README.md, and ``backbone/`` only when the
  backbone was built from a config), atomically.
- :func:`push_run` uploads that folder in one commit (nothing partial on the Hub), or only writes it
  with ``local_dir``. ``gr_ft.load_run("user/name")`` downloads it back.

:func:`merge_run` folds a LoRA adapter into the base weights (peft ``merge_and_unload``) and writes a
run folder with full weights that loads standalone.

Example:
    >>> push_run("runs/demo", "me/promoter-lora", local_dir="publish/promoter-lora")  # doctest: +SKIP
    PosixPath('publish/promoter-lora')
    >>> push_run("runs/demo", "me/promoter-lora")  # after `hf auth login`  # doctest: +SKIP
    'https://huggingface.co/me/promoter-lora'
    >>> merge_run("runs/demo", "runs/demo_merged")  # doctest: +SKIP
"""


from .card import KNOWN_CITATIONS, Citation, check_card_metadata, find_citation, render_model_card
from ..run_folder import RunFolder, read_run_folder
from .repo_files import folder_size_mb
from .merge import merge_run
from .publish import build_repo_folder, push_run
from ..utils import is_hub_id

__all__ = [
    "render_model_card",
    "check_card_metadata",
    "build_repo_folder",
    "push_run",
    "merge_run",
    "folder_size_mb",
    "is_hub_id",
    "read_run_folder",
    "RunFolder",
    "Citation",
    "KNOWN_CITATIONS",
    "find_citation",
]
