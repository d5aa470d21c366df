"""Faults and bad input in ``examples/train.py``, each tried as a new user would: the run
stops with one line that names the cause (exit 2 for bad input, 3 for divergence), and no
earlier result is lost."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
import train
from sshpe import checkpoint, metrics_log, outputs, rundir
from sshpe.cli import parse_config
from sshpe.loaders import build_datasets
from sshpe.methods import SSHPEMethod

from posemum_aug.keypoints import COCO_17, CROWDPOSE_14
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


class _NaNFromRow(torch.nn.Module):
    """``model`` whose heatmaps are NaN from crop ``row`` of each batch on."""

    def __init__(self, model: torch.nn.Module, row: int) -> None:
        super().__init__()
        self.model, self.row = model, row

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        heatmaps: torch.Tensor = self.model(image)
        heatmaps[self.row :] = math.nan
        return heatmaps


@pytest.mark.parametrize("row", [0, 3])
def test_nan_predictions_of_one_model_count_as_misses(
    row: int,
    data: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: Any,
) -> None:
    """A teacher whose predictions are NaN (diverged, a bf16 overflow) stopped the final
    evaluation with exit 2 after all the training, and --resume again. Now its non-finite
    predictions are misses (no result), counted in the log, results.json and the printout,
    and the student is scored as in a run without them."""
    args = [*data, *TINY, "--method", "consistency", "--steps", "2"]
    assert _run([*args, "--out", str(tmp_path / "clean")]) == 0
    clean = json.loads((tmp_path / "clean" / "results.json").read_text())["metrics"]
    evaluate = train.evaluate_models

    def nan_teacher(models: dict[str, torch.nn.Module], *rest: Any) -> Any:
        return evaluate({**models, "teacher": _NaNFromRow(models["teacher"], row)}, *rest)

    monkeypatch.setattr(train, "evaluate_models", nan_teacher)
    capsys.readouterr()
    out = tmp_path / "run"
    assert _run([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "results.json").read_text())["metrics"]
    crops = len(build_datasets(parse_config(args).data, parse_config(args)).val)
    batches = [min(16, crops - start) for start in range(0, crops, 16)]  # --eval-batch-size
    missed = sum(max(0, size - row) for size in batches)
    assert metrics["student"] == clean["student"]
    assert metrics["teacher"]["non_finite"] == missed > 0
    assert "non_finite" not in metrics["student"] and "non_finite" not in clean["teacher"]
    teacher = json.loads((out / "results_teacher.json").read_text())
    assert len(teacher) <= crops - missed  # the NaN crops gave no result (once score-0 ones)
    if row == 0:
        assert teacher == [] and metrics["teacher"]["AP"] == 0.0  # every person missed
    assert f"teacher: {missed} crops with predictions that are not finite, scored as" in printed
    assert [r["eval"] for r in _metrics(out) if "eval" in r] == [metrics]


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
    elif edit == "nan area":
        ann["area"] = math.nan
    elif edit == "negative area":
        ann["area"] = -ann["bbox"][2] * ann["bbox"][3]
    elif edit == "bool keypoint":  # numpy would read true as 1.0
        ann["keypoints"][0] = True
    elif edit == "nested keypoints":  # [[x], [y], [v], ...]: numbers, but not flat
        ann["keypoints"] = [[v] for v in ann["keypoints"]]
    else:
        ann["bbox"] = [0, 0, 1e30, 1e30]
    dst.write_text(json.dumps(coco))
    return dst


@pytest.mark.parametrize(
    ("flag", "edit", "message"),
    [
        ("--val-ann", "nan keypoint", "keypoint that is not a finite number"),
        ("--val-ann", "nan bbox", "bbox that is not 4 finite numbers"),
        ("--train-ann", "nan bbox", "bbox that is not 4 finite numbers"),
        ("--train-ann", "huge bbox", "within 1e+07 px"),
        # the loader read no area: NaN scored AP 1.000 for an untrained model, negative -1
        ("--val-ann", "nan area", "has the area nan"),
        ("--val-ann", "negative area", "has the area -"),
        ("--val-ann", "bool keypoint", "keypoint that is not a finite number"),
        ("--train-ann", "nested keypoints", "(joint 0: [["),
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
    """A kill while ``--resume`` trims ``metrics.jsonl`` leaves the whole old log, and no
    temporary file."""
    lines = [json.dumps({"step": s, "loss": 1.0}) for s in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")

    def killed(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        metrics_log.MetricsLog(tmp_path, enabled=True, resume_step=2, resume_lines=2)
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == lines
    assert not list(tmp_path.glob(".*.tmp"))
    monkeypatch.undo()
    log = metrics_log.MetricsLog(tmp_path, enabled=True, resume_step=2, resume_lines=2)
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == lines[:2]
    assert log.lines == 2


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


def _save_with_checksum(ckpt: dict[str, Any], path: Path) -> None:
    """Save an edited checkpoint as consistent (its checksum recomputed)."""
    content = {k: v for k, v in ckpt.items() if k != "checksum"}
    torch.save({**content, "checksum": checkpoint.checksum(content)}, path)


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
    _save_with_checksum(ckpt, path)
    capsys.readouterr()
    assert _run([*args, "--resume"]) == 2
    _one_error_line(capsys, "no random state for", "start the run over")


# ---------------------------------------------------- issue 20: no silent wrong answer


def _with_files(data: list[str], **files: Path) -> list[str]:
    """``data`` with the files of some flags (``train_ann=...``) replaced."""
    args = list(data)
    for flag, path in files.items():
        option = "--" + flag.replace("_", "-")
        if option in args:
            args[args.index(option) + 1] = str(path)
        else:
            args += [option, str(path)]
    return args


def _rewritten(src: str, dst: Path, edit: Any) -> Path:
    coco = json.loads(Path(src).read_text())
    edit(coco)
    dst.write_text(json.dumps(coco))
    return dst


def test_a_saved_config_derives_the_sizes_again(tmp_path: Path) -> None:
    """``--config A/config.json --input-size 384 288`` used to keep the target sigma and
    the Joint Cutout sizes derived for A's 256 x 192; values the user gave stay given."""
    files = ["--images", "i", "--train-ann", "t", "--val-ann", "v", "--steps", "1"]
    first = parse_config([*files, "--out", str(tmp_path / "a")])
    assert (first.method.sigma, first.method.cutout_half_size) == (2.0, (10, 19))
    assert {"sigma", "cutout_jitter", "cutout_half_size"} <= first.derived
    saved = tmp_path / "config.json"
    rundir.write_json(saved, first.to_json())
    again = parse_config(["--config", str(saved), "--input-size", "384", "288"])
    method = again.method
    assert (method.sigma, method.cutout_jitter, method.cutout_half_size) == (3.0, 15.0, (15, 28))
    assert again.schedule.steps == 1 and again.derived == first.derived
    given = parse_config([*files, "--sigma", "2.5", "--out", str(tmp_path / "b")])
    assert "sigma" not in given.derived
    rundir.write_json(saved, given.to_json())
    kept = parse_config(["--config", str(saved), "--input-size", "384", "288"])
    assert kept.method.sigma == 2.5 and kept.method.cutout_jitter == 15.0


