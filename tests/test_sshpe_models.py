"""Tests of the example trainer's network (``examples/sshpe/models.py``) and step losses
(``examples/sshpe/methods.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sshpe.blocks import BasicBlock, Bottleneck
from sshpe.methods import (
    METHODS,
    PARTNER_STREAMS,
    STREAMS,
    MethodConfig,
    SSHPEMethod,
    joint_mse,
    predict_heatmaps,
    step_generators,
    view_matrix,
)
from sshpe.models import SimpleBaseline, load_pretrained
from torch import nn

from posemum_aug.heatmap import decode_heatmaps, render_heatmaps
from posemum_aug.keypoints import Skeleton, affine_keypoints
from posemum_aug.mix import PoseMUM
from posemum_aug.teacher import EMANTeacher, MeanTeacher


def _images(batch: int, size: tuple[int, int] = (64, 64), seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize(("arch", "block"), [("resnet18", BasicBlock), ("resnet50", Bottleneck)])
def test_simple_baseline_shapes_and_stages(arch: str, block: type[nn.Module]) -> None:
    model = SimpleBaseline(arch, num_joints=14, width=0.125)  # type: ignore[arg-type]
    names = [name for name, _ in model.named_children()]
    assert names == ["stem", "layer1", "layer2", "layer3", "layer4", "deconv", "head"]
    assert isinstance(model.layer1[0], block)
    assert model(_images(2, (96, 64))).shape == (2, 14, 24, 16)
    # stage strides 4, 4, 8, 16, 32 and heatmaps back at 4
    x = _images(1, (64, 64))
    sizes = []
    for stage in (model.stem, model.layer1, model.layer2, model.layer3, model.layer4):
        x = stage(x)
        sizes.append(x.shape[-1])
    assert sizes == [16, 16, 8, 4, 2]


def test_simple_baseline_width_scales_channels() -> None:
    full = SimpleBaseline("resnet18", 17, 1.0)
    assert full.layer4[-1].conv2.out_channels == 512
    assert full.deconv[0].out_channels == 256
    quarter = SimpleBaseline("resnet18", 17, 0.25)
    assert quarter.layer4[-1].conv2.out_channels == 128
    assert quarter.deconv[0].out_channels == 64
    assert SimpleBaseline("resnet50", 17, 0.25).layer4[-1].conv3.out_channels == 512


def test_residual_branches_start_at_zero() -> None:
    model = SimpleBaseline("resnet18", 17, 0.25)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8
    assert all(not b.bn2.weight.detach().any() for b in blocks)
    assert all(b.bn1.weight.detach().eq(1).all() for b in blocks)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"arch": "resnet34"}, "arch"),
        ({"num_joints": 0}, "num_joints"),
        ({"width": 0.0}, "width"),
    ],
)
def test_simple_baseline_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SimpleBaseline(**kwargs)  # type: ignore[arg-type]


def test_pose_mum_attaches_at_named_stages() -> None:
    """Whole-sample mixing (1 x 1 grid) at the input and every stage, unmixed at layer4,
    leaves the output unchanged: BatchNorm statistics are permutation invariant and the
    unmix point undoes the composed plan. A 4 x 4 grid does change it."""
    torch.manual_seed(0)
    model = SimpleBaseline("resnet18", 5, 0.125).train()
    x = _images(8)
    expected = model(x)
    for grid, same in (((1, 1), True), ((4, 4), False)):
        mum = PoseMUM(
            4,
            grid,
            p=1.0,
            p_feature=1.0,
            feature_mode="all",
            generator=torch.Generator().manual_seed(1),
        )
        handle = mum.attach(model, ["", "layer1", "layer2", "layer3"], "layer4")
        out = model(x)
        handle.remove()
        assert torch.allclose(out, expected, atol=1e-5) is same
    with torch.no_grad():
        model.eval()
        mum = PoseMUM(4, (4, 4), generator=torch.Generator().manual_seed(1))
        plain = model(x)
        with mum.attach(model, ["", "layer1"], "layer4"):
            assert torch.equal(model(x), plain)  # eval mode: never mixed


def test_load_pretrained_round_trip_and_checkpoint_layout(tmp_path: Path) -> None:
    source = SimpleBaseline("resnet18", 17, 0.125)
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    x = _images(2)
    source.eval()
    for name, obj in (
        ("bare.pt", source.state_dict()),
        ("ckpt.pt", {"student": source.state_dict(), "step": 3}),
        ("ddp.pt", {"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}),
    ):
        torch.save(obj, tmp_path / name)
        target = SimpleBaseline("resnet18", 17, 0.125).eval()
        assert load_pretrained(target, tmp_path / name) == []
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_load_pretrained_other_joint_count_skips_only_the_head(tmp_path: Path) -> None:
    source = SimpleBaseline("resnet18", 17, 0.125)
    torch.save(source.state_dict(), tmp_path / "coco.pt")
    target = SimpleBaseline("resnet18", 14, 0.125)
    head = target.head.weight.clone()
    skipped = load_pretrained(target, tmp_path / "coco.pt")
    assert skipped == ["head.weight", "head.bias"]
    assert torch.equal(target.head.weight, head)
    assert torch.equal(target.deconv[0].weight, source.deconv[0].weight)


def test_load_pretrained_resnet_classifier_layout(tmp_path: Path) -> None:
    source = SimpleBaseline("resnet18", 17, 1.0)
    rename = {"stem.0.": "conv1.", "stem.1.": "bn1."}
    classifier = {}
    for k, v in source.state_dict().items():
        if k.startswith(("deconv.", "head.")):
            continue
        for old, new in rename.items():
            k = k.replace(old, new, 1) if k.startswith(old) else k
        classifier[k] = v + 1.0 if v.is_floating_point() else v
    classifier["fc.weight"] = torch.zeros(1000, 512)
    classifier["fc.bias"] = torch.zeros(1000)
    torch.save(classifier, tmp_path / "resnet18.pt")
    target = SimpleBaseline("resnet18", 17, 1.0)
    skipped = load_pretrained(target, tmp_path / "resnet18.pt")
    assert {k.split(".")[0] for k in skipped} == {"deconv", "head"}
    assert torch.equal(target.stem[0].weight, classifier["conv1.weight"])
    assert torch.equal(target.layer3[1].bn2.running_var, classifier["layer3.1.bn2.running_var"])


def test_load_pretrained_errors_name_the_problem(tmp_path: Path) -> None:
    torch.save(SimpleBaseline("resnet18", 17, 0.25).state_dict(), tmp_path / "wide.pt")
    with pytest.raises(ValueError, match=r"stem\.0\.weight has shape \(16, 3, 7, 7\)"):
        load_pretrained(SimpleBaseline("resnet18", 17, 0.125), tmp_path / "wide.pt")
    partial = SimpleBaseline("resnet18", 17, 0.125).state_dict()
    del partial["layer2.0.conv1.weight"]
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"missing layer2\.0\.conv1\.weight"):
        load_pretrained(SimpleBaseline("resnet18", 17, 0.125), tmp_path / "partial.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        load_pretrained(SimpleBaseline("resnet18", 17, 0.125), tmp_path / "junk.pt")
    torch.save({"a": 1}, tmp_path / "dict.pt")
    with pytest.raises(ValueError, match="state dict"):
        load_pretrained(SimpleBaseline("resnet18", 17, 0.125), tmp_path / "dict.pt")


# -------------------------------------------------------------------------- methods

ALL_STREAMS = STREAMS + PARTNER_STREAMS

#: Two mirrored joints (0 = left, 1 = right) and one centre joint.
SKELETON = Skeleton(("left_a", "right_a", "c"), (1, 0, 2), (0.05, 0.05, 0.05))


class Pool(nn.Module):
    """A parameter-free "pose network": the first K image channels average-pooled to stride 4."""

    def __init__(self, joints: int = 3) -> None:
        super().__init__()
        self.joints = joints
        self.pool = nn.AvgPool2d(4)
        self.layer4 = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.layer4(x[:, : self.joints]))


def _swap_sides(x: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Joint k of a flagged sample becomes joint ``flip_index[k]`` (dim 1 of ``x``)."""
    index = torch.tensor(SKELETON.flip_index)
    return torch.where(flags.view(-1, *([1] * (x.dim() - 1))), x[:, index], x)


