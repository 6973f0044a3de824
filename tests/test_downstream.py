"""Downstream: classifier loading and layer decay, views and top-k, augmentation, the three entry points."""

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

import mae
from configs import CONFIG_DIR, ConfigError, register_configs
from configs.downstream_schema import register_downstream_configs
from downstream import evaluate as ev
from downstream.attention_maps import actor_attention, mha_weights, trajectory_weights
from downstream.video_aug import ClipRandAugment, FinetuneClipTransform, VideoMixup
from mae.classifier import CheckpointMismatchError, VideoClassifier, layer_scales
from tests.videomae_reference import PretrainVisionTransformer

ROOT = Path(__file__).resolve().parents[1]
TINY_ARCH = dict(img_size=32, num_frames=4, embed_dim=32, depth=2, num_heads=2)
# the tiny size at 32 px and 4 frames: N = 2 * 2 * 2 tokens
SMALL = ["model.img_size=32", "data.num_frames=4", "data.num_workers=0"]


def compose_cfg(name, *overrides):
    if name == "config":
        register_configs()
    else:
        register_downstream_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


# ---- classifier: checkpoints and layer decay

def _official_pretrain_state(seed=3):
    torch.manual_seed(seed)
    reference = PretrainVisionTransformer(img_size=32, patch_size=16, num_frames=4, tubelet_size=2, dim=32, depth=2,
                                          heads=2, decoder_dim=16, decoder_depth=1, decoder_heads=2).eval()
    for p in reference.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return reference


def test_classifier_loads_official_pretraining_checkpoint_strictly(tmp_path):
    reference = _official_pretrain_state()
    path = tmp_path / "videomae.pth"
    torch.save({"model": reference.state_dict()}, path)
    model = VideoClassifier.from_videomae_checkpoint(path, 5, size="tiny", **TINY_ARCH, drop_path_rate=0.0).eval()
    video = torch.randn(2, 3, 4, 32, 32)
    reference.encoder.norm = torch.nn.Identity()  # fine-tuning drops the final norm, pools, then fc_norm
    with torch.no_grad():
        expected = reference.encoder(video, torch.zeros(2, 8, dtype=torch.bool)).mean(dim=1)
        torch.testing.assert_close(model.encoder(video).mean(dim=1), expected, rtol=1e-4, atol=1e-5)
        assert model(video).shape == (2, 5)
    state = reference.state_dict()
    del state["encoder.blocks.1.attn.q_bias"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(CheckpointMismatchError, match=r"missing keys.*blocks\.1\.attn\.q_bias"):
        VideoClassifier.from_videomae_checkpoint(tmp_path / "missing.pth", 5, size="tiny", **TINY_ARCH)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys.*blocks\.1"):  # a deeper file
        VideoClassifier.from_videomae_checkpoint(path, 5, size="tiny", **{**TINY_ARCH, "depth": 1})
    with pytest.raises(CheckpointMismatchError, match="shape mismatch"):
        VideoClassifier.from_videomae_checkpoint(path, 5, size="tiny", **{**TINY_ARCH, "embed_dim": 64})


def test_classifier_round_trips_the_official_finetuned_layout(tmp_path):
    torch.manual_seed(0)
    model = VideoClassifier(num_classes=4, **TINY_ARCH).eval()
    official = {k.removeprefix("encoder."): v for k, v in model.state_dict().items()}  # blocks.*, fc_norm.*, head.*
    assert "blocks.0.attn.v_bias" in official and "head.weight" in official
    torch.save({"module": official}, tmp_path / "ft.pth")
    loaded = VideoClassifier.from_videomae_checkpoint(tmp_path / "ft.pth", 4, size="tiny", **TINY_ARCH).eval()
    video = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(loaded(video), model(video))
    with pytest.raises(CheckpointMismatchError, match="head.weight"):
        VideoClassifier.from_videomae_checkpoint(tmp_path / "ft.pth", 7, size="tiny", **TINY_ARCH)


def test_layer_decay_groups_by_hand():
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler

    model = VideoClassifier(num_classes=3, **TINY_ARCH)  # depth 2: layers 0 (stem), 1, 2 (blocks), 3 (head)
    scales = layer_scales(model, 0.75)
    assert scales["encoder.patch_embed.proj.weight"] == pytest.approx(0.75**3)
    assert scales["encoder.blocks.0.attn.qkv.weight"] == pytest.approx(0.75**2)
    assert scales["encoder.blocks.1.mlp.fc2.bias"] == pytest.approx(0.75)
    assert scales["fc_norm.weight"] == scales["head.weight"] == 1.0
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.75)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            name = names[id(p)]
            assert group["lr_scale"] == pytest.approx(scales[name]), name
            assert group["weight_decay"] == (0.0 if p.ndim <= 1 else 0.05), name  # no decay on norms, biases
    CosineLRScheduler(optimizer, t_initial=10, warmup_t=0, t_in_epochs=False).step_update(0)
    for group in optimizer.param_groups:  # the schedule applies each group's scale
        assert group["lr"] == pytest.approx(1e-3 * group["lr_scale"])


