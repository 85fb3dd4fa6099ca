"""What a new user meets in the first hour (issue 15, section C): the right error first,
the right words, and progress that says what happened."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

import tycho_async
from tycho_async.bars import RichProgress
from tycho_async.cli import app
from tycho_async.errors import Interrupted, NotFound, PartialFailure, UsageError
from tycho_async.progress import PlainProgress

from .support import TYCHOREG, Registry, make_tree, ok, put_version, write_file


def test_pull_list_reports_a_missing_version_not_a_collision(registry: Registry) -> None:
    blob = write_file(Path("tool.bin"), 100)
    ok(registry.cli("push", "tool", "1.0", "tool.bin"))
    Path("tool.bin").unlink()
    for items in (["tool==1.0", "tool==7"], ["tool==7", "tool==1.0"]) * 2:
        result = registry.cli("pull-list", *items, "--force")
        assert result.exit_code == 1, result.output
        assert "tool==7: tool 7 does not exist" in result.stderr
        assert "both write" not in result.stderr
        assert Path("tycho_packages/tool.bin").read_bytes() == blob
    ok(registry.cli("push", "tool", "2.0", "tool.bin" if Path("tool.bin").exists() else
                    "tycho_packages/tool.bin"))
    both = registry.cli("pull-list", "tool==1.0", "tool==2.0")  # both exist: one place
    assert both.exit_code == 2 and "both write" in both.stderr


def test_exists_latest_means_the_latest(registry: Registry) -> None:
    write_file(Path("app.bin"), 10)
    ok(registry.cli("push", "app", "1.0", "app.bin"))
    unset = registry.cli("exists", "app", "latest")
    assert unset.exit_code == 1 and "does not exist" in unset.stdout
    ok(registry.cli("promote", "app", "1.0"))
    found = ok(registry.cli("exists", "app", "latest"))
    assert found.stdout == "app latest exists\n"
    assert ok(registry.cli("pull", "app", "--version", "latest")).exit_code == 0


def test_str_of_a_partial_failure_names_the_failed_items() -> None:
    failures: list[tuple[str, tycho_async.TychoError]] = [
        (f"p{i}", NotFound(f"package 'p{i}' does not exist")) for i in range(5)]
    text = str(PartialFailure("5 of 6 packages failed (1 pulled)", failures))
    assert text.startswith("5 of 6 packages failed (1 pulled)")
    for i in range(3):
        assert f"p{i}: package 'p{i}' does not exist" in text
    assert "p3" not in text and "and 2 more" in text
    one = str(PartialFailure("1 of 2 failed", [("x==1", UsageError("bad"))]))
    assert one == "1 of 2 failed (x==1: bad)"


def test_a_file_is_refused_by_a_package_of_directories(registry: Registry) -> None:
    make_tree(Path("tree"))
    ok(registry.cli("push", "tree", "1", "tree"))
    Path("f1.txt").write_text("plain")
    keys = registry.object_keys()
    for source in ("f1.txt", "-"):
        refused = registry.runner.invoke(app, ["push", "tree", "3", source, "--localname",
                                               "tree.tar.zst"] if source == "-" else
                                         ["push", "tree", "3", source], input="stdin")
        assert refused.exit_code == 2, refused.output
        assert "holds directories" in refused.stderr
        assert registry.object_keys() == keys


def test_from_file_dash_reads_standard_input(registry: Registry) -> None:
    for name in ("a", "b"):
        write_file(Path(f"{name}.bin"), 10, seed=ord(name))
        ok(registry.cli("push", name, "1", f"{name}.bin", "--promote-latest"))
    result = registry.runner.invoke(app, ["pull-list", "--from-file", "-", "--outdir", "out"],
                                    input="a\n# comment\nb==1\n")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in Path("out").iterdir()) == ["a.bin", "a.bin.etag", "b.bin",
                                                           "b.bin.etag"]


def test_prune_says_what_it_did_in_good_english(registry: Registry) -> None:
    for version in ("1", "2", "3"):
        put_version(registry, "pkg", version, f"v{version}".encode(), latest=version == "3")
    dry = ok(registry.cli("prune", "pkg", "--keep", "0", "--dry-run"))
    assert sorted(dry.stdout.splitlines()) == ["pkg: 1 version kept, 2 to delete",
                                               "would delete pkg 1", "would delete pkg 2"]
    done = ok(registry.cli("prune", "pkg", "--keep", "0"))
    assert sorted(done.stdout.splitlines()) == ["deleted pkg 1", "deleted pkg 2",
                                                "pkg: 1 version kept, 2 deleted"]


def test_pull_list_in_a_log_prints_the_items_then_the_summary(tmp_path: Path) -> None:
    env = {**os.environ, "TYCHOREG_REGISTRY": str(tmp_path / "reg")}
    for name in ("a", "b"):
        write_file(Path(f"{name}.bin"), 10, seed=ord(name))
        subprocess.run([TYCHOREG, "push", name, "1", f"{name}.bin", "--promote-latest", "-q"],
                       env=env, check=True, timeout=60)
    log = subprocess.run([TYCHOREG, "pull-list", "a", "b"], env=env, timeout=60, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    assert log.returncode == 0, log.stdout
    lines = log.stdout.splitlines()
    assert [line.split(" ")[0] for line in lines] == ["pulled", "pulled", "pulled"]
    assert lines[0].startswith("pulled a 1 -> ") and lines[1].startswith("pulled b 1 -> ")
    assert lines[2].startswith("pulled 2 files, 20 B in ")


def test_an_interrupted_transfer_says_so_in_its_summary() -> None:
    for make in (lambda s: PlainProgress(s, "pushed", files=1),
                 lambda s: RichProgress(Console(file=s, width=120), "pushed", files=1)):
        stream = io.StringIO()
        with pytest.raises(Interrupted), make(stream) as display:
            display.begin("f.bin", 100).end(False)
            raise Interrupted("interrupted by SIGINT")
        assert "interrupted: pushed 0 files" in stream.getvalue()
        assert "failed" not in stream.getvalue()


def _drawn(display: RichProgress) -> str:
    console = Console(file=io.StringIO(), width=120)
    with console.capture() as captured:
        console.print(display.progress.get_renderable())
    return captured.get()


def test_a_bar_shows_what_is_known() -> None:
    one = RichProgress(Console(file=io.StringIO(), width=120), "pushed", files=1)
    assert _drawn(one).strip() == ""  # nothing before the transfer begins: no "0/?"
    one.begin("f.bin", 2000)
    drawn = _drawn(one)
    assert "pushing" in drawn and "0.0/2.0 KiB" in drawn
    assert "files" not in drawn  # never "0/1 files"
    many = RichProgress(Console(file=io.StringIO(), width=120), "pulled", files=3)
    many.begin("a.bin", 10)
    assert "0/3 files" in _drawn(many)


def test_forced_progress_draws_into_a_pipe(registry: Registry) -> None:
    write_file(Path("f.bin"), 3000)
    pushed = ok(registry.cli("push", "pkg", "1", "f.bin", "--progress"))
    assert "pushing" in pushed.stderr  # the bar, drawn although stderr is no terminal
    assert "pushed 1 file, 2.9 KiB" in pushed.stderr


def test_show_help_says_what_no_version_means() -> None:
    from typer.testing import CliRunner

    text = " ".join(CliRunner().invoke(app, ["show", "-h"]).stdout.split())
    assert "Without it, show describes the package" in text
    assert "default: the latest" not in text


def test_delete_force_has_a_short_form(registry: Registry) -> None:
    put_version(registry, "pkg", "1", b"one", latest=True)
    done = ok(registry.cli("delete", "pkg", "1", "-f"))
    assert "deleted pkg 1" in done.stdout and registry.meta("pkg")["latest"] is None


def test_dir_of_the_package_lists_the_public_api() -> None:
    names = dir(tycho_async)
    assert {"Client", "open_registry", "PartialFailure", "PullResult"} <= set(names)
    assert "TYPE_CHECKING" not in names and "annotations" not in names
    assert sorted(names) == sorted(tycho_async.__all__)


def test_every_error_a_user_can_meet_is_exported() -> None:
    """An API user catches what the CLI reports by exit code: every class of the error
    tree but PreconditionFailed (a lost conditional write, always translated before it
    leaves the registry) is importable from the package."""
    from tycho_async import errors

    tree = {name for name, value in vars(errors).items()
            if isinstance(value, type) and issubclass(value, errors.TychoError)}
    assert tree - {"PreconditionFailed"} <= set(tycho_async.__all__)
