"""End-to-end tests of ``examples/train.py`` on a tiny generated synthetic set.

Runs are in-process through ``train.main`` (fast), except the 2-process ``torchrun`` run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import train
from sshpe.cli import parse_config
from sshpe.evaluate import evaluate_keypoints
from sshpe.loaders import CropCache
from sshpe.models import build_model
from sshpe.synthetic import generate_synthetic_coco
from sshpe.validation import TABLE_METRICS

from tests.paths import CROWDPOSE, EXAMPLES, REAL, needs_shared_data
from tests.test_sshpe_hrnet import imagenet_classifier_state

#: A tiny, fast configuration: 64 x 64 crops, a 1/8-width ResNet-18, 4 + 4 crops per step.
TINY = [
    "--input-size", "64", "64", "--width", "0.125", "--labeled", "12",
    "--batch-size", "4", "--unlabeled-batch-size", "4", "--eval-batch-size", "16",
    "--workers", "0", "--no-progress", "--vis-count", "2", "--device", "cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    paths = generate_synthetic_coco(
        tmp_path_factory.mktemp("synthetic") / "set", num_train=24, num_val=6, progress=False
    )
    return [
        "--images", str(paths.images), "--train-ann", str(paths.train_ann),
        "--val-ann", str(paths.val_ann),
    ]  # fmt: skip


def _run(args: list[str]) -> int:
    return train.main(args)


def _metrics(out: Path) -> list[dict[str, object]]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        r.pop("crops_per_s", None)  # wall-clock
    return records


@pytest.mark.parametrize("method", ["supervised", "consistency", "posemum"])
def test_each_method_trains_and_reports(
    method: str, data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / method
    assert _run([*data, *TINY, "--method", method, "--steps", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "student" in printed and "teacher" in printed and "AP50" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["metrics"]) == {"student", "teacher"}
    assert all(0 <= row["AP"] <= 1 for row in results["metrics"].values())
    losses = [r for r in _metrics(out) if "loss" in r]
    assert ("unsup" in losses[0]) == (method != "supervised")
    assert (out / "predictions.png").stat().st_size > 0
    assert json.loads((out / "results_student.json").read_text())[0]["category_id"] == 1
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 3 and ckpt["teacher"]["_extra_state"]["step"] == 3


#: The networks a method checkpoints and evaluates; "student" is the method's result.
NETWORKS = {
    "posemum": ["student", "teacher"],
    "dual": ["student", "teacher", "student_b", "teacher_b"],
    "posemum_dual": ["student", "teacher", "student_b", "teacher_b"],
}


@pytest.mark.parametrize("method", list(NETWORKS))
def test_resume_equals_uninterrupted(method: str, data: list[str], tmp_path: Path) -> None:
    """A run stopped after 3 of 7 steps (inside a 2-step log window) and resumed in a
    fresh ``main`` ends bit-exactly where an uninterrupted run ends: same logged losses,
    same weights (both networks and their teachers for the dual methods), optimiser and
    random states (every stream), same AP of every network."""
    common = [
        *data, *TINY, "--method", method, "--steps", "7", "--ckpt-every", "2",
        "--log-every", "2", "--lr-milestones", "0.5", "--momentum-warmup", "4",
        "--filter-confidence", "0.0", "--mix-feature-mode", "all", "--pseudo-every", "2",
    ]  # fmt: skip
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert _run([*common, "--out", str(whole)]) == 0
    assert _run([*common, "--out", str(parts), "--stop-after", "3"]) == 0
    assert not (parts / "results.json").exists()
    assert torch.load(parts / "checkpoint.pt", weights_only=True)["step"] == 3
    with (parts / "metrics.jsonl").open("a") as f:  # lines a killed run logged late
        f.write(json.dumps({"step": 4, "loss": 1.0}) + "\n" + '{"step": 6, "lo')
    assert _run([*common, "--out", str(parts), "--resume"]) == 0

    assert _metrics(parts) == _metrics(whole)
    assert sum("pseudo_pck" in r for r in _metrics(whole)) == 3  # diagnostics of network A
    a = torch.load(whole / "checkpoint.pt", weights_only=True)
    b = torch.load(parts / "checkpoint.pt", weights_only=True)
    assert [key for key in a if key.startswith(("student", "teacher"))] == NETWORKS[method]
    for key in NETWORKS[method]:
        assert a[key].keys() == b[key].keys()
        for name, tensor in a[key].items():
            if isinstance(tensor, torch.Tensor):
                assert torch.equal(tensor, b[key][name]), f"{key}.{name}"
    for state_a, state_b in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert a["scheduler"] == b["scheduler"]
    assert len(a["rng"][0]["generators"]) == (5 if method == "posemum" else 8)
    for name, state in a["rng"][0]["generators"].items():
        assert torch.equal(state, b["rng"][0]["generators"][name]), name
    results = [json.loads((d / "results.json").read_text())["metrics"] for d in (whole, parts)]
    assert results[0] == results[1] and list(results[0]) == NETWORKS[method]


def test_dual_network_a_starts_where_the_single_network_does(
    data: list[str], tmp_path: Path
) -> None:
    """Paired runs: in supervised steps (a burn-in), network A of ``dual`` trains exactly
    as the network of ``supervised`` with the same seed (same initial weights, labelled
    views and Adam updates); network B starts elsewhere."""
    common = [*data, *TINY, "--steps", "2", "--vis-count", "0"]
    single, dual = tmp_path / "single", tmp_path / "dual"
    assert _run([*common, "--method", "supervised", "--out", str(single)]) == 0
    assert _run([*common, "--method", "dual", "--burn-in", "2", "--out", str(dual)]) == 0
    a = torch.load(single / "checkpoint.pt", weights_only=True)
    b = torch.load(dual / "checkpoint.pt", weights_only=True)
    for name, tensor in a["student"].items():
        assert torch.equal(tensor, b["student"][name]), name
    assert not torch.equal(b["student"]["head.weight"], b["student_b"]["head.weight"])


def test_dual_networks_from_one_pose_network_file_start_apart(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """A whole pose network given to ``--pretrained`` made both dual networks start
    identical, although each has its own initialisation: network A loads all of it,
    network B its backbone only (its deconvolutions and head keep their own init)."""
    pose = tmp_path / "pose.pt"
    torch.manual_seed(1)
    torch.save(build_model("resnet18", 17, 0.125).state_dict(), pose)
    given = torch.load(pose, weights_only=True)
    started: dict[str, dict[str, torch.Tensor]] = {}
    method = train.SSHPEMethod

    def first_weights(student: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        started["a"] = {k: v.clone() for k, v in student.state_dict().items()}
        started["b"] = {k: v.clone() for k, v in kwargs["partner"].state_dict().items()}
        return method(student, *args, **kwargs)

    monkeypatch.setattr(train, "SSHPEMethod", first_weights)
    args = [*data, *TINY, "--pretrained", str(pose), "--method", "dual", "--steps", "1"]
    assert _run([*args, "--vis-count", "0", "--out", str(tmp_path / "run")]) == 0
    for name, tensor in given.items():
        assert torch.equal(started["a"][name], tensor), name
        if tensor.dim() > 1:  # the convolutions (a fresh BatchNorm is 1, 0 in both)
            head = name.startswith(("deconv.", "head."))
            assert torch.equal(started["b"][name], tensor) != head, name
    printed = capsys.readouterr().out
    assert "network B loads its backbone only (deconv, head: their own init)" in printed


def test_hrnet_dual_run_from_an_imagenet_classifier(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--arch hrnet_w32``: the ImageNet classifier layout loads through ``--pretrained``
    into both networks (the head keeps its initialisation), every HRNet branch of stages
    2-3 is a mixing point, and both networks train and are evaluated."""
    classifier = tmp_path / "hrnet_w32_imagenet.pth"
    torch.save(imagenet_classifier_state("hrnet_w32", 0.125), classifier)
    out = tmp_path / "hrnet"
    args = [
        *data, *TINY, "--arch", "hrnet_w32", "--pretrained", str(classifier), "--method",
        "posemum_dual", "--steps", "2", "--vis-count", "0", "--out", str(out),
    ]  # fmt: skip
    assert _run(args) == 0
    assert "2 tensors not in the file kept their init (head)" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert (config["method"]["mix_at"], config["method"]["unmix_at"]) == (
        ["", "stem", "stage2", "stage3"],
        "stage4",
    )
    metrics = json.loads((out / "results.json").read_text())["metrics"]
    assert list(metrics) == NETWORKS["posemum_dual"]


