"""Tests of examples/sshpe/synthetic/: the bundled procedural COCO person dataset."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import sshpe.synthetic as synthetic
import sshpe.synthetic.writer as writer
from PIL import Image
from sshpe.synthetic import (
    annotate_scene,
    generate_synthetic_coco,
    render_scene,
    sample_scene,
)
from sshpe.synthetic.textures import PatternTexture

from posemum_aug.keypoints import COCO_17, Skeleton
from tests.paths import EXAMPLES

SIZE = (64, 80)


def _generate(root: Path, **kwargs: object) -> synthetic.SyntheticPaths:
    args: dict[str, object] = {
        "num_train": 7,
        "num_val": 3,
        "image_size": SIZE,
        "progress": False,
        "workers": 0,
    }
    args.update(kwargs)
    return generate_synthetic_coco(root, **args)  # type: ignore[arg-type]


def _contents(paths: synthetic.SyntheticPaths) -> dict[str, bytes]:
    files = [paths.train_ann, paths.val_ann, *sorted(paths.images.iterdir())]
    return {f.name: f.read_bytes() for f in files}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    a = _contents(_generate(tmp_path / "a"))
    b = _contents(_generate(tmp_path / "b"))
    assert a == b
    c = _contents(_generate(tmp_path / "c", seed=1))
    assert c.keys() != a.keys() or any(c[k] != a[k] for k in a)


def test_worker_processes_give_the_same_bytes(tmp_path: Path) -> None:
    serial = _contents(_generate(tmp_path / "serial"))
    parallel = _contents(_generate(tmp_path / "parallel", workers=2))
    assert serial == parallel


def test_second_call_reuses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _generate(tmp_path / "set")
    before = _contents(paths)
    manifest = json.loads((paths.root / "manifest.json").read_text())
    assert manifest["num_train"] == 7 and manifest["image_size"] == list(SIZE)

    def fail(*args: object) -> None:
        raise AssertionError("regenerated a cached set")

    monkeypatch.setattr(writer, "_make_image", fail)
    assert _generate(tmp_path / "set") == paths
    assert _contents(paths) == before
    monkeypatch.undo()
    # other parameters rebuild the folder in place
    _generate(tmp_path / "set", num_train=4)
    assert len(json.loads(paths.train_ann.read_text())["annotations"]) == 4
    assert not [p for p in tmp_path.iterdir() if p.name != "set"]  # no temporary leftovers


def test_a_failed_run_leaves_no_partial_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(writer, "_make_image", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        _generate(tmp_path / "set")
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_a_foreign_folder_and_bad_arguments(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        _generate(tmp_path)
    with pytest.raises(ValueError, match="num_train"):
        _generate(tmp_path / "x", num_train=0)
    with pytest.raises(ValueError, match="image_size"):
        _generate(tmp_path / "x", image_size=(16, 80))


def test_output_is_valid_coco(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    paths = _generate(tmp_path / "set", num_train=25, num_val=5)
    seen_v = set()
    for ann_file, count in ((paths.train_ann, 25), (paths.val_ann, 5)):
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(ann_file))
        (category,) = coco.loadCats(coco.getCatIds())
        assert Skeleton.from_coco_category(category) == COCO_17
        anns = coco.loadAnns(coco.getAnnIds())
        assert len(anns) == count
        assert len({a["id"] for a in anns}) == count
        for a in anns:
            image = coco.loadImgs(a["image_id"])[0]
            height, width = image["height"], image["width"]
            assert Image.open(paths.images / image["file_name"]).size == (width, height)
            assert a["iscrowd"] == 0 and a["category_id"] == category["id"]
            x, y, w, h = a["bbox"]
            assert min(x, y) >= -0.5 and x + w <= width - 0.5 and y + h <= height - 0.5
            assert 0 < a["area"] <= (w + 0.01) * (h + 0.01)
            kp = np.asarray(a["keypoints"]).reshape(17, 3)
            v = kp[:, 2]
            seen_v |= set(v.tolist())
            assert a["num_keypoints"] == int((v > 0).sum()) > 0
            assert (kp[v == 0] == 0).all()
            inside = kp[v > 0, :2]
            assert (inside >= 0).all() and (inside[:, 0] <= width - 1).all()
            assert (inside[:, 1] <= height - 1).all()
    assert seen_v == {0, 1, 2}


def _scenes(
    count: int, size: tuple[int, int] = (96, 128), style: synthetic.SceneStyle = synthetic.CLUTTERED
) -> list[synthetic.Scene]:
    """Scenes of the cluttered style by default: the one with hidden joints and back views."""
    return [sample_scene(np.random.default_rng(i), size, 1 + i % 3, style) for i in range(count)]


def test_joints_outside_the_image_are_v0() -> None:
    outside = 0
    for scene in _scenes(40):
        for figure, ann in zip(
            scene.figures, annotate_scene(scene, render_scene(scene)), strict=True
        ):
            x, y = figure.keypoints.T
            out = (x < 0) | (y < 0) | (x > 127) | (y > 95)
            assert ((ann.keypoints[:, 2] == 0) == out).all()
            outside += int(out.sum())
    assert outside > 0


def _paint_parts(scene: synthetic.Scene) -> tuple[synthetic.Scene, list[tuple[int, str]]]:
    """The scene with each person's each part in its own flat colour, the scenery black,
    and no sensor noise; colour ``i + 1`` (base-4 digits times 85) codes ``parts[i]``."""
    parts = sorted({(layer.owner, layer.part) for layer in scene.layers if layer.owner >= 0})

    def flat(code: int) -> PatternTexture:
        rgb = ((code % 4) * 85 / 255, (code // 4 % 4) * 85 / 255, (code // 16 % 4) * 85 / 255)
        return PatternTexture(rgb, rgb)

    layers = tuple(
        replace(
            layer,
            texture=flat(parts.index((layer.owner, layer.part)) + 1 if layer.owner >= 0 else 0),
        )
        for layer in scene.layers
    )
    return replace(scene, layers=layers, noise_sigma=0.0), parts


# The limbs that show each body joint when on top; the torso also shows a shoulder or hip
# on its near side.
_LIMBS = {
    "shoulder": ("upper_arm",),
    "elbow": ("upper_arm", "forearm"),
    "wrist": ("forearm", "hand"),
    "hip": ("thigh",),
    "knee": ("thigh", "shin"),
    "ankle": ("shin", "foot"),
}


def _expected_parts(figure: synthetic.SceneFigure, j: int) -> set[str]:
    if j < 5:
        return {"head"}
    side, joint = COCO_17.names[j].split("_")
    parts = {f"{side}_{limb}" for limb in _LIMBS[joint]}
    if joint in ("shoulder", "hip") and figure.depth[j] >= figure.torso_depth:
        parts.add("torso")
    return parts


def test_visibility_flags_match_what_is_painted() -> None:
    """Paint every body part in its own colour: a joint is visible (v=2) exactly when its
    pixel shows one of its own parts (a far-side shoulder or hip behind the torso does not
    count). Pixels blending several colours at an edge are left out."""
    checked = total = hidden_by_torso = 0
    for scene in _scenes(30, (192, 256)):
        annotations = annotate_scene(scene, render_scene(scene))
        painted, parts = _paint_parts(scene)
        image = render_scene(painted).image.astype(int)
        digits = np.rint(image / 85).astype(int)
        clean = (np.abs(image - 85 * digits) <= 1).all(-1)
        codes = digits[..., 0] + 4 * digits[..., 1] + 16 * digits[..., 2]
        for p, (figure, ann) in enumerate(zip(scene.figures, annotations, strict=True)):
            for j, (x, y, v) in enumerate(ann.keypoints):
                if v == 0 or figure.facing_away[j]:
                    continue
                total += 1
                at = (round(y), round(x))
                if not clean[at]:
                    continue
                owner, part = parts[codes[at] - 1] if codes[at] > 0 else (-1, "")
                shown = owner == p and part in _expected_parts(figure, j)
                assert shown == (v == 2), (j, v, owner, part)
                checked += 1
                hidden_by_torso += owner == p and part == "torso" and v == 1
    assert checked > 0.85 * total > 500
    assert hidden_by_torso > 5


def test_face_points_turned_away_are_hidden() -> None:
    for scene in _scenes(20):
        for figure, ann in zip(
            scene.figures, annotate_scene(scene, render_scene(scene)), strict=True
        ):
            labelled = ann.keypoints[:, 2] > 0
            assert (ann.keypoints[figure.facing_away & labelled, 2] == 1).all()


def _hidden_share(style: synthetic.SceneStyle) -> float:
    """Share of labelled limb joints (shoulders down) that are hidden (``v = 1``)."""
    hidden, labelled = 0, 0
    for scene in _scenes(40, style=style):
        for ann in annotate_scene(scene, render_scene(scene)):
            v = ann.keypoints[5:, 2]
            labelled += int((v > 0).sum())
            hidden += int((v == 1).sum())
    return hidden / labelled


def test_the_clean_style_hides_fewer_joints_behind_less() -> None:
    """No occluders, overlaps or distractors: fewer layers, and the hidden joints are
    mostly self-occlusion (an arm behind the torso), which both styles share."""
    assert _hidden_share(synthetic.CLEAN) < 0.85 * _hidden_share(synthetic.CLUTTERED)
    layers = {
        name: np.mean([len(scene.layers) for scene in _scenes(20, style=style)])
        for name, style in synthetic.STYLES.items()
    }
    assert layers["clean"] < layers["cluttered"] - 4


def test_style_names_and_the_manifest(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="style must be one of"):
        generate_synthetic_coco(tmp_path / "x", num_train=1, num_val=1, style="foggy")
    paths = generate_synthetic_coco(
        tmp_path / "c", num_train=2, num_val=1, style="cluttered", progress=False, workers=0
    )
    manifest = json.loads((paths.root / "manifest.json").read_text())
    assert manifest["style"]["occluder_p"] == synthetic.CLUTTERED.occluder_p


def test_both_views_and_occlusion_occur() -> None:
    """Most people are seen from the front (nose shown), some from behind or the side
    (nose hidden: about one in eight), and occluded limbs are common enough to matter."""
    noses, hidden_limbs, limbs = [], 0, 0
    for scene in _scenes(40):
        for figure, ann in zip(
            scene.figures, annotate_scene(scene, render_scene(scene)), strict=True
        ):
            noses.append(bool(figure.facing_away[0]))
            v = ann.keypoints[5:, 2]
            limbs += int((v > 0).sum())
            hidden_limbs += int((v == 1).sum())
    assert 0.03 < np.mean(noses) < 0.3
    assert 0.1 < hidden_limbs / limbs < 0.6


# ----------------------------------------------------- a generation killed half way

#: Marks a test that reads the process table from Linux ``/proc``.
needs_proc = pytest.mark.skipif(
    not Path("/proc/self/stat").is_file(), reason="reads the process table from Linux /proc"
)


def _start_generation(root: Path, workers: int) -> subprocess.Popen[bytes]:
    """A generation, in a new Python process, of a set that takes it many seconds."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(EXAMPLES)!r})\n"
        "from sshpe.synthetic import generate_synthetic_coco\n"
        f"generate_synthetic_coco({str(root)!r}, num_train=3000, num_val=1, "
        f"image_size=(32, 32), progress=False, workers={workers})\n"
    )
    return subprocess.Popen([sys.executable, "-c", code])


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first, then the
    parent's pid), or ``None`` when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead and not yet reaped, does not)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def _children(pid: int) -> list[int]:
    """The running child processes of ``pid``."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[0] != "Z" and int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@needs_proc
def test_killing_the_generator_ends_its_worker_processes(tmp_path: Path) -> None:
    """``kill -9`` of a generation leaves no orphaned worker processes behind."""
    generator = _start_generation(tmp_path / "set", workers=2)
    workers: list[int] = []
    try:
        assert _wait_for(lambda: len(_children(generator.pid)) == 2, 60), "no workers started"
        workers = _children(generator.pid)
        generator.kill()
        generator.wait()
        assert _wait_for(lambda: not any(map(_alive, workers)), 5), "orphaned workers"
    finally:
        generator.kill()
        generator.wait()
        for pid in filter(_alive, workers):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(os.name != "posix", reason="a folder's owner is looked up by its pid")
def test_a_killed_generations_temp_folder_is_removed_a_live_ones_is_not(
    tmp_path: Path,
) -> None:
    """The next generation of the same set removes the temporary folder of one that was
    killed, and leaves that of one running at the same time alone."""
    root = tmp_path / "set"
    killed, live = _start_generation(root, workers=0), _start_generation(root, workers=0)
    try:
        assert _wait_for(lambda: len(list(tmp_path.iterdir())) == 2, 60), "no temp folders"
        killed.kill()
        killed.wait()
        _generate(root)
        left = [p for p in tmp_path.iterdir() if p != root]
        assert len(left) == 1 and str(live.pid) in left[0].name.split("."), left
        assert live.poll() is None
    finally:
        for process in (killed, live):
            process.kill()
            process.wait()


@needs_proc
def test_without_prctl_an_orphaned_worker_notices_its_new_parent() -> None:
    """The fallback where Linux's parent-death signal is missing: a thread in the worker
    polls its parent's pid and ends the worker once the parent dies."""
    # processes.py is loaded on its own (it uses the standard library only): a fast start
    # without the package's numpy and torch.
    code = (
        "import importlib.util, os, time\n"
        "spec = importlib.util.spec_from_file_location(\n"
        f"    'processes', {str(EXAMPLES / 'sshpe' / 'synthetic' / 'processes.py')!r}\n"
        ")\n"
        "processes = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(processes)\n"
        "processes._set_parent_death_signal = lambda: False\n"
        "parent = os.getpid()\n"
        "if os.fork() == 0:  # the worker: says its pid once it watches its parent\n"
        "    processes._exit_with_parent(parent)\n"
        "    print(os.getpid(), flush=True)\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    worker = 0
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        parent.kill()
        parent.wait()
        assert _wait_for(lambda: not _alive(worker), 5), "orphaned worker"
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
        if worker and _alive(worker):
            os.kill(worker, signal.SIGKILL)
