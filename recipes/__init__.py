"""Standalone recipe scripts (run with accelerate launch / torchrun, or through `gr-ft`)."""