def test_a_config_saved_before_derived_was_listed_derives_its_sizes_again(
    tmp_path: Path,
) -> None:
    """A config.json written before 894eedf has no "derived" list: its values equal to
    what its own input size and network derive are taken as derived, others as given."""
    files = ["--images", "i", "--train-ann", "t", "--val-ann", "v", "--steps", "1"]
    saved = tmp_path / "config.json"
    for extra, sigma in (([], 3.0), (["--sigma", "2.5"], 2.5)):
        old = parse_config([*files, *extra, "--out", str(tmp_path / "a")]).to_json()
        del old["derived"]
        rundir.write_json(saved, old)
        size = ["--input-size", "384", "288", "--arch", "hrnet_w32"]
        again = parse_config(["--config", str(saved), *size])
        method = again.method
        assert (method.sigma, method.cutout_jitter, method.cutout_half_size) == (
            sigma,
            15.0,
            (15, 28),
        )
        assert (method.mix_at, method.unmix_at) == (("", "stem", "stage2", "stage3"), "stage4")
        assert ("sigma" in again.derived) == (not extra)
        same = parse_config(["--config", str(saved)])  # e.g. its --resume: nothing changes
        assert same.to_json()["method"] == old["method"]


def _renamed_joints(coco: dict[str, Any]) -> None:
    coco["categories"][0]["keypoints"] = [f"joint{k}" for k in range(17)]