def _dots(keypoints: torch.Tensor, size: tuple[int, int], sigma: float = 2.0) -> torch.Tensor:
    """Images whose channel k holds a Gaussian blob at joint k (image pixels)."""
    visibility = torch.ones(keypoints.shape[:2])
    return render_heatmaps(keypoints, visibility, size, sigma, unbiased=True)[0]


def test_joint_mse_weights_joints() -> None:
    pred, target = torch.ones(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    assert float(joint_mse(pred, target, torch.ones(2, 3))) == 0.5
    assert float(joint_mse(pred, target, torch.tensor([[1.0, 0, 0], [0, 0, 0]]))) == pytest.approx(
        0.5 / 6
    )


def test_easy_view_moves_keypoints_with_the_content_and_swaps_sides() -> None:
    size = (64, 48)
    keypoints = torch.tensor([[[14.0, 20.0], [30.0, 24.0], [24.0, 40.0]]]).repeat(8, 1, 1)
    image = _dots(keypoints, size)
    method = SSHPEMethod(
        Pool(),
        MethodConfig(method="supervised", flip_p=0.5, rotation_p=1.0),
        SKELETON,
        step_generators(3),
    )
    affine, view = method.easy_view(image, keypoints, torch.ones(8, 3), stream="labeled_view")
    flipped = view.params
    assert flipped.any() and not flipped.all()
    # joint k of a flipped view is joint flip_index[k] of the base crop, whose blob is in
    # that channel: it must sit at the view's keypoint k
    channels = _swap_sides(torch.arange(3).expand(8, 3), flipped)
    blobs = view.image.gather(1, channels[..., None, None].expand(-1, -1, *size))
    peaks = blobs.flatten(2).argmax(-1)
    found = torch.stack((peaks % size[1], peaks // size[1]), -1).float()
    inside = view.visibility > 0
    assert (found - view.keypoints).abs()[inside].max() <= 1.0
    # the view's matrix maps base keypoints to the view (joints not swapped)
    mapped = affine_keypoints(keypoints, view_matrix(affine, view))
    torch.testing.assert_close(_swap_sides(mapped, flipped), view.keypoints)
    # an unlabelled step keeps the same draws' views in its pseudo-labels, for diagnostics
    generators = {**step_generators(3), "unlabeled_view": step_generators(3)["labeled_view"]}
    unlabelled = SSHPEMethod(
        Pool(),
        MethodConfig(method="consistency", flip_p=0.5, rotation_p=1.0),
        SKELETON,
        generators,
    )
    unlabelled.unsupervised_losses(image)
    pseudo = unlabelled.last_pseudo
    assert pseudo is not None
    assert torch.equal(pseudo.flipped, flipped) and torch.equal(pseudo.view.image, view.image)
    assert torch.equal(pseudo.matrix, view_matrix(affine, view))


@pytest.mark.parametrize("method_name", ["consistency", "posemum"])
def test_unsupervised_target_is_warped_into_the_hard_view(method_name: str) -> None:
    """With an equivariant network the hard-view output matches the warped teacher target."""
    size = (64, 64)
    g = torch.Generator().manual_seed(0)
    keypoints = 16 + 32 * torch.rand(8, 3, 2, generator=g)
    image = _dots(keypoints, size, sigma=6.0)
    # no mixing (it is not equivariant): this test is about the views' geometry
    config = MethodConfig(
        method=method_name,
        joint_cutout=False,
        mix_at=("layer4",),
        unmix_at="pool",
        mix_p=0.0,
        mix_p_feature=0.0,
    )
    method = SSHPEMethod(Pool(), config, SKELETON, step_generators(1))
    (loss,) = map(float, method.unsupervised_losses(image))
    # the same draws, but the target left in the easy view: far worse
    for name, generator in step_generators(1).items():
        method.generators[name].set_state(generator.get_state())
    _, easy = method.easy_view(image, stream="unlabeled_view")
    hard = method.learners[0].hard_affine(easy.image)
    unwarped = float(joint_mse(Pool()(hard.image), Pool()(easy.image), torch.ones(8, 3)))
    assert loss < 0.05 * unwarped


def test_teachers_by_method() -> None:
    model = SimpleBaseline("resnet18", 3, 0.125)
    kinds = {
        name: type(
            SSHPEMethod(model, MethodConfig(method=name), SKELETON, step_generators(0)).teacher
        )
        for name in ("supervised", "consistency")
    }
    assert kinds == {"supervised": EMANTeacher, "consistency": MeanTeacher}
    mixed = SSHPEMethod(model, MethodConfig(teacher="ema"), SKELETON, step_generators(0))
    assert isinstance(mixed.teacher, MeanTeacher) and mixed.learners[0].mum is not None
    mixed.close()


def test_losses_of_each_method_backpropagate() -> None:
    g = torch.Generator().manual_seed(0)
    labeled = {
        "image": _images(4),
        "keypoints": 8 + 48 * torch.rand(4, 3, 2, generator=g),
        "visibility": torch.ones(4, 3),
    }
    unlabeled = {"image": _images(4, seed=1)}
    for name, extra in (
        ("supervised", {}),
        ("consistency", {"confidence": 0.0, "flip_consistency": 100.0}),
        ("posemum", {"hard_targets": True, "hard_threshold": 0.0, "momentum_warmup": 10}),
    ):
        model = SimpleBaseline("resnet18", 3, 0.125)
        config = MethodConfig(method=name, **extra)
        method = SSHPEMethod(model, config, SKELETON, step_generators(0))
        losses = method.losses(labeled, unlabeled)
        assert set(losses) == (
            {"loss", "sup"} if name == "supervised" else {"loss", "sup", "unsup"}
        )
        losses["loss"].backward()
        assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0
        assert method.update_teacher() == (0.5 if name == "posemum" else 0.999)
        method.close()


def _method(name: str, **options: object) -> SSHPEMethod:
    """The method ``name`` on 1/8-width ResNet-18s (two for the dual methods), seeded."""
    config = MethodConfig(method=name, **options)  # type: ignore[arg-type]
    torch.manual_seed(0)
    networks = [SimpleBaseline("resnet18", 3, 0.125) for _ in range(config.networks)]
    partner = networks[1] if config.dual else None
    generators = step_generators(0, streams=config.streams)
    return SSHPEMethod(networks[0], config, SKELETON, generators, partner=partner)


def test_methods_are_paired_every_kind_of_draw_has_its_own_stream() -> None:
    """With one seed, every method draws the same values for what it shares with another:
    Pose-MUM's plans (and the unlabelled pass) do not shift the other draws, and the first
    network of the dual methods draws what the single network of the others draws, its
    partner's own cutout, hard view and plans coming from streams of their own."""
    g = torch.Generator().manual_seed(0)
    labeled = {
        "image": _images(8),
        "keypoints": 8 + 48 * torch.rand(8, 3, 2, generator=g),
        "visibility": torch.ones(8, 3),
    }
    unlabeled = {"image": _images(8, seed=1)}
    states: dict[str, dict[str, torch.Tensor]] = {}
    views: dict[str, torch.Tensor] = {}
    for name in METHODS:
        method = _method(name, mix_p_feature=1.0)
        for _ in range(2):
            method.losses(labeled, unlabeled)
        if method.last_pseudo is not None:
            views[name] = method.last_pseudo.view.image
        states[name] = {k: v.get_state() for k, v in method.generators.items()}
        method.close()
    fresh = {k: v.get_state() for k, v in step_generators(0, streams=ALL_STREAMS).items()}
    semi = {"consistency", "posemum", "dual", "posemum_dual"}
    for stream in ALL_STREAMS:
        used = {
            name
            for name in states
            if stream in states[name] and not torch.equal(states[name][stream], fresh[stream])
        }
        expected = {
            "labeled_view": set(METHODS),
            "mixing": {"posemum", "posemum_dual"},
            "cutout_b": {"dual", "posemum_dual"},
            "hard_view_b": {"dual", "posemum_dual"},
            "mixing_b": {"posemum_dual"},
        }.get(stream, semi)
        assert used == expected, stream
        drawn = [states[name][stream] for name in expected]
        assert all(torch.equal(drawn[0], other) for other in drawn[1:]), stream
    assert all(torch.equal(views["consistency"], views[name]) for name in semi)


@pytest.mark.parametrize("name", ["dual", "posemum_dual"])
def test_dual_networks_fit_each_others_heatmaps(name: str) -> None:
    """Replaying the draws by hand: network A's hard view is cut out at network B's peaks
    on the shared easy view and fitted to B's heatmaps there, and B's to A's (the other
    network in training mode, unmixed, without gradient); each network's hard view and
    tile plans come from its own streams."""
    method = _method(name, mix_p_feature=1.0, mix_feature_mode="all")
    image = _images(8)
    saved = {k: g.get_state() for k, g in method.generators.items()}
    losses = method.unsupervised_losses(image)
    for key, state in saved.items():
        method.generators[key].set_state(state)
    _, easy = method.easy_view(image, stream="unlabeled_view")
    a, b = (learner.student for learner in method.learners)
    with torch.no_grad(), method.unmixed():
        targets = [b(easy.image), a(easy.image)]  # A fits B's heatmaps, B fits A's
    pseudo = method.last_pseudo
    assert pseudo is not None and torch.equal(pseudo.targets, targets[0])
    for learner, target, loss in zip(method.learners, targets, losses, strict=True):
        peaks, _ = decode_heatmaps(target, refine="dark")
        hard = learner.hard_affine(learner.cutout(easy.image, peaks * 4).image, heatmaps=target)
        expected = joint_mse(learner.student(hard.image), hard.heatmaps, torch.ones(8, 3))
        torch.testing.assert_close(loss, expected, rtol=0, atol=0)
    assert losses[0] != losses[1]
    method.close()


def test_dual_losses_train_both_networks() -> None:
    method = _method("posemum_dual", momentum=0.9)
    labeled = {"image": _images(4), "keypoints": torch.full((4, 3, 2), 30.0),
               "visibility": torch.ones(4, 3)}  # fmt: skip
    losses = method.losses(labeled, {"image": _images(4, seed=1)})
    assert set(losses) == {"loss", "sup", "unsup", "sup_b", "unsup_b"}
    total = losses["sup"] + losses["unsup"] + (losses["sup_b"] + losses["unsup_b"])
    torch.testing.assert_close(losses["loss"], total)
    losses["loss"].backward()
    models = method.models
    assert list(models) == ["student", "teacher", "student_b", "teacher_b"]
    for network in (models["student"], models["student_b"]):
        assert network.head.weight.grad is not None and network.head.weight.grad.abs().sum() > 0
    assert method.update_teacher() == 0.9
    assert [learner.teacher.step for learner in method.learners] == [1, 1]
    assert all(learner.mum is not None for learner in method.learners)
    method.close()
    assert all(learner.handle is None for learner in method.learners)


def test_generators_must_name_every_stream() -> None:
    generators = step_generators(0)
    del generators["cutout"]
    with pytest.raises(ValueError, match="streams"):
        SSHPEMethod(Pool(), MethodConfig(method="supervised"), SKELETON, generators)
    with pytest.raises(ValueError, match="streams"):  # a dual method draws from more
        SSHPEMethod(
            Pool(), MethodConfig(method="dual"), SKELETON, step_generators(0), partner=Pool()
        )
    with pytest.raises(ValueError, match="unknown streams"):
        step_generators(0, streams=("cutout_c",))


def test_a_partner_network_is_for_the_dual_methods_only() -> None:
    dual = MethodConfig(method="dual")
    with pytest.raises(ValueError, match="'dual' needs a partner network"):
        SSHPEMethod(Pool(), dual, SKELETON, step_generators(0, streams=dual.streams))
    with pytest.raises(ValueError, match="'posemum' takes no partner network"):
        SSHPEMethod(Pool(), MethodConfig(), SKELETON, step_generators(0), partner=Pool())
    network = Pool()
    with pytest.raises(ValueError, match="another network"):
        SSHPEMethod(network, dual, SKELETON, step_generators(0, streams=dual.streams),
                    partner=network)  # fmt: skip


def test_predict_heatmaps_flip_test_maps_the_mirror_back() -> None:
    size = (64, 48)
    keypoints = torch.tensor([[[17.3, 21.0]], [[30.0, 40.6]]])
    image = torch.cat([_dots(keypoints, size, sigma=4.0)] * 3, dim=1)

    class Renderer(nn.Module):
        """Renders a heatmap (stride 4) at the image's brightest pixel: flip-equivariant."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            index = x[:, 0].flatten(1).argmax(-1)
            peak = torch.stack((index % x.shape[-1], index // x.shape[-1]), -1).float()
            return render_heatmaps(
                peak[:, None] / 4, torch.ones(len(x), 1), (16, 12), 1.0, unbiased=True
            )[0]

    plain = decode_heatmaps(predict_heatmaps(Renderer(), image), refine="dark")[0]
    flipped = decode_heatmaps(predict_heatmaps(Renderer(), image, (0,)), refine="dark")[0]
    torch.testing.assert_close(flipped, plain, atol=0.05, rtol=0)


def test_one_generator_instead_of_the_streams_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="step_generators"):
        SSHPEMethod(Pool(), MethodConfig(method="supervised"), SKELETON, torch.Generator())  # type: ignore[arg-type]
