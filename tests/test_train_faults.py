"""Faults and bad input in ``examples/train.py``, each tried as a new user would: the run
stops with one line that names the cause (exit 2 for bad input, 3 for divergence), and no
earlier result is lost."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from sshpe import checkpoint, metrics_log
from sshpe.methods import SSHPEMethod

from tests.test_train import TINY, _metrics, _run, data

__all__ = ["data"]  # the tiny synthetic set, shared with test_train


def _one_error_line(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("train.py: error: "), err
    for needle in needles:
        assert needle in err, err
    return err


def _strict_json_lines(path: Path) -> list[dict[str, Any]]:
    def reject(constant: str) -> Any:
        raise AssertionError(f"{path} holds a bare {constant}")

    return [json.loads(line, parse_constant=reject) for line in path.read_text().splitlines()]


def test_a_diverging_run_stops_and_logs_no_nan(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = [*data, *TINY, "--method", "posemum", "--steps", "6", "--lr", "1e6"]
    assert _run([*args, "--log-every", "2", "--out", str(out)]) == 3
    _one_error_line(capsys, "diverged by step 2", "none was written")
    assert not (out / "checkpoint.pt").exists() and not (out / "results.json").exists()
    _strict_json_lines(out / "metrics.jsonl")


def test_divergence_keeps_the_last_good_checkpoint(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """A loss that turns NaN at step 5 (of a run checkpointing every 2 steps, checking at
    every 3rd) stops the run at step 6 with the step-4 checkpoint intact."""
    losses = SSHPEMethod.losses

    def nan_from_step_5(self: SSHPEMethod, *batches: Any) -> dict[str, torch.Tensor]:
        out = losses(self, *batches)
        if self.teacher.step >= 4:
            out["loss"] = out["loss"] * math.nan
        return out

    monkeypatch.setattr(SSHPEMethod, "losses", nan_from_step_5)
    out = tmp_path / "run"
    args = [*data, *TINY, "--method", "consistency", "--steps", "9", "--ckpt-every", "2"]
    assert _run([*args, "--log-every", "3", "--out", str(out)]) == 3
    _one_error_line(capsys, "diverged by step 6", f"{out / 'checkpoint.pt'} (step 4)")
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 4
    assert all(v.isfinite().all() for v in ckpt["student"].values() if v.is_floating_point())
    assert [r["step"] for r in _strict_json_lines(out / "metrics.jsonl")] == [3]


def test_non_finite_values_are_logged_as_null(tmp_path: Path) -> None:
    log = metrics_log.MetricsLog(tmp_path, enabled=True)
    log.write({"step": 1, "loss": math.nan, "eval": {"student": {"AP": math.inf}}})
    assert _strict_json_lines(tmp_path / "metrics.jsonl") == [
        {"step": 1, "loss": None, "eval": {"student": {"AP": None}}}
    ]


def _edited(src: Path, dst: Path, edit: str) -> Path:
    coco = json.loads(src.read_text())
    ann = coco["annotations"][1]
    if edit == "nan keypoint":
        ann["keypoints"][0] = math.nan
    elif edit == "nan bbox":
        ann["bbox"][2] = math.nan
    else:
        ann["bbox"] = [0, 0, 1e30, 1e30]
    dst.write_text(json.dumps(coco))
    return dst


@pytest.mark.parametrize(
    ("flag", "edit", "message"),
    [
        ("--val-ann", "nan keypoint", "keypoint that is not finite"),
        ("--val-ann", "nan bbox", "bbox that is not finite"),
        ("--train-ann", "nan bbox", "bbox that is not finite"),
        ("--train-ann", "huge bbox", "beyond 1e+07 px"),
    ],
)
def test_non_finite_ground_truth_names_file_and_annotation(
    flag: str,
    edit: str,
    message: str,
    data: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A validation file with a NaN keypoint used to score AP 1.000 (pycocotools counts a
    NaN similarity as a match); now no file with non-finite or absurd coordinates loads."""
    args = list(data)
    index = args.index(flag) + 1
    bad = _edited(Path(args[index]), tmp_path / "bad.json", edit)
    args[index] = str(bad)
    assert _run([*args, *TINY, "--steps", "1", "--out", str(tmp_path / "run")]) == 2
    _one_error_line(capsys, str(bad), "annotation #1", message)
    assert not (tmp_path / "run").exists()  # nothing written before the inputs are read