# ---- views, averaging, top-k

def test_topk_and_view_averaging_by_hand():
    probs = torch.tensor([[0.1, 0.5, 0.2, 0.05, 0.05, 0.04, 0.03, 0.03],
                          [0.3, 0.1, 0.2, 0.15, 0.1, 0.05, 0.06, 0.04],
                          [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.72]])
    labels = torch.tensor([1, 6, 2])  # ranks 1, 6 and 6
    assert ev.topk_correct(probs, labels) == {1: 1, 5: 1}
    assert ev.topk_correct(probs, torch.tensor([2, 0, 3]), ks=(1, 5)) == {1: 1, 5: 3}
    assert ev.topk_correct(probs[:, :3], torch.tensor([2, 1, 0]), ks=(1, 5)) == {1: 0, 5: 3}  # k capped at C
    views = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.8], [0.4, 0.6]])
    video = torch.tensor([0, 0, 1, 2, 2])
    mean = ev.average_views(views, video, 4)
    torch.testing.assert_close(mean[:3], torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.3, 0.7]]))
    assert torch.isnan(mean[3]).all()  # a video without views


def test_windows_and_crops_like_videomae():
    assert ev.window_starts(100, 4, 2, 2) == [0, 93]  # span 7: first and last possible starts
    assert ev.window_starts(100, 4, 2, 5) == [0, 23, 46, 69, 93]
    assert ev.window_starts(100, 4, 2, 1) == [46]  # centred
    assert ev.window_starts(5, 4, 2, 3) == [0]  # shorter than a window: one view
    np.testing.assert_array_equal(ev.window_indices(5, 4, 2, 2), [[0, 2, 4, 4]])  # last frame repeated
    assert ev.crop_offsets(48, 32, 3) == [0, 8, 16] and ev.crop_offsets(32, 32, 3) == [0]
    columns = np.broadcast_to(np.arange(48, dtype=np.uint8)[None, None, :, None] * 5, (2, 32, 48, 3))
    crops = ev.spatial_views(columns, 32, 3)  # landscape: left, centre, right
    assert crops.shape == (3, 3, 2, 32, 32)
    first_column = crops[:, 0, 0, 0, 0] * 0.229 + 0.485  # back to [0, 1]
    torch.testing.assert_close(first_column, torch.tensor([0.0, 40.0, 80.0]) / 255, atol=1e-3, rtol=0)
    rows = np.ascontiguousarray(np.transpose(columns, (0, 2, 1, 3)))  # portrait 48 x 32: top, centre, bottom
    top_left = ev.spatial_views(rows, 32, 3)[:, 0, 0, 0, 0] * 0.229 + 0.485
    torch.testing.assert_close(top_left, torch.tensor([0.0, 40.0, 80.0]) / 255, atol=1e-3, rtol=0)


class _MeanColour(torch.nn.Module):
    """Logits that depend on a view's content: its mean over each of the 3 channels, times 10."""

    def forward(self, video):
        return video.mean(dim=(2, 3, 4)) * 10.0