@needs_shared_data
@pytest.mark.parametrize("ann", REAL)
def test_hrnet_dual_networks_on_the_real_files(ann: Path, tmp_path: Path) -> None:
    """Both new pieces together on the real files (CrowdPose's 14 joints, OCHuman's 17):
    HRNet-W32 with ``posemum_dual``, every network evaluated under the file's protocol:
    its metrics are those of the results it wrote, scored again, and the two networks
    (K heatmaps each) are apart."""
    out = tmp_path / "run"
    args = [
        "--images", str(ann.parent), "--train-ann", str(ann), "--val-ann", str(ann), *TINY,
        "--labeled", "0", "--arch", "hrnet_w32", "--method", "posemum_dual", "--steps", "2",
        "--vis-count", "0", "--out", str(out),
    ]  # fmt: skip
    assert _run(args) == 0
    metrics = json.loads((out / "results.json").read_text())["metrics"]
    assert list(metrics) == NETWORKS["posemum_dual"]
    protocol, joints = ("crowdpose", 14) if ann == CROWDPOSE else ("coco", 17)
    for name, row in metrics.items():
        assert list(row) == list(TABLE_METRICS[protocol]), name
        results = json.loads((out / f"results_{name}.json").read_text())
        assert results and all(len(r["keypoints"]) == 3 * joints for r in results)
        scored = evaluate_keypoints(results, ann, protocol=protocol)
        assert {metric: scored[metric] for metric in row} == row, name
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["student"]["head.weight"].shape[0] == joints
    assert not torch.equal(ckpt["student"]["head.weight"], ckpt["student_b"]["head.weight"])