def test_bad_values_found_late_still_write_nothing(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Inputs checked once the data is read (a missing --pretrained file, a mixing point
    the model lacks) fail before the run folder is touched, so an --overwrite never
    deletes an earlier run for a run that cannot start."""
    out = tmp_path / "run"
    assert _train(data, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    missing = tmp_path / "none.pt"
    assert _train(data, out, "--overwrite", "--pretrained", str(missing)) == 2
    _one_error_line(capsys, f"--pretrained file not found: {missing}")
    posemum = ["--method", "posemum", "--mix-at", "", "layer9", "--overwrite"]
    assert _train(data, out, *posemum) == 2
    _one_error_line(capsys, "layer9")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def _train(data: list[str], out: Path, *extra: str) -> int:
    return _run([*data, *TINY, "--method", "supervised", "--steps", "2", "--out", str(out), *extra])


def test_an_earlier_run_is_never_replaced_silently(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _train(data, out, "--flip-test") == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert _train(data, out) == 2
    _one_error_line(capsys, f"--out {out} holds an earlier run", "--resume", "--overwrite")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    (out / "notes.txt").write_text("mine")
    assert _train(data, out, "--overwrite", "--method", "consistency") == 0
    assert json.loads((out / "config.json").read_text())["method"]["method"] == "consistency"
    assert (
        json.loads((out / "results.json").read_text())["config"]["evaluation"]["flip_test"] is False
    )
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own files go


@pytest.mark.parametrize("damage", ["truncated", "empty", "not a checkpoint", "missing key"])
def test_a_damaged_checkpoint_is_one_line(
    damage: str, data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _train(data, out, "--stop-after", "1") == 0
    path = out / "checkpoint.pt"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "not a checkpoint":
        torch.save([1, 2], path)
    else:
        ckpt = torch.load(path, weights_only=True)
        del ckpt["optimizer"]
        torch.save(ckpt, path)
    capsys.readouterr()
    assert _train(data, out, "--resume") == 2
    _one_error_line(capsys, str(path))


def test_a_full_disk_is_one_line_and_keeps_the_old_checkpoint(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    out = tmp_path / "run"
    assert _train(data, out, "--stop-after", "1") == 0
    good = (out / "checkpoint.pt").read_bytes()

    def full_disk(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        Path(f).write_bytes(b"partial")
        raise RuntimeError(
            "[enforce fail] PytorchStreamWriter failed writing file: file write failed"
        )

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    capsys.readouterr()
    assert _train(data, out, "--resume") == 2
    _one_error_line(capsys, f"cannot write the checkpoint {out / 'checkpoint.pt'}", "disk is full")
    assert (out / "checkpoint.pt").read_bytes() == good
    assert not list(out.glob(".checkpoint.pt.tmp"))


def test_resuming_a_finished_run_changes_nothing(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _train(data, out) == 0
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert _run(["--resume", "--out", str(out), "--no-progress"]) == 0  # no other flag needed
    assert "finished earlier" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == files


def test_the_log_rewrite_at_resume_is_atomic(tmp_path: Path, monkeypatch: Any) -> None:
    """A kill while ``--resume`` trims ``metrics.jsonl`` leaves the whole old log."""
    lines = [json.dumps({"step": s, "loss": 1.0}) for s in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")

    def killed(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(metrics_log.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        metrics_log.MetricsLog(tmp_path, enabled=True, resume_step=2)
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == lines
    monkeypatch.undo()
    metrics_log.MetricsLog(tmp_path, enabled=True, resume_step=2)
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == lines[:2]


def test_a_saved_config_repeats_the_run(data: list[str], tmp_path: Path) -> None:
    first, again = tmp_path / "first", tmp_path / "again"
    args = [*data, *TINY, "--method", "posemum", "--steps", "3", "--log-every", "1"]
    assert _run([*args, "--mix-feature-mode", "all", "--seed", "5", "--out", str(first)]) == 0
    config = first / "config.json"
    assert _run(["--config", str(config), "--out", str(again)]) == 0
    assert _metrics(again) == _metrics(first)
    saved = json.loads((again / "config.json").read_text())
    assert saved["method"]["mix_feature_mode"] == "all" and saved["schedule"]["seed"] == 5


def test_a_config_file_with_an_unknown_option_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"schedule": {"stesp": 3}}))
    assert _run(["--config", str(path)]) == 2
    _one_error_line(capsys, "unknown option schedule.stesp")


def test_tensorboard_logs_the_scalars_of_the_metrics_log(data: list[str], tmp_path: Path) -> None:
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    out = tmp_path / "run"
    args = [*data, *TINY, "--method", "consistency", "--steps", "4", "--log-every", "2"]
    assert _run([*args, "--tensorboard", "--out", str(out)]) == 0
    events = event_accumulator.EventAccumulator(str(out / "tb"))
    events.Reload()
    logged = {
        (e.step, tag): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)
    }
    want = {}
    for record in _metrics(out):
        for key, value in record.items():
            if key == "eval":
                for model, row in value.items():
                    want |= {(record["step"], f"eval/{model}/{k}"): v for k, v in row.items()}
            elif key != "step" and value is not None:
                want[(record["step"], key)] = value
    assert {k for k in logged if not k[1].startswith("crops_per_s")} == set(want)
    for key, value in want.items():
        assert logged[key] == pytest.approx(value, rel=1e-6), key


def test_resume_of_a_one_generator_checkpoint_is_refused(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint of the trainer whose step drew from one generator cannot continue
    exactly with one generator per kind of draw: one line says so."""
    out = tmp_path / "old"
    args = [*data, *TINY, "--method", "posemum", "--steps", "4", "--out", str(out)]
    assert _run([*args, "--stop-after", "2"]) == 0
    path = out / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["rng"] = [
        {
            **{k: v for k, v in s.items() if k != "generators"},
            "generator": torch.Generator().get_state(),
        }
        for s in ckpt["rng"]
    ]
    torch.save(ckpt, path)
    capsys.readouterr()
    assert _run([*args, "--resume"]) == 2
    _one_error_line(capsys, "no random state for", "start the run over")