def _write_video(path, frames):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def test_multiview_evaluation_of_a_video_file(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 256, size=(20, 4, 8, 3), dtype=np.uint8), 8, axis=1).repeat(8, axis=2)
    _write_video(tmp_path / "a.mp4", frames)  # 20 frames of 32 x 64 (decord needs widths a multiple of 32)
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    dataset = ev.MultiViewDataset([(str(tmp_path / "a.mp4"), 2), (str(tmp_path / "broken.mp4"), 0)],
                                  num_frames=4, sampling_rate=2, input_size=32, num_clips=2, num_crops=3)
    with pytest.warns(UserWarning, match="broken.mp4"):
        item = dataset[1]
    assert item["skipped"] == 1 and len(item["views"]) == 0
    views = dataset[0]["views"]
    assert views.shape == (6, 3, 4, 32, 32)  # 2 windows (starts 0 and 13) x 3 crops
    decoded = ev.read_windows(str(tmp_path / "a.mp4"), 4, 2, 2)
    assert decoded.shape == (2, 4, 32, 64, 3)
    expected_views = torch.cat([ev.spatial_views(window, 32, 3) for window in decoded])
    torch.testing.assert_close(views, expected_views)
    expected = _MeanColour()(expected_views).softmax(1).mean(0)  # softmax averaged over the 6 views
    loader = ev.make_eval_loader(dataset, batch_size=2, num_workers=0)
    with pytest.warns(UserWarning):
        result = ev.evaluate(_MeanColour(), loader, torch.device("cpu"))
    assert result.num_videos == 1 and result.skipped == 1 and result.views_per_video == 6
    assert result.top1 == (100.0 if int(expected.argmax()) == 2 else 0.0)
    assert result.loss == pytest.approx(-float(expected[2].log()), rel=1e-5)


def test_an_evaluation_over_no_readable_video_is_an_error_not_zero_percent(tmp_path):
    from data.video_dataset import NoReadableVideoError

    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    dataset = ev.MultiViewDataset([(str(tmp_path / "broken.mp4"), 0), (str(tmp_path / "gone.mp4"), 1)],
                                  num_frames=4, sampling_rate=2, input_size=32, num_clips=1, num_crops=1)
    loader = ev.make_eval_loader(dataset, batch_size=2, num_workers=0)
    with pytest.warns(UserWarning), pytest.raises(NoReadableVideoError, match="none of the 2 test videos"):
        ev.evaluate(_MeanColour(), loader, torch.device("cpu"))


# ---- augmentation

def test_clip_randaugment_is_identical_across_frames_and_leaves_global_rng_alone():
    frame = np.random.default_rng(1).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    clip = np.repeat(frame[None], 5, axis=0)
    augment = ClipRandAugment("rand-m9-mstd0.5-inc1", input_size=32)
    random.seed(123)
    np.random.seed(123)
    before = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    outputs = [augment(clip, torch.Generator().manual_seed(s)) for s in range(6)]
    assert (random.random(), np.random.rand()) == before  # the global generators did not move
    for out in outputs:
        assert out.shape == clip.shape and out.dtype == np.uint8
        assert all(np.array_equal(out[0], out[t]) for t in range(1, 5))
    assert any(not np.array_equal(out, clip) for out in outputs)  # it does augment
    np.testing.assert_array_equal(augment(clip, torch.Generator().manual_seed(4)), outputs[4])  # reproducible
    posterize = next(op for op in augment.transform.ops if op.name == "PosterizeIncreasing")
    posterize.prob, posterize.magnitude, posterize.magnitude_std = 1.0, 10, 0  # asks for 0 bits
    assert not np.asarray(posterize(Image.fromarray(frame))).any()  # black, as Pillow < 10 gave
    transformed = FinetuneClipTransform(32, flip_prob=1.0)(np.zeros((4, 40, 56, 3), np.uint8),
                                                           torch.Generator().manual_seed(0))
    assert transformed.shape == (3, 4, 32, 32) and transformed.dtype == torch.float32


