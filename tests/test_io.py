"""tcsnn.io: one atomic writer for every output; links are replaced, never followed; killed saves are cleaned up."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tcsnn import io as tio


@pytest.fixture
def umask():
    """Set a umask for one test (restored afterwards)."""
    old = os.umask(0o022)
    os.umask(old)

    def set_(mask: int) -> None:
        os.umask(mask)

    yield set_
    os.umask(old)


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    return victim


# --------------------------------------------------------------------------------------------- the writer


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_follow_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    for p in (tio.write_text(tmp_path / "a.txt", "x"), tio.save_torch({"w": torch.ones(2)}, tmp_path / "c.pt")):
        assert p.stat().st_mode & 0o777 == mode


def test_writes_replace_the_whole_file_and_leave_no_temp(tmp_path):
    path = tmp_path / "out.json"
    tio.write_json(path, {"a": 1})
    tio.write_json(path, {"b": 2})
    assert json.loads(path.read_text()) == {"b": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_link_at_the_target_is_replaced_not_followed(tmp_path):
    victim = _victim(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    for name, write in [("a.txt", lambda p: tio.write_text(p, "new")),
                        ("b.csv", lambda p: tio.write_csv(p, ["x"], [[1]])),
                        ("c.pt", lambda p: tio.save_torch({"x": 1}, p))]:
        (out / name).symlink_to(victim)
        write(out / name)
        assert not (out / name).is_symlink() and (out / name).is_file()
    assert victim.read_text() == "precious"


def test_the_temp_file_is_created_exclusively(tmp_path, monkeypatch):
    """A link planted under the temp name is never opened: the write fails and the link's target is untouched."""
    victim = _victim(tmp_path)
    planted = tmp_path / ".out.txt.planted.tmp"
    planted.symlink_to(victim)
    monkeypatch.setattr(tio, "temp_name", lambda path: planted)
    with pytest.raises(FileExistsError):
        tio.write_text(tmp_path / "out.txt", "attack")
    assert victim.read_text() == "precious" and not (tmp_path / "out.txt").exists()


def test_old_fixed_temp_names_are_not_used(tmp_path):
    """The writers before tcsnn.io used NAME.tmp / .NAME.PID.tmp: links planted there stay untouched."""
    from tcsnn.robustness import write_csv

    victim = _victim(tmp_path)
    for name in ("robustness.csv.tmp", f".robustness.csv.{os.getpid()}.tmp", "config.json.tmp"):
        (tmp_path / name).symlink_to(victim)
    write_csv({"rows": []}, tmp_path / "robustness.csv")
    tio.write_json(tmp_path / "config.json", {})
    assert victim.read_text() == "precious"
    assert (tmp_path / "robustness.csv").read_text().startswith("kind,")


@pytest.mark.parametrize("where", ["writer", "fsync", "replace"])
def test_an_interrupted_save_keeps_the_old_file_and_removes_its_temp(tmp_path, monkeypatch, where):
    """Kill points inside the save (Ctrl-C raised in-process): the old file stays whole, no temp file is left."""
    path = tmp_path / "ck.pt"
    tio.save_torch({"w": torch.ones(3)}, path)

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    if where == "writer":
        def write(f):
            f.write(b"half a checkpoint")
            interrupt()
        call = lambda: tio.atomic_write(path, write)  # noqa: E731
    else:
        monkeypatch.setattr(os, where, interrupt)
        call = lambda: tio.save_torch({"w": torch.zeros(3)}, path)  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        call()
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]


