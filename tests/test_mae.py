"""VideoMAE: shapes, positions, target, maskers, loss, checkpoints (tiny sizes, CPU)."""

import math

import pytest
import timm
import torch

import mae
from tests.videomae_reference import PretrainVisionTransformer, get_sinusoid_encoding_table

TINY = dict(img_size=32, num_frames=4, embed_dim=32, depth=2, num_heads=2,
            decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return mae.create_model("tiny", **TINY).eval()


def test_every_size_is_registered_with_timm():
    for name in mae.TIMM_NAMES.values():
        assert name in timm.list_models("pretrain_videomae_*")
    base = timm.create_model("pretrain_videomae_base_patch16_224", depth=1)  # shallow: fast
    assert base.num_tokens == 1568 and base.grid == (8, 14, 14)
    assert base.encoder.blocks[0].attn.qkv.weight.shape == (3 * 768, 768)
    assert base.decoder.head.out_features == 3 * 2 * 16 * 16
    with pytest.raises(ValueError, match="never downloaded"):
        timm.create_model("pretrain_videomae_tiny_patch16_64", pretrained=True)
    with pytest.raises(ValueError, match="unknown model"):
        mae.create_model("huge")


def test_shapes(model):
    video = torch.randn(3, 3, 4, 32, 32)
    assert model.num_tokens == 2 * 2 * 2
    visible = mae.random_mask(3, model.num_tokens, 0.75)
    assert model(video, visible).shape == (3, 6, 3 * 2 * 16 * 16)
    assert model.tokenize(video).shape == (3, 8, 32)
    out = model.loss(video, visible)
    assert out.per_clip.shape == (3,) and out.per_token.shape == (3, 8)
    assert torch.all(out.per_token[visible] == 0)
    assert torch.isclose(out.loss, out.per_clip.mean())


def test_sinusoid_table_matches_videomae_loop():
    for n, d in [(8, 6), (1568, 384), (128, 96)]:
        torch.testing.assert_close(mae.sinusoid_table(n, d), get_sinusoid_encoding_table(n, d), rtol=0, atol=0)
    # hand value: position 1, column 0 -> sin(1), column 1 -> cos(1)
    table = mae.sinusoid_table(2, 4)
    assert table[0, 1, 0].item() == pytest.approx(math.sin(1.0))
    assert table[0, 1, 1].item() == pytest.approx(math.cos(1.0))
    assert table[0, 1, 2].item() == pytest.approx(math.sin(1.0 / 100.0))
    assert "encoder.pos_embed" not in mae.create_model("tiny").state_dict()


def test_target_normalisation_by_hand():
    torch.manual_seed(1)
    video = torch.randn(1, 3, 2, 16, 32)  # one tubelet, two patches side by side
    target = mae.patchify_target(video, tubelet_size=2, patch_size=16)
    assert target.shape == (1, 2, 2 * 16 * 16 * 3)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1, 1)
    pixels = video[0] * std + mean  # (3, 2, 16, 32)
    patch = pixels[:, :, :, 16:]  # second token (w = 1)
    for c in range(3):
        values = patch[c].reshape(-1)
        expected = (values - values.mean()) / (values.std(unbiased=True) + 1e-6)
        # layout (t p p c): channel is the fastest axis
        got = target[0, 1].reshape(2 * 16 * 16, 3)[:, c]
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_loss_is_masked_mse():
    target = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    visible = torch.tensor([[True, False, False, True], [False, True, False, True]])
    pred = torch.zeros(2, 2, 3)
    out = mae.reconstruction_loss(pred, target, visible)
    clip0 = (target[0, 1].pow(2).mean() + target[0, 2].pow(2).mean()) / 2
    clip1 = (target[1, 0].pow(2).mean() + target[1, 2].pow(2).mean()) / 2
    torch.testing.assert_close(out.per_clip, torch.stack([clip0, clip1]))
    assert out.per_token[1, 2] == target[1, 2].pow(2).mean()
    assert out.per_token[1, 1] == 0


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9, 0.95])
def test_maskers_keep_exactly_k(ratio):
    grid = (8, 14, 14)
    n = 8 * 14 * 14
    k = mae.num_visible(n, ratio)
    assert k == round(n * (1 - ratio))
    g = torch.Generator().manual_seed(0)
    rand = mae.random_mask(4, n, ratio, generator=g)
    tube = mae.tube_mask(4, grid, ratio, generator=g)
    assert rand.dtype == torch.bool and rand.shape == (4, n)
    assert torch.all(rand.sum(1) == k) and torch.all(tube.sum(1) == k)
    # tube: frame-major order, so all frames share the visible positions (but the last tube)
    frames = tube.reshape(4, 8, 14 * 14)
    full_tubes = frames.all(dim=1).sum(dim=1)
    assert torch.all(full_tubes >= k // 8)
    assert torch.all(frames.any(dim=1).sum(dim=1) == -(-k // 8))


def test_num_visible_rejects_bad_ratio():
    for bad in (0.0, 1.0, 1.2, -0.1):
        with pytest.raises(ValueError, match="mask_ratio"):
            mae.num_visible(100, bad)


def test_index_mask_round_trip():
    idx = torch.tensor([[5, 0, 3], [1, 2, 7]])
    mask = mae.indices_to_mask(idx, 8)
    assert mask.sum() == 6
    torch.testing.assert_close(mae.mask_to_indices(mask), idx.sort(dim=1).values)


def _reference_for(model_kwargs):
    return PretrainVisionTransformer(
        img_size=model_kwargs["img_size"], patch_size=16, num_frames=model_kwargs["num_frames"],
        tubelet_size=2, dim=model_kwargs["embed_dim"], depth=model_kwargs["depth"],
        heads=model_kwargs["num_heads"], decoder_dim=model_kwargs["decoder_embed_dim"],
        decoder_depth=model_kwargs["decoder_depth"], decoder_heads=model_kwargs["decoder_num_heads"])


@pytest.mark.parametrize("wrapped", ["model", "module", None])
def test_official_checkpoint_loads_strictly_and_matches_videomae(tmp_path, model, wrapped):
    torch.manual_seed(3)
    reference = _reference_for(TINY).eval()
    for p in reference.parameters():  # non-zero biases and mask token exercise every key
        torch.nn.init.normal_(p, std=0.05)
    state = reference.state_dict()
    assert "encoder.blocks.0.attn.q_bias" in state and "encoder_to_decoder.weight" in state
    path = tmp_path / "videomae.pth"
    torch.save({wrapped: state} if wrapped else state, path)
    mae.load_videomae_checkpoint(model, path)
    video = torch.randn(2, 3, 4, 32, 32)
    visible = mae.random_mask(2, model.num_tokens, 0.5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(video, visible)
        theirs = reference(video, ~visible)  # VideoMAE: True = masked
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_checkpoint_strict_key_errors(tmp_path, model):
    state = model.state_dict()
    extra = dict(state, **{"encoder.blocks.9.attn.q_bias": torch.zeros(32)})
    torch.save({"model": extra}, tmp_path / "extra.pth")
    with pytest.raises(RuntimeError, match=r"unexpected keys.*blocks\.9"):
        mae.load_videomae_checkpoint(model, tmp_path / "extra.pth")
    missing = {k: v for k, v in state.items() if k != "mask_token"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(RuntimeError, match="missing keys.*mask_token"):
        mae.load_videomae_checkpoint(model, tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError):
        mae.load_videomae_checkpoint(model, tmp_path / "nope.pth")


def test_save_load_round_trip(tmp_path, model):
    path = tmp_path / "ours.pth"
    torch.save({"model": model.state_dict()}, path)
    other = mae.create_model("tiny", **TINY)
    mae.load_videomae_checkpoint(other, path)
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k


def test_load_mae_weights_reads_train_joint_and_videomae_files(tmp_path, model):
    source = mae.create_model("tiny", **TINY)
    for p in source.parameters():
        torch.nn.init.normal_(p, std=0.05)
    joint = tmp_path / "checkpoint-latest.pt"  # train_joint's layout: only "mae" is read
    torch.save({"mae": source.state_dict(), "agent": {}, "config": {}, "step": 3}, joint)
    official = tmp_path / "videomae.pth"
    torch.save({"model": source.state_dict()}, official)
    for path in (joint, official):
        target = mae.load_mae_weights(mae.create_model("tiny", **TINY), path)
        for (k, a), (_, b) in zip(source.state_dict().items(), target.state_dict().items()):
            assert torch.equal(a, b), (path.name, k)
    wrong = {k: v for k, v in source.state_dict().items() if k != "mask_token"}
    torch.save({"mae": wrong, "agent": {}, "config": {}}, tmp_path / "bad.pt")
    with pytest.raises(RuntimeError, match="missing keys.*mask_token"):
        mae.load_mae_weights(model, tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        mae.load_mae_weights(model, tmp_path / "nope.pt")