def test_video_cutmix_cuts_the_same_box_through_all_frames():
    x = torch.arange(4 * 3 * 5 * 8 * 8, dtype=torch.float32).reshape(4, 3, 5, 8, 8)
    mixup = VideoMixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=4)
    np.random.seed(0)
    mixed, target = mixup(x.clone(), torch.tensor([0, 1, 2, 3]))
    changed = mixed != x  # (B, C, T, H, W)
    assert changed.any()
    box = changed[0, 0, 0]
    assert all(torch.equal(changed[b, c, t], box) for b in range(4) for c in range(3) for t in range(5))
    torch.testing.assert_close(mixed[changed], x.flip(0)[changed])
    lam = 1.0 - box.float().mean().item()  # timm's lambda corrected to the box's area
    torch.testing.assert_close(target[0], torch.tensor([lam, 0.0, 0.0, 1.0 - lam]))


# ---- attention maps recomputed from the actor's weights

@pytest.mark.parametrize("impl", ["full", "orthoformer"])
def test_trajectory_weights_reproduce_the_layer(impl):
    from agents.networks.trajectory_attention import TrajectoryAttention

    torch.manual_seed(0)
    attn = TrajectoryAttention(dim=16, num_heads=2, grid=(3, 2, 2), attn_impl=impl, num_landmarks=5)
    x = torch.randn(2, 12, 16)
    query = 7
    spatial, temporal = trajectory_weights(attn, x, query)
    torch.testing.assert_close(spatial.sum(-1), torch.ones(2, 2, 3))
    # the layer's output for the query, rebuilt from the weights (Eq. 1 pooling, Eq. 2 pooling, projections)
    v = attn.qkv(x)[..., 32:].reshape(2, 12, 2, 8).transpose(1, 2).reshape(2, 2, 3, 4, 8)  # (B, H, T', P, c)
    trajectory = torch.einsum("bhtp,bhtpc->bhtc", spatial, v)
    pooled = torch.einsum("bht,btd->bhd", temporal, trajectory.permute(0, 2, 1, 3).reshape(2, 3, 16))
    out = torch.einsum("bhd,hcd->bhc", pooled, attn.traj_v.weight.reshape(2, 8, 16)) + attn.traj_v.bias.reshape(2, 8)
    torch.testing.assert_close(attn.proj(out.reshape(2, 16)), attn(x)[:, query], rtol=1e-4, atol=1e-5)


def test_mha_weights_reproduce_the_block_and_actor_maps_have_the_grid_shape():
    from agents.networks import build_actor

    torch.manual_seed(0)
    actor = build_actor("mha", embed_dim=16, grid=(2, 2, 2), num_heads=2)
    torch.nn.init.normal_(actor.pos_embed, std=0.5)
    tokens = torch.randn(1, 8, 16)
    x = actor.block.norm1(actor.input_proj(tokens) + actor.pos_embed)
    row = mha_weights(actor.block, x, 5)  # (1, H, N)
    v = actor.block.attn.qkv(x)[..., 32:].reshape(1, 8, 2, 8).transpose(1, 2)
    out = torch.einsum("bhm,bhmc->bhc", row, v).reshape(1, 16)
    torch.testing.assert_close(actor.block.attn.proj(out), actor.block.attn(x)[:, 5], rtol=1e-4, atol=1e-5)
    assert actor_attention(actor, tokens, 5, (2, 2, 2)).spatial.shape == (2, 2, 4)
    trajectory = build_actor("trajectory", embed_dim=16, grid=(2, 2, 2), num_heads=2)
    found = actor_attention(trajectory, tokens, 5, (2, 2, 2))
    assert found.spatial.shape == (2, 2, 4) and found.temporal.shape == (2, 2)


# ---- the entry points

@pytest.fixture(scope="module")
def pretrain_checkpoint(tmp_path_factory):
    """A real train_joint.py checkpoint: random masking, 1 step, 32 px x 4 frames."""
    import train_joint

    out = tmp_path_factory.mktemp("pretrain")
    train_joint.train(compose_cfg("config", "preset=none", *SMALL, "agent=random", "data.synthetic_clips=8", "train.batch_size=4",
                                  "train.epochs=1", "train.max_steps=1", f"output_dir={out}"))
    return out / "checkpoint-latest.pt"


