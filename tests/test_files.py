"""``smoothflip._files.atomic_write``: whole files, ordinary permissions, nothing left behind."""

from __future__ import annotations

import os
import stat

import pytest

from smoothflip._files import atomic_write


def test_writes_and_replaces_whole(tmp_path):
    target = tmp_path / "report.md"
    atomic_write(target, b"first")
    atomic_write(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_permissions_follow_the_umask_like_open(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.csv", b"x")
        with open(tmp_path / "b.csv", "wb") as fh:
            fh.write(b"x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.csv").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "b.csv").stat().st_mode)
    assert mode == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "study.toml"
    atomic_write(target, b"old")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.toml"]