def test_a_killed_save_leaves_a_temp_that_the_next_write_removes(tmp_path):
    """A real SIGKILL in the middle of a save: the target is intact; the orphan temp file goes on the next save."""
    path = tmp_path / "ck.pt"
    tio.save_torch({"w": torch.ones(3)}, path)
    script = textwrap.dedent(f"""
        import os, signal
        from tcsnn import io
        def write(f):
            f.write(b"half")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        io.atomic_write({str(path)!r}, write)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == -signal.SIGKILL
    orphans = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(orphans) == 1 and orphans[0].name.startswith(".ck.pt.")
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
    tio.save_torch({"w": torch.zeros(3)}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]


def test_stale_temp_cleanup_keeps_live_writers_and_other_files(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = tmp_path / f".ck.pt.{os.getpid()}.{'0' * 16}.tmp"
    stale = tmp_path / f".ck.pt.{dead.pid}.{'1' * 16}.tmp"
    legacy = tmp_path / ".checkpoint.pt.ab_cd123.tmp"  # tempfile.mkstemp names of older versions
    other = tmp_path / "notes.tmp"
    for p in (live, stale, legacy, other):
        p.write_text("x")
    assert tio.clean_stale_temps(tmp_path) == [stale]
    assert tio.clean_stale_temps(tmp_path, legacy=True) == [legacy]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


def test_folders_and_files_in_the_way_are_one_clear_error(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        tio.write_text(tmp_path / "dir", "x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        tio.write_text(tmp_path / "file" / "out.txt", "x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        tio.ensure_folder(tmp_path / "file")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        tio.ensure_folder(tmp_path / "file" / "sub")
    assert tio.ensure_folder(tmp_path / "new" / "sub").is_dir()


def test_append_refuses_a_link(tmp_path):
    victim = _victim(tmp_path)
    (tmp_path / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(ValueError, match="symbolic link"):
        tio.append_text(tmp_path / "metrics.jsonl", "{}\n")
    assert victim.read_text() == "precious"
    tio.append_text(tmp_path / "m.jsonl", "a\n")
    tio.append_text(tmp_path / "m.jsonl", "b\n")
    assert (tmp_path / "m.jsonl").read_text() == "a\nb\n"


def test_save_figure_names_the_file_it_wrote(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()
    fig.add_subplot().plot([0, 1])
    assert tio.save_figure(fig, tmp_path / "runs") == tmp_path / "runs.png"
    assert (tmp_path / "runs.png").read_bytes()[:4] == b"\x89PNG"
    assert tio.save_figure(fig, tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")


# --------------------------------------------------------------------------------------------- reading


def test_unreadable_torch_files_are_one_clear_line(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "README.md").write_text("# not a checkpoint\n")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    cases = {"empty.pt": "empty \\(0 bytes\\)", "README.md": "not a readable", "evil.pt": "refuses to load"}
    for name, match in cases.items():
        with pytest.raises(ValueError, match=match) as info:
            tio.read_torch_file(tmp_path / name)
        assert "\n" not in str(info.value) and "weights_only" not in str(info.value)
    with pytest.raises(ValueError, match="is a folder"):
        tio.read_torch_file(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        tio.read_torch_file(tmp_path / "missing.pt")


# --------------------------------------------------------------------------------------- every output


def test_command_outputs_replace_planted_links(tiny_run, tmp_path):
    """report's curves.png, simulate's csv, robustness' csv and train --resume's files: links are replaced."""
    import shutil

    from tcsnn.cli import main

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    victim = _victim(tmp_path)
    for p in (run / "curves.png", run / "config.json.tmp", tmp_path / "sim" / "sim_images.csv",
              tmp_path / "rob" / "robustness.csv.tmp", tmp_path / "rob" / "robustness.csv"):
        p.parent.mkdir(exist_ok=True)
        p.symlink_to(victim)
    assert main(["report", str(run)]) == 0
    assert main(["simulate", "--checkpoint", str(run), "--limit", "3", "--out", str(tmp_path / "sim")]) == 0
    assert main(["robustness", "--checkpoint", str(run), "--out", str(tmp_path / "rob"), "--bits", "4",
                 "--snr", "", "--jitter", "", "--limit", "20", "--no-progress"]) == 0
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert victim.read_text() == "precious"
    for p in (run / "curves.png", tmp_path / "sim" / "sim_images.csv", tmp_path / "rob" / "robustness.csv"):
        assert p.is_file() and not p.is_symlink()


def test_train_resume_refuses_a_linked_metrics_file(tiny_run, tmp_path, capsys):
    import shutil

    from tcsnn.cli import main

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    victim = tmp_path / "victim.jsonl"
    os.replace(run / "metrics.jsonl", victim)
    (run / "metrics.jsonl").symlink_to(victim)
    before = victim.read_text()
    rc = main(["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"])
    assert victim.read_text() == before  # never appended or truncated through the link
    if rc == 0:  # the resume rewrite replaced the link by a file of its own
        assert not (run / "metrics.jsonl").is_symlink()
    else:
        assert "symbolic link" in capsys.readouterr().err


def test_train_removes_temp_files_of_killed_saves(tiny_run, tmp_path, capsys):
    import shutil

    from tcsnn.cli import main

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    orphans = [run / ".checkpoint.pt.k2j_8a9q.tmp", run / ".checkpoint.pt.999999999.0123456789abcdef.tmp"]
    for p in orphans:
        p.write_bytes(b"half")
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert not any(p.exists() for p in orphans)
    assert "interrupted save" in capsys.readouterr().err


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o027, 0o640)])
def test_nir_files_follow_the_umask(tmp_path, umask, mask, mode):
    pytest.importorskip("nir")
    from tcsnn.models import create_model
    from tcsnn.neuromorphic.nir import write_nir

    umask(mask)
    model = create_model("sfc", in_features=4, hidden=[3], num_classes=2).eval()
    write_nir(model, tmp_path / "m.nir", input_shape=(4,))
    assert (tmp_path / "m.nir").stat().st_mode & 0o777 == mode
    assert [p.name for p in tmp_path.iterdir()] == ["m.nir"]
