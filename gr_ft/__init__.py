"""gr-ft: fine-tune DNA and protein language models for gene regulation."""

__version__ = "0.1.0"