def _fake_checkpoint(path, agent_name, *overrides):
    """A checkpoint with train_joint.py's keys for any agent (untrained), without running it."""
    from agents.registry import build_agent
    from downstream.visualise import agent_environment

    cfg = OmegaConf.to_container(compose_cfg("config", "preset=none", *SMALL, f"agent={agent_name}", *overrides), resolve=True)
    torch.manual_seed(0)
    model = mae.create_model("tiny", img_size=32, num_frames=4)
    env = agent_environment(model, cfg["mask_ratio"], group_size=int(cfg["agent"].get("group_size", 1)))
    agent = build_agent(agent_name, env=env, config=cfg["agent"])
    torch.save(dict(mae=model.state_dict(), agent=agent.state_dict(), config=cfg), path)
    return path


FT_SMALL = [*SMALL, "data.synthetic_clips=8", "test.synthetic_clips=4", "train.batch_size=4", "train.epochs=2",
            "train.warmup_epochs=1", "train.log_every=1"]


def test_finetune_smoke_logs_and_resumes_exactly(tmp_path, pretrain_checkpoint):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from downstream import finetune
    from downstream.common import build_classifier

    full = finetune.train(compose_cfg("finetune", *FT_SMALL, f"checkpoint={pretrain_checkpoint}",
                                      f"output_dir={tmp_path / 'full'}"))
    metrics = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert metrics["steps"] == 4 and 0 <= metrics["eval/top1"] <= metrics["eval/top5"] <= 100
    assert metrics["eval/num_videos"] == 4 and metrics["num_classes"] == 8
    events = EventAccumulator(str(tmp_path / "full" / "tb")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"finetune/loss", "finetune/lr", "eval/top1", "eval/top5"} <= tags
    assert len(events.Scalars("eval/top1")) == 2  # after epoch 1 and at the end
    # 3 steps, then resume (mid-epoch) to 4: the same weights as the uninterrupted run
    finetune.train(compose_cfg("finetune", *FT_SMALL, f"checkpoint={pretrain_checkpoint}", "train.max_steps=3",
                               f"output_dir={tmp_path / 'cut'}"))
    resumed = finetune.train(compose_cfg("finetune", *FT_SMALL, f"checkpoint={pretrain_checkpoint}", "resume=true",
                                         f"output_dir={tmp_path / 'cut'}"))
    assert resumed["finetune/loss"] == full["finetune/loss"]
    a = torch.load(tmp_path / "full" / "checkpoint-latest.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoint-latest.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the model starts from the pretrained encoder (all but its final norm), with a new head
    start = build_classifier(compose_cfg("finetune", *FT_SMALL, f"checkpoint={pretrain_checkpoint}"), 8).state_dict()
    pretrained = torch.load(pretrain_checkpoint, weights_only=False)["mae"]
    encoder_keys = [k for k in start if k.startswith("encoder.")]
    assert len(encoder_keys) == len([k for k in pretrained if k.startswith("encoder.")]) - 2  # encoder.norm.*
    assert all(torch.equal(start[k], pretrained[k]) for k in encoder_keys)
    with pytest.raises(Exception, match="resume=true"):
        finetune.train(compose_cfg("finetune", *FT_SMALL, f"output_dir={tmp_path / 'full'}"))


def test_head_init_scale_sets_the_heads_initial_size():
    from downstream.common import build_classifier

    stds = {}
    for scale in ("1e-3", "1"):
        torch.manual_seed(0)
        head = build_classifier(compose_cfg("finetune", *FT_SMALL, f"train.head_init_scale={scale}"), 8).head
        stds[scale] = float(head.weight.detach().std())
    assert stds["1"] == pytest.approx(0.02, rel=0.2)  # trunc-normal(0.02), 8 x 96 weights
    assert stds["1e-3"] == pytest.approx(stds["1"] * 1e-3, rel=1e-5)  # same draw, scaled
    with pytest.raises(Exception, match="head_init_scale must be positive"):
        from configs.downstream_schema import validate_downstream
        validate_downstream(compose_cfg("finetune", *FT_SMALL, "train.head_init_scale=0"))


def test_finetune_on_a_list_of_video_files(tmp_path):
    from data import SyntheticMotionVideos
    from downstream import finetune

    list_file = SyntheticMotionVideos(4, num_frames=12, input_size=32, seed=1).export(tmp_path / "videos")
    out = finetune.train(compose_cfg("finetune", *SMALL, "data=list", f"data.train_list={list_file}",
                                     f"test.list={list_file}", "train.batch_size=2", "train.epochs=1",
                                     "train.warmup_epochs=0", f"output_dir={tmp_path / 'run'}"))
    # 12 frames, windows of 4 at stride 2 (span 7): starts 0 and 5; square frames: one crop
    assert out["eval/num_videos"] == 4 and out["eval/views_per_video"] == 2.0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["num_classes"] == 1 + max(
        int(line.split("\t")[1]) for line in Path(list_file).read_text().splitlines())


def test_finetune_cli_rejects_a_bad_config(tmp_path):
    result = subprocess.run([sys.executable, "-m", "downstream.finetune", "train.layer_decay=1.5",
                             f"output_dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "error: train.layer_decay must be in (0, 1]" in result.stderr


def test_linear_probe_smoke(tmp_path, pretrain_checkpoint):
    from downstream import linear_probe

    out = linear_probe.train(compose_cfg("linear_probe", *SMALL, "data.synthetic_clips=8", "test.synthetic_clips=4",
                                         "train.batch_size=4", "train.epochs=3", f"checkpoint={pretrain_checkpoint}",
                                         f"output_dir={tmp_path}"))
    assert out["eval/num_videos"] == 4 and 0 <= out["eval/top1"] <= out["eval/top5"] <= 100
    probe = torch.load(tmp_path / "probe.pt", weights_only=False)
    assert probe["head"]["weight"].shape == (8, 96) and "running_mean" in probe["norm"]
    # a fine-tuned (no 'encoder.*') file is refused with a reason
    torch.save({"model": {"blocks.0.norm1.weight": torch.ones(96)}}, tmp_path / "ft.pth")
    with pytest.raises(CheckpointMismatchError, match="pretraining checkpoint"):
        linear_probe.train(compose_cfg("linear_probe", *SMALL, f"checkpoint={tmp_path / 'ft.pth'}",
                                       "checkpoint_format=videomae", f"output_dir={tmp_path / 'x'}"))


def test_attentive_probe_smoke(tmp_path, pretrain_checkpoint):
    from downstream import linear_probe

    out = linear_probe.train(compose_cfg("linear_probe", *SMALL, "data.synthetic_clips=8", "test.synthetic_clips=4",
                                         "train.batch_size=4", "train.epochs=3", "train.opt=adamw", "train.lr=1e-3",
                                         "head=attentive", f"checkpoint={pretrain_checkpoint}",
                                         f"output_dir={tmp_path}"))
    assert out["eval/num_videos"] == 4 and 0 <= out["eval/top1"] <= out["eval/top5"] <= 100
    probe = torch.load(tmp_path / "probe.pt", weights_only=False)
    assert probe["pooling"] == "attentive" and probe["norm"]["query"].shape == (3, 96)


def test_probe_layer_reads_the_residual_stream_after_that_many_blocks():
    """layer=-1 is the encoder's output; layer=k the tokens after k blocks, by hand; others refused."""
    from downstream.linear_probe import LinearProbe
    from mae import create_model

    torch.manual_seed(0)
    encoder = create_model("micro", num_frames=4).encoder.eval()
    video = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        stream = [encoder.tokenize(video)]
        for block in encoder.blocks:
            stream.append(block(stream[-1]))
        output = encoder(video)
    torch.testing.assert_close(LinearProbe(encoder, 8).features(video), output.mean(1))
    for layer, tokens in enumerate(stream):
        torch.testing.assert_close(LinearProbe(encoder, 8, layer=layer).features(video), tokens.mean(1))
        torch.testing.assert_close(LinearProbe(encoder, 8, "attentive", layer=layer).features(video), tokens)
    assert not torch.allclose(stream[-1], output)  # the final LayerNorm is what -1 adds to the last block
    for bad in (-2, len(encoder.blocks) + 1):
        with pytest.raises(ValueError, match="layer must be"):
            LinearProbe(encoder, 8, layer=bad)


def test_linear_probe_of_a_layer_the_encoder_lacks_is_a_config_error(tmp_path):
    from downstream import linear_probe

    out = tmp_path / "probe"
    with pytest.raises(ConfigError, match="a block 1 .. 4, got 9"):
        linear_probe.train(compose_cfg("linear_probe", *SMALL, "layer=9", f"output_dir={out}"))
    assert not out.exists()  # refused before the run folder, its config or its TensorBoard log is written


def test_attentive_pooling_equals_multihead_attention_with_one_query():
    """The folded computation against torch's MultiheadAttention applied to one query token."""
    from downstream.linear_probe import AttentivePooling

    torch.manual_seed(0)
    dim, heads, head_dim = 12, 3, 4
    mha = torch.nn.MultiheadAttention(dim, heads, batch_first=True)
    torch.nn.init.normal_(mha.in_proj_bias)
    query_token = torch.randn(1, 1, dim)
    tokens = torch.randn(5, 7, dim)
    expected = mha(query_token.expand(5, -1, -1), tokens, tokens, need_weights=False)[0][:, 0]

    pool = AttentivePooling(dim, heads)
    w_q, w_k, w_v = mha.in_proj_weight.split(dim)
    b_q, _, b_v = mha.in_proj_bias.split(dim)
    q = (query_token[0, 0] @ w_q.T + b_q).view(heads, head_dim)
    with torch.no_grad():  # per head: the query's score direction in token space, q_h . W_k^h
        pool.query.copy_(torch.einsum("he,hed->hd", q, w_k.view(heads, head_dim, dim)))
        pool.value.weight.copy_(w_v)
        pool.value.bias.copy_(b_v)
        pool.proj.load_state_dict(mha.out_proj.state_dict())
    assert torch.allclose(pool.attend(tokens), expected, atol=1e-5)


def test_attentive_pooling_finds_the_one_token_a_mean_hides():
    """The label sits in the sign of one feature of one token among many: the mean hides it (the
    token moves, and the others cancel it on average), one learned query finds it."""
    from downstream.linear_probe import AttentivePooling

    torch.manual_seed(0)
    num, tokens, dim = 512, 16, 8
    labels = torch.randint(0, 2, (num,))
    x = torch.randn(num, tokens, dim) * 0.1
    where = torch.randint(0, tokens, (num,))
    x[torch.arange(num), where, 0] = 5.0                      # marker: where the informative token is
    x[torch.arange(num), where, 1] = labels.float() * 2 - 1   # its sign is the label
    x[:, :, 1] -= x[:, :, 1].mean(dim=1, keepdim=True)        # so the mean over tokens carries nothing
    mean_acc = ((x.mean(1)[:, 1] > 0).long() == labels).float().mean()
    assert abs(float(mean_acc) - 0.5) < 0.1
    pool, head = AttentivePooling(dim, 2), torch.nn.Linear(dim, 2)
    opt = torch.optim.AdamW([*pool.parameters(), *head.parameters()], lr=1e-2)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(head(pool(x)), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (head(pool(x)).argmax(1) == labels).float().mean() > 0.95


@pytest.mark.parametrize("norm_target", [True, False])
def test_reconstruction_of_a_perfect_prediction_is_the_input(pretrain_checkpoint, norm_target):
    """Per-patch-normalised targets are de-normalised with the true patch statistics; raw [0, 1] pixel
    targets (the testbed's ``model.norm_target=false``) are the pixels themselves."""
    from downstream.visualise import load_pretrained, reconstruct, to_pixels

    model = load_pretrained(pretrain_checkpoint).model
    model.norm_target = norm_target
    video = torch.randn(1, 3, 4, 32, 32)
    visible = mae.random_mask(1, model.num_tokens, 0.5, generator=torch.Generator().manual_seed(0))
    channels = model.target(video).shape[-1]
    model.forward = lambda clip, vis: model.target(clip)[~vis].reshape(1, -1, channels)  # the exact target
    pixels, error, loss = reconstruct(model, video, visible)
    torch.testing.assert_close(pixels, to_pixels(video).clamp(0, 1), rtol=0, atol=1e-4)
    assert loss == pytest.approx(0.0, abs=1e-8) and error.shape == (1, 8)


@pytest.mark.parametrize("agent,overrides", [
    ("ppo", ["agent.critic_hidden=[16]"]), ("ppo", ["agent.actor=orthoformer", "agent.critic_hidden=[16]"]),
    ("reinforce", []), ("grpo", []), ("random", []), ("tube", []),
])
def test_visualisation_rows_for_every_agent(tmp_path, agent, overrides):
    from downstream.visualise import build_visualisation, load_clip, load_pretrained, make_figure

    pretrained = load_pretrained(_fake_checkpoint(tmp_path / "ckpt.pt", agent, *overrides))
    video, motion, _ = load_clip(pretrained, synthetic=1)
    learned = agent not in ("random", "tube")
    vis = build_visualisation(pretrained, video, motion=motion, compare="tube", query=(1, 0, 1) if learned else None)
    labels = [row.label.split("\n")[0] for row in vis.rows]
    expected = ["input", f"visible ({agent})", "reconstruction", "error (masked)", f"p ({agent})", "motion",
                "visible (tube)"] + (["attention"] if learned else [])
    assert labels == expected
    probs = vis.rows[4].heat
    assert probs.shape == (2, 2, 2) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    heat_rows = [row for row in vis.rows if row.kind == "heat"]
    assert [row.label.split("\n")[0] for row in heat_rows] == ["error (masked)", f"p ({agent})", "motion"] + (
        ["attention"] if learned else [])
    fig = make_figure(vis)
    assert len(fig.axes) == len(expected) * 2 + len(heat_rows)  # rows x T' columns, a colour bar per heat row
    motion_bar = fig.axes[len(expected) * 2 + 2]  # the motion row's: its two values named
    assert [label.get_text() for label in motion_bar.get_yticklabels()] == ["still", "moving"]
    compact = make_figure(vis, compact=True)  # TensorBoard's: one image per row
    assert len(compact.axes) == len(expected) + len(heat_rows)
    without_p = build_visualisation(pretrained, video, motion=motion, probabilities=False)
    assert "p (" not in " ".join(row.label for row in without_p.rows)


def test_visualise_cli_writes_png_and_gif(tmp_path):
    from downstream.visualise import DPI, figure_size, main

    ckpt = _fake_checkpoint(tmp_path / "ckpt.pt", "ppo", "agent.critic_hidden=[16]")
    out = tmp_path / "fig.png"
    assert main(["--synthetic", "0", "--checkpoint", str(ckpt), "--out", str(out), "--gif", "--compare", "random",
                 "--query", "0,1,1"]) == 0
    width, height = figure_size(8, 2)  # 5 rows + motion + comparison + attention, 2 tubelet steps
    assert Image.open(out).size == (round(width * DPI), round(height * DPI))
    gif = Image.open(out.with_suffix(".gif"))
    assert gif.n_frames == 4  # one per frame
    assert main(["--video", str(tmp_path / "nope.mp4"), "--checkpoint", str(ckpt), "--out", str(out)]) == 2
    assert main(["--synthetic", "0", "--checkpoint", str(ckpt), "--out", str(out), "--query", "5,0,0"]) == 2


@pytest.mark.slow
def test_finetune_on_two_gloo_ranks(tmp_path):
    import os

    from tests.helpers import free_port

    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    out = tmp_path / "run"
    # 16 clips over 2 ranks x 4 per step: 2 steps an epoch; 6 test videos split 3 + 3, counts summed
    args = [*SMALL, "data.synthetic_clips=16", "test.synthetic_clips=6", "train.batch_size=4", "train.epochs=2",
            f"output_dir={out}"]
    result = subprocess.run([str(torchrun), "--nproc_per_node=2", f"--master_port={free_port()}", "-m",
                             "downstream.finetune", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["eval/num_videos"] == 6
    assert metrics["lr"] == pytest.approx(1e-3 * 8 / 256)  # blr x total batch (2 ranks x 4) / 256
