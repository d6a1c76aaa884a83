"""Shared utilities: progress bars that suit a redirected log, atomic writes, Hub-id detection."""

import io
import sys

import pytest

from gr_ft.utils import LOG_INTERVAL_S, atomic_write_text, is_hub_id, progress_bar


def test_progress_bar_in_a_redirected_log_writes_one_line_per_interval(monkeypatch):
    log = io.StringIO()  # not a terminal, like `gr-ft finetune ... 2> train.log`
    monkeypatch.setattr(sys, "stderr", log)
    for _ in progress_bar(range(5000), desc="epoch 1"):
        pass
    lines = [line for line in log.getvalue().replace("\r", "\n").splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, lines  # the opening and closing states, not one per refresh
    assert progress_bar(range(3)).mininterval == LOG_INTERVAL_S


def test_progress_bar_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("GRFT_PROGRESS", "0")
    assert progress_bar(range(3)).disable
    monkeypatch.delenv("GRFT_PROGRESS")
    assert progress_bar(range(3), enabled=False).disable


def test_atomic_write_leaves_no_temporary_file_and_names_a_missing_folder(tmp_path):
    path = atomic_write_text(tmp_path / "metrics.json", "{}")
    assert path.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    with pytest.raises(ValueError, match="does not exist"):
        atomic_write_text(tmp_path / "missing" / "metrics.json", "{}")


def test_hub_ids_are_user_slash_name_that_is_not_a_local_path(tmp_path):
    assert is_hub_id("zhihan1996/DNABERT-2-117M")
    assert not is_hub_id(str(tmp_path)) and not is_hub_id("./models/esm2") and not is_hub_id("kmer6")