def test_a_skeleton_without_flip_pairs_is_not_flipped_silently(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Joint names that follow no convention got no flip pairs, and the run flipped the
    images without swapping sides. Now it refuses, until the pairs are given or the flips
    are off."""
    train = _rewritten(data[3], tmp_path / "train.json", _renamed_joints)
    val = _rewritten(data[5], tmp_path / "val.json", _renamed_joints)
    args = [*_with_files(data, train_ann=train, val_ann=val), *TINY, "--steps", "1"]
    out = tmp_path / "run"
    assert _run([*args, "--method", "supervised", "--out", str(out)]) == 2
    _one_error_line(capsys, str(train), "pair up as left and right", "--flip-p 0.5", "--flip-pairs")
    assert not out.exists()
    pairs = [f"joint{a}:joint{a + 1}" for a in range(1, 17, 2)]
    config = parse_config([*args, "--flip-pairs", *pairs])
    sets = build_datasets(config.data, config)
    assert sets.val_file.skeleton.flip_index == COCO_17.flip_index
    assert _run([*args, "--flip-pairs", *pairs, "--flip-test", "--out", str(out)]) == 0
    assert _run([*args, "--flip-p", "0", "--out", str(tmp_path / "unflipped")]) == 0
    assert _run([*args, "--flip-pairs", "joint1", "--out", str(tmp_path / "x")]) == 2
    _one_error_line(capsys, "--flip-pairs takes LEFT:RIGHT joint names, got 'joint1'")
    assert _run([*args, "--flip-pairs", "joint1:joint99", "--out", str(tmp_path / "x")]) == 2
    _one_error_line(capsys, f"{train}: --flip-pairs names the joint 'joint99', which is not")


class _Box:
    """An object holding a tensor, printed the same whatever the tensor holds."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def __repr__(self) -> str:
        return "_Box()"


def test_the_checksum_refuses_a_type_it_cannot_hash(tmp_path: Path) -> None:
    """Another type was hashed by its ``repr``, so a tensor inside it went unhashed: two
    contents differing in its bytes had one checksum. Now it is a TypeError, while every
    type a checkpoint holds hashes."""
    with pytest.raises(TypeError, match="_Box"):
        checkpoint.checksum({"step": 1, "box": _Box(torch.ones(2))})
    held = {"a": [None, True, 2, 0.5, "s", b"b", (1,)], "b": Counter({3: 1}), "c": torch.Size([2])}
    assert checkpoint.checksum(held) != checkpoint.checksum({**held, "c": torch.Size([3])})
    path = tmp_path / "checkpoint.pt"  # a file torch loads, holding a type not hashed
    torch.save({**dict.fromkeys(checkpoint.KEYS, 0), "step": {1, 2}}, path)
    with pytest.raises(checkpoint.CheckpointError, match="cannot hash a set"):
        checkpoint.load_checkpoint(path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("teacher weight", "no longer matches the checksum"),
        ("not torch", "not a checkpoint written by torch.save (IndexError"),
        ("empty", "is empty"),
    ],
)
def test_a_damaged_checkpoint_never_resumes(
    damage: str, message: str, data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Flipped bytes inside a teacher weight used to resume silently; a file that is not
    torch's raised the unpickler's error (``KeyError: 101``, ``IndexError``, ...) as a
    traceback; an empty one gave an empty reason."""
    out = tmp_path / "run"
    args = [*data, *TINY, "--method", "consistency", "--steps", "3", "--out", str(out)]
    assert _run([*args, "--stop-after", "1"]) == 0
    path = out / "checkpoint.pt"
    if damage == "teacher weight":
        weight = torch.load(path, weights_only=True)["teacher"]["module.stem.0.weight"]
        raw = weight.numpy().tobytes()
        content = path.read_bytes()
        at = content.index(raw) + 4 * 7 + 3  # the high byte of the 8th float
        path.write_bytes(content[:at] + bytes([content[at] ^ 0x40]) + content[at + 1 :])
    elif damage == "not torch":
        path.write_text("e" * 100)
    else:
        path.write_bytes(b"")
    capsys.readouterr()
    assert _run([*args, "--resume"]) == 2
    _one_error_line(capsys, str(path), message)


def test_overwrite_deletes_only_this_trainers_files(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--overwrite`` used to delete any ``results*.json`` and the whole ``tb/`` folder."""
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    assert _train(data, out, "--tensorboard") == 0
    ours = {p.relative_to(out) for p in out.rglob("*") if p.is_file()}
    assert {Path("results_student.json"), Path("checkpoint.pt")} <= ours
    assert any(p.parts[0] == "tb" for p in ours)
    mine = [out / "results_by_hand.json", out / "tb" / "notes.txt", out / "results.json.bak"]
    for path in mine:
        path.write_text("mine")
    killed = out / ".results_student.json.tmp"  # a write a kill cut short
    killed.write_text("[")
    assert _train(data, out, "--overwrite") == 0  # no --tensorboard this time
    assert all(path.read_text() == "mine" for path in mine)
    assert not killed.exists()
    left = {p.relative_to(out) for p in out.rglob("*") if p.is_file()}
    assert not any(p.parts[0] == "tb" and p.name.startswith("events") for p in left)
    assert _train(data, out, "--overwrite") == 0
    (out / "tb" / "notes.txt").unlink()
    assert _train(data, out, "--overwrite", "--tensorboard") == 0
    assert _train(data, out, "--overwrite") == 0
    assert not (out / "tb").exists()  # the folder the trainer made, now empty, goes too


def test_two_runs_never_share_a_folder(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two runs into one ``--out`` at once used to interleave their logs; the second one
    now refuses, naming the holder, and the lock goes with the run that held it."""
    out = tmp_path / "run"
    with rundir.locked_run_folder(out):  # a run in progress
        assert _train(data, out) == 2
        _one_error_line(capsys, f"--out {out} is in use by another run (process ")
        assert not (out / "config.json").exists()
    assert _train(data, out, "--stop-after", "1") == 0
    assert _train(data, out, "--resume") == 0


def test_a_kill_before_the_results_logs_the_evaluation_once(
    data: list[str], tmp_path: Path, monkeypatch: Any
) -> None:
    """A kill between the final evaluation line and ``results.json`` used to log the
    evaluation twice after ``--resume``."""
    out = tmp_path / "run"

    def killed(path: Path, value: object, **kwargs: Any) -> None:
        raise OSError("killed")

    monkeypatch.setattr(train, "write_json", killed)
    assert _train(data, out) == 2
    monkeypatch.undo()
    assert [r["step"] for r in _metrics(out) if "eval" in r] == [2]
    assert _train(data, out, "--resume") == 0
    assert [r["step"] for r in _metrics(out) if "eval" in r] == [2]
    assert (out / "results.json").is_file()


@pytest.mark.parametrize("when", ["step", "save"])
def test_ctrl_c_is_one_line_and_leaves_no_temporary_file(
    when: str, data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    out = tmp_path / "run"
    if when == "step":
        monkeypatch.setattr(SSHPEMethod, "losses", _interrupt)
    else:

        def interrupted_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            Path(f).write_bytes(b"\0" * 4096)
            raise KeyboardInterrupt

        monkeypatch.setattr(checkpoint.torch, "save", interrupted_save)
    assert _train(data, out) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("train.py: interrupted; --resume continues from the last checkpoint")
    assert not list(out.glob(".*.tmp"))
    monkeypatch.undo()
    assert _train(data, out, "--overwrite") == 0  # the lock went with the interrupted run


def _interrupt(*args: Any) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "100000000"], "--workers must be <= "),
        (["--lr", "1e38"], "the learning rate must stay <= 1e+30"),
        (["--lr-gamma", "1e300"], "--lr-gamma 1e+300 at 2 --lr-milestones reaches 1e597"),
        (["--width", "1e38"], "--width must be in (0, 16.0]"),
        (["--steps", "100000000000000000000"], "--steps must be an integer in (-2^63, 2^63)"),
        (["--cutout-joints", "100000000000000000000"], "--cutout-joints must be an integer in"),
        (["--cutout-joints", "5000"], "--cutout-joints must be <= 1000"),
        (["--mix-grid", "100000", "4"], "--mix-grid 100000 4 has more tiles than the"),
        (["--seed", str(2**64)], "--seed must be an integer in (-2^63, 2^63)"),
        (["--input-size", "32000", "192"], "--input-size must be in 32..2048"),
        (["--batch-size", "1000000"], "--batch-size must be <= 65536"),
        (["--filter-mode", "percentile", "--filter-confidence", "50"],
         "--filter-confidence is the fraction of the batch's joints to drop"),
        (["--filter-flip", "-1"], "--filter-flip is a distance in heatmap pixels, >= 0"),
    ],
)  # fmt: skip
def test_huge_and_unusable_values_are_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each used to fail deep inside the run (Adam's float32 overflow, an allocation, a
    fork per worker, a filter at step 1 naming library arguments), with a traceback."""
    files = ["--images", "i", "--train-ann", "t", "--val-ann", "v", "--no-progress"]
    steps = [] if "--steps" in args else ["--steps", "1"]
    assert _run([*files, *steps, *args]) == 2
    _one_error_line(capsys, message)


def test_a_huge_value_in_a_config_file_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"schedule": {"steps": 1' + "0" * 400 + "}}")
    assert _run(["--config", str(path)]) == 2
    _one_error_line(capsys, f"--config {path}: --steps must be an integer in (-2^63, 2^63)")
    path.write_text(json.dumps({"schedule": {"lr": -1.0, "steps": 1}}))
    assert _run(["--config", str(path), "--images", "i", "--train-ann", "t", "--val-ann", "v"]) == 2
    _one_error_line(capsys, f"--lr must be > 0, got -1.0 (the value of --config {path})")
    assert _run(["--config", str(path), "--lr", "-2"]) == 2
    assert "the value of --config" not in capsys.readouterr().err  # the flag's own value


def test_epochs_beyond_any_step_count_are_one_line(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*data, *TINY, "--epochs", "1e308", "--out", str(tmp_path / "run")]
    assert _run(args) == 2
    _one_error_line(capsys, "--epochs 1e+308 over 12 labelled people make inf steps")


def test_evaluation_fields_are_checked_before_training(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A validation file without ``iscrowd`` or ``num_keypoints``, with another category,
    crashed the evaluation after all the training; now it evaluates. One with text boxes
    or text image ids, or ``--protocol crowdpose`` without ``crowdIndex``, stops before
    training (also on ``--resume``), and ``--resume`` may change the evaluation options."""

    def loose(coco: dict[str, Any]) -> None:
        for ann in coco["annotations"]:
            del ann["iscrowd"], ann["num_keypoints"]
        coco["categories"].append({"id": 2, "name": "dog"})
        coco["annotations"].append({"id": 999, "image_id": 1, "category_id": 2, "bbox": []})

    val = _rewritten(data[5], tmp_path / "loose.json", loose)
    out = tmp_path / "run"
    assert _train(_with_files(data, val_ann=val), out) == 0
    assert 0 <= json.loads((out / "results.json").read_text())["metrics"]["student"]["AP"] <= 1
    capsys.readouterr()
    assert _train(data, tmp_path / "crowd", "--protocol", "crowdpose") == 2
    _one_error_line(capsys, "'crowdIndex'", "--protocol coco")
    assert not (tmp_path / "crowd").exists()
    for name, edit in {
        "text_box": lambda c: c["annotations"][0].update(bbox=["1", "2", "3", "4"]),
        "text_id": lambda c: [i.update(id=str(i["id"])) for i in c["images"]],
    }.items():
        bad = _rewritten(data[5], tmp_path / f"{name}.json", edit)
        assert _train(_with_files(data, val_ann=bad), tmp_path / name) == 2
        _one_error_line(capsys, str(bad))
        assert not (tmp_path / name).exists()
    assert _run(["--resume", "--out", str(out), "--flip-test", "--no-progress"]) == 0
    assert "finished earlier" not in capsys.readouterr().out  # evaluated again
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["evaluation"]["flip_test"] is True
    assert [r["step"] for r in _metrics(out) if "eval" in r] == [2]


@pytest.mark.parametrize(
    ("category", "message"),
    [
        ({"skeleton": [[1, None]]}, "'skeleton' must be a list of [a, b] pairs"),
        ({"skeleton": 5}, "'skeleton' must be a list of [a, b] pairs"),
        ({"keypoints": list(range(17))}, "'keypoints' must be a list of joint names"),
        (
            {"keypoints": ["l_x", *COCO_17.names[1:]]},
            "'l_x' has no partner named like 'r_x'; give the pairs with --flip-pairs LEFT:RIGHT",
        ),
        # the library's "flip_pairs" argument is the trainer's flag
        ({"flip_pairs": [["l_x", "nose"]]}, "the category's 'flip_pairs' names the joint 'l_x'"),
    ],
)
def test_malformed_categories_are_one_line_naming_the_file(
    category: dict[str, Any],
    message: str,
    data: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = _rewritten(data[3], tmp_path / "bad.json", lambda c: c["categories"][0].update(category))
    assert _train(_with_files(data, train_ann=bad), tmp_path / "run") == 2
    err = _one_error_line(capsys, f"{bad}: ", message)
    assert "pass flip_index" not in err and "flip_pairs=" not in err


def test_unreadable_inputs_name_the_file(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--pretrained`` on a non-torch file raised ``KeyError: 101``; an empty one gave no
    reason; a truncated JPEG gave the data loader's multi-line traceback, naming no file."""
    junk, empty = tmp_path / "junk.pt", tmp_path / "empty.pt"
    junk.write_text("e" * 100)
    empty.write_bytes(b"")
    assert _train(data, tmp_path / "a", "--pretrained", str(junk)) == 2
    _one_error_line(capsys, str(junk), "not a file written by torch.save, or damaged (")
    assert _train(data, tmp_path / "b", "--pretrained", str(empty)) == 2
    _one_error_line(capsys, str(empty), "the file is empty")
    images = tmp_path / "images"
    shutil.copytree(data[1], images)
    cut = images / "train_000003.jpg"
    cut.write_bytes(cut.read_bytes()[:400])
    for workers in ("0", "1"):
        args = [*_with_files(data, images=images), *TINY, "--workers", workers]
        assert _run([*args, "--steps", "2", "--out", str(tmp_path / f"w{workers}")]) == 2
        _one_error_line(capsys, f"cannot read the image {cut}")


def test_a_failed_write_says_why_in_words(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """A short write on a full disk gave ``[enforce fail at inline_container.cc:672]``."""

    def short_write(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 40")

    monkeypatch.setattr(checkpoint.torch, "save", short_write)
    assert _train(data, tmp_path / "run") == 2
    err = _one_error_line(capsys, "the disk is full or the write was cut short", "MiB free")
    assert "enforce fail" not in err


def test_files_without_usable_people_name_the_file(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """These said "the labelled count must be an integer >= 1, got 0" and "no person
    instances to crop", naming no file."""

    def crowd(coco: dict[str, Any]) -> None:
        for ann in coco["annotations"]:
            ann["iscrowd"] = 1

    bad = _rewritten(data[3], tmp_path / "crowd.json", crowd)
    assert _train(_with_files(data, train_ann=bad), tmp_path / "a", "--labeled", "0") == 2
    _one_error_line(capsys, f"{bad} has no non-crowd person with labelled keypoints")
    args = [*_with_files(data, unlabeled_ann=bad), *TINY, "--method", "consistency"]
    assert _run([*args, "--steps", "1", "--out", str(tmp_path / "b")]) == 2
    _one_error_line(capsys, f"{bad} has no non-crowd person box for unlabelled data")
    bad_val = _rewritten(data[5], tmp_path / "val.json", crowd)
    assert _train(_with_files(data, val_ann=bad_val), tmp_path / "c") == 2
    _one_error_line(capsys, f"{bad_val} has no person with labelled keypoints to evaluate")


def test_help_names_no_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` cited METHOD.md, which the repository does not hold, and offered
    ``--teacher none``, which the parser refuses."""
    with pytest.raises(SystemExit):
        _run(["--help"])
    text = capsys.readouterr().out
    assert "METHOD.md" not in text and "(None)" not in text
    assert 'default: "ema" for consistency' in " ".join(text.split())


def test_unlabelled_data_of_another_skeleton_trains(data: list[str], tmp_path: Path) -> None:
    """SSHPE's COCO + AI Challenger setting: the unlabelled file's labels are ignored, so
    its joints may differ (14 here); the run used to refuse it."""

    def fourteen(coco: dict[str, Any]) -> None:
        coco["categories"][0]["keypoints"] = list(CROWDPOSE_14.names)
        del coco["categories"][0]["skeleton"]
        for ann in coco["annotations"]:
            ann["keypoints"] = ann["keypoints"][: 3 * 14]

    pool = _rewritten(data[3], tmp_path / "pool.json", fourteen)
    args = [*_with_files(data, unlabeled_ann=pool), *TINY, "--method", "posemum", "--steps", "2"]
    assert _run([*args, "--pseudo-every", "1", "--out", str(tmp_path / "run")]) == 0
    pseudo = [r for r in _metrics(tmp_path / "run") if "pseudo_pck" in r]
    assert pseudo and all(r["pseudo_pck"] is None for r in pseudo)  # no labels to measure


def test_a_run_of_a_bigger_machine_resumes_here(data: list[str], tmp_path: Path) -> None:
    """The bound on ``--workers`` is this machine's: a run saved with more workers than
    it allows continues with the ones given here."""
    out = tmp_path / "run"
    assert _train(data, out, "--stop-after", "1") == 0
    saved = json.loads((out / "config.json").read_text())
    saved["runtime"]["workers"] = 10**6
    (out / "config.json").write_text(json.dumps(saved))
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    ckpt["config"]["runtime"]["workers"] = 10**6
    _save_with_checksum(ckpt, out / "checkpoint.pt")
    assert _run(["--resume", "--out", str(out), "--no-progress"]) == 2
    assert _run(["--resume", "--out", str(out), "--no-progress", "--workers", "0"]) == 0