@pytest.mark.parametrize(
    ("flags", "mix_at", "unmix_at"),
    [
        ([], ("", "layer1", "layer2", "layer3"), "layer4"),
        (["--arch", "resnet50"], ("", "layer1", "layer2", "layer3"), "layer4"),
        (["--arch", "hrnet_w48"], ("", "stem", "stage2", "stage3"), "stage4"),
        (["--arch", "hrnet_w32", "--mix-at", "stage2"], ("stage2",), "stage4"),
    ],
)
def test_mixing_points_follow_the_arch_unless_given(
    flags: list[str], mix_at: tuple[str, ...], unmix_at: str
) -> None:
    method = parse_config(flags).method
    assert (method.mix_at, method.unmix_at) == (mix_at, unmix_at)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_torchrun_two_processes(data: list[str], tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        str(EXAMPLES / "train.py"), *data, *TINY, "--method", "posemum", "--steps", "3",
        "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("student") == 1  # only rank 0 prints
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    # each rank draws its own augmentation
    for name, state in ckpt["rng"][0]["generators"].items():
        assert not torch.equal(state, ckpt["rng"][1]["generators"][name]), name


def _bad_ann(tmp_path: Path) -> Path:
    path = tmp_path / "boxes.json"
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    path.write_text(json.dumps(coco))
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train-ann", "{tmp}/missing.json"], "together"),
        (["--images", "{tmp}", "--train-ann", "{tmp}/missing.json", "--val-ann", "{tmp}/m.json"],
         "annotation file not found"),
        (["--images", "{tmp}", "--train-ann", "{bad}", "--val-ann", "{bad}"], "no category with"),
        (["--unlabeled-batch-size", "2"], "smaller than the mixing group"),
        (["--mix-labeled", "--batch-size", "3"], "--batch-size 3 is smaller than the mixing"),
        (["--input-size", "100", "80"], "multiples of 32"),
        (["--method", "fixmatch"], "invalid choice"),
        (["--steps", "0"], "--steps must be >= 1"),
        (["--amp", "--device", "cpu"], "--amp needs a CUDA"),
        (["--resume", "--out", "{tmp}/empty"], "no checkpoint"),
        (["--images", "{tmp}", "--train-ann", "{bad}", "--val-ann", "{bad}"],
         "--steps or --epochs"),
        (["--steps", "3", "--epochs", "2"], "not both"),
        (["--burn-in", "-1"], "--burn-in must be >= 0"),
        (["--pseudo-every", "-5"], "--pseudo-every must be >= 0"),
        (["--lr-gamma", "nan"], "--lr-gamma must be a finite number, got 'nan'"),
        (["--epochs", "inf"], "--epochs must be a finite number, got 'inf'"),
        (["--device", "tpu"], "--device must be cpu, cuda or cuda:N, got 'tpu'"),
        (["--steps", "2.5"], "--steps must be an integer"),
        (["--config", "{tmp}/none.json"], "--config: cannot read"),
        (["--resume", "--overwrite"], "not both"),
        (["--batch-size", "1e30"], "--batch-size must be an integer, got '1e30'"),
        (["--seed", "-1"], "--seed must be >= 0"),
        (["--mix-grid", "0", "4"], "--mix-grid must be >= 1 tiles"),
        (["--mix-p", "2"], "--mix-p must be in [0, 1]"),
        (["--mix-at"], "expected at least one argument"),
        (["--teacher", "none"], "invalid choice"),
        (["--lr", "none"], "--lr must be a number"),
    ],
)  # fmt: skip
def test_bad_inputs_give_one_error_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    filled = [a.format(tmp=tmp_path, bad=_bad_ann(tmp_path)) for a in args]
    if "--images" not in filled and "--train-ann" not in filled:
        # checks that come before the data: no data set needed
        filled += ["--images", str(tmp_path), "--train-ann", "x", "--val-ann", "y"]
    if "--steps" not in filled and "--epochs" not in filled and message != "--steps or --epochs":
        filled += ["--steps", "1"]
    assert _run([*filled, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("train.py: error: ") and message in err, err


def test_a_mixing_point_after_the_unmix_point_is_one_error_line(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    order = ["--mix-at", "", "deconv", "--unmix-at", "layer4"]  # deconv runs after layer4
    args = [*data, *TINY, *order, "--steps", "1", "--out", str(tmp_path)]
    assert _run(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "must run before unmix_at='layer4'" in err, err


def test_resume_refuses_other_settings(
    data: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["--out", str(tmp_path / "run")]
    assert _run([*data, *TINY, "--method", "supervised", "--steps", "2", *out]) == 0
    capsys.readouterr()
    assert _run([*data, *TINY, "--method", "supervised", "--steps", "2", "--lr", "0.1",
                 *out, "--resume"]) == 2  # fmt: skip
    assert "--lr" in capsys.readouterr().err


def test_crop_cache_returns_the_dataset_crops_bit_for_bit(data: list[str]) -> None:
    from sshpe.data import TopDownDataset, load_coco_persons, unlabelled_instances

    persons = load_coco_persons(data[3])
    dataset = TopDownDataset(unlabelled_instances(persons), data[1], (64, 48), 17)
    cache = CropCache(dataset)
    for _ in range(2):  # first read fills the cache, the second reads it
        for i in range(len(dataset)):
            got, want = cache[i], dataset[i]
            assert got.keys() == want.keys()
            for key, value in want.items():
                assert (
                    torch.equal(got[key], value)
                    if isinstance(value, torch.Tensor)
                    else (got[key] == value)
                )
    assert all(item is not None and item["image"].dtype == torch.uint8 for item in cache.items)


@pytest.mark.parametrize(
    ("extra", "sigma"),
    [
        ([], 2.0),  # the synthetic profile
        (["--images", "i", "--train-ann", "t", "--val-ann", "v", "--steps", "1"], 2.0),
        (["--images", "i", "--train-ann", "t", "--val-ann", "v", "--steps", "1",
          "--input-size", "384", "288"], 3.0),
        (["--input-size", "384", "288", "--sigma", "2.5"], 2.5),
    ],
)  # fmt: skip
def test_target_sigma_follows_the_input_size(extra: list[str], sigma: float) -> None:
    assert parse_config(extra).method.sigma == sigma


def test_none_is_a_value_only_where_the_option_takes_none() -> None:
    config = parse_config(["--decode", "none", "--filter-confidence", "0.5"])
    assert config.method.decode == "none" and config.method.confidence == 0.5
    assert parse_config(["--filter-confidence", "none"]).method.confidence is None
    cutout = parse_config(["--input-size", "384", "288"]).method
    assert (cutout.cutout_jitter, cutout.cutout_half_size) == (15.0, (15, 28))


def _scrambled_labels(ann: Path, out: Path) -> Path:
    """``ann`` with every keypoint moved and visibility flipped: the same people and boxes,
    other labels."""
    coco = json.loads(ann.read_text())
    generator = torch.Generator().manual_seed(0)
    for a in coco["annotations"]:
        count = len(a["keypoints"]) // 3
        xy = torch.rand(count, 2, generator=generator) * 50
        a["keypoints"] = [v for (x, y) in xy.tolist() for v in (x, y, 2)]
        a["num_keypoints"] = count
    out.write_text(json.dumps(coco))
    return out


def test_ignored_labels_never_reach_a_loss(data: list[str], tmp_path: Path) -> None:
    """The unlabelled pool's file labels feed the diagnostics only: runs whose unlabelled
    file differs in its labels alone log the same losses and end with the same weights,
    while the pseudo-label accuracy they log differs."""
    train_ann = Path(data[data.index("--train-ann") + 1])
    common = [
        *data, *TINY, "--method", "posemum", "--steps", "4", "--pseudo-every", "2",
        "--log-every", "2", "--vis-count", "0",
    ]  # fmt: skip
    outs = {}
    for name, ann in {
        "true": train_ann,
        "scrambled": _scrambled_labels(train_ann, tmp_path / "scrambled.json"),
    }.items():
        outs[name] = tmp_path / name
        assert _run([*common, "--unlabeled-ann", str(ann), "--out", str(outs[name])]) == 0
    logs = {name: _metrics(out) for name, out in outs.items()}
    losses = {n: [r for r in log if "loss" in r] for n, log in logs.items()}
    pseudo = {n: [r for r in log if "pseudo_pck" in r] for n, log in logs.items()}
    assert losses["true"] == losses["scrambled"] and len(losses["true"]) == 2
    assert len(pseudo["true"]) == 2 and pseudo["true"] != pseudo["scrambled"]
    a, b = (torch.load(o / "checkpoint.pt", weights_only=True) for o in outs.values())
    for name, tensor in a["student"].items():
        assert torch.equal(tensor, b["student"][name]), name
    assert (outs["true"] / "curves.png").stat().st_size > 0


def test_burn_in_then_ramped_unsupervised_weight(data: list[str], tmp_path: Path) -> None:
    """Two supervised-only steps while the teacher copies the student (momentum 0), then
    the unsupervised weight rises 1/2, 1 over a 2-step ramp and the momentum is the base."""
    out = tmp_path / "burn"
    args = [
        *data, *TINY, "--method", "consistency", "--steps", "4", "--log-every", "1",
        "--burn-in", "2", "--unsup-ramp", "2", "--ema-momentum", "0.9", "--out", str(out),
    ]  # fmt: skip
    assert _run(args) == 0
    lines = [r for r in _metrics(out) if "loss" in r]
    assert [r["momentum"] for r in lines] == [0.0, 0.0, 0.9, 0.9]
    assert [r["unsup"] for r in lines[:2]] == [0.0, 0.0] and lines[2]["unsup"] > 0
    for r, weight in zip(lines, [0.0, 0.0, 0.5, 1.0], strict=True):
        assert r["loss"] == pytest.approx(r["sup"] + weight * r["unsup"], abs=2e-7)
