"""publish.py: temporary names, stale-file cleanup, all-or-nothing publishing with rollback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from wsfusion_core import publish
from wsfusion_core.errors import OutputError
from wsfusion_core.publish import (
    HOST,
    is_temp_name,
    publish_all,
    remove_stale,
    rename_noreplace,
    temp_path,
)


def staged(folder, name, text):
    p = temp_path(folder / name)
    p.write_text(text)
    return p


def test_temp_names_are_short_unique_and_recognised(tmp_path):
    long_target = tmp_path / ("x" * 251 + ".tif")
    names = {temp_path(long_target).name for _ in range(50)}
    assert len(names) == 50
    for n in names:
        assert len(n) < 60 and is_temp_name(n) and f"-{os.getpid()}-{HOST}-" in n
        assert n.startswith(".wsfusion-")
    assert not is_temp_name(".fused.tif.123.tmp.tif")


def test_rename_noreplace_never_replaces(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("new")
    b.write_text("old")
    with pytest.raises(FileExistsError):
        rename_noreplace(a, b)
    assert b.read_text() == "old" and a.read_text() == "new"
    b.unlink()
    rename_noreplace(a, b)
    assert b.read_text() == "new" and not a.exists()


@pytest.mark.parametrize("mode", ["link", "placeholder"])
def test_rename_noreplace_fallbacks(tmp_path, monkeypatch, mode):
    """File systems without renameat2 (then without hard links) still never replace."""
    monkeypatch.setattr(publish, "_LIBC", None)
    if mode == "placeholder":
        def no_link(*_a):
            raise PermissionError(1, "Operation not permitted")
        monkeypatch.setattr(os, "link", no_link)
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("new")
    b.write_text("old")
    with pytest.raises(FileExistsError):
        rename_noreplace(a, b)
    assert b.read_text() == "old"
    b.unlink()
    rename_noreplace(a, b)
    assert b.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_publish_all_new_and_replaced(tmp_path):
    (tmp_path / "old.tif").write_text("old")
    pairs = [(staged(tmp_path, "new.tif", "n"), tmp_path / "new.tif"),
             (staged(tmp_path, "old.tif", "o2"), tmp_path / "old.tif")]
    publish_all(pairs, overwrite=True)
    assert (tmp_path / "new.tif").read_text() == "n" and (tmp_path / "old.tif").read_text() == "o2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.tif", "old.tif"]


def test_publish_all_without_overwrite_takes_everything_back(tmp_path):
    """The second target exists: the first, already moved, is taken back."""
    (tmp_path / "b.tif").write_text("someone's")
    sa, sb = staged(tmp_path, "a.tif", "A"), staged(tmp_path, "b.tif", "B")
    with pytest.raises(OutputError) as err:
        publish_all([(sa, tmp_path / "a.tif"), (sb, tmp_path / "b.tif")], overwrite=False)
    assert err.value.path == tmp_path / "b.tif"
    assert not (tmp_path / "a.tif").exists() and (tmp_path / "b.tif").read_text() == "someone's"


def test_publish_all_failure_restores_replaced_files(tmp_path):
    """The second move fails (its staged file vanished): the replaced first target returns."""
    (tmp_path / "a.tif").write_text("previous A")
    sa, sb = staged(tmp_path, "a.tif", "A"), staged(tmp_path, "b.tif", "B")
    sb.unlink()
    with pytest.raises(OutputError) as err:
        publish_all([(sa, tmp_path / "a.tif"), (sb, tmp_path / "b.tif")], overwrite=True)
    assert "no output was published" in str(err.value)
    assert (tmp_path / "a.tif").read_text() == "previous A"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]


def test_stale_files_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    mine = tmp_path / f".wsfusion-{os.getpid()}-{HOST}-1.tmp.tif"
    stale = tmp_path / f".wsfusion-{dead}-{HOST}-1.tmp.tif"
    other_host = tmp_path / f".wsfusion-{dead}-{'f' * 6 if HOST != 'ffffff' else 'e' * 6}-1.tmp.tif"
    user_file = tmp_path / ".wsfusion-notes.txt"
    for p in (mine, stale, other_host, user_file):
        p.write_text("x")
    assert remove_stale(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [mine.name, other_host.name, user_file.name])


def test_a_replaced_symlink_comes_back_as_the_symlink(tmp_path):
    real = tmp_path / "real.tif"
    real.write_text("previous")
    (tmp_path / "a.tif").symlink_to(real)
    sa, sb = staged(tmp_path, "a.tif", "A"), staged(tmp_path, "b.tif", "B")
    sb.unlink()  # the second move fails
    with pytest.raises(OutputError):
        publish_all([(sa, tmp_path / "a.tif"), (sb, tmp_path / "b.tif")], overwrite=True)
    assert (tmp_path / "a.tif").is_symlink() and (tmp_path / "a.tif").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "real.tif"]
