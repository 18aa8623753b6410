import pytest
import torch
import torch.nn.functional as F

from clipgen.encoders.gap import GapBridge, GapConfig, gap_statistics


def gapped_pairs(n=2000, dim=32, shift=0.8, seed=0):
    """Matching image/text embeddings whose modalities sit on opposite sides of a shared offset."""
    g = torch.Generator().manual_seed(seed)
    content = torch.randn(n, dim, generator=g)
    offset = torch.zeros(dim)
    offset[0] = 3.0
    image = F.normalize(content + shift * offset, dim=-1)
    text = F.normalize(content - shift * offset + 0.1 * torch.randn(n, dim, generator=g), dim=-1)
    return image, text


def test_statistics_see_the_gap():
    image, text = gapped_pairs()
    stats = gap_statistics(image, text)
    assert stats["pair_cosine"] < 0.8 and stats["mean_distance"] > 0.5
    same = gap_statistics(image, image)
    assert same["pair_cosine"] == pytest.approx(1.0) and same["mean_distance"] == pytest.approx(0.0)


def test_c3_removes_the_mean_shift_between_training_and_inference():
    image, text = gapped_pairs()
    bridge = GapBridge(GapConfig(bridge="c3", noise=0.0), image.mean(0), text.mean(0))
    before = gap_statistics(image, text)
    after = gap_statistics(bridge.for_training(image), bridge.for_inference(text))
    assert after["pair_cosine"] > before["pair_cosine"] + 0.1 and after["mean_distance"] < 0.1


def test_lafite_noise_level_sets_the_cosine_to_the_clean_embedding():
    image, _ = gapped_pairs()
    for xi in (0.25, 1.0):
        noisy = GapBridge(GapConfig(bridge="lafite", noise=xi)).for_training(image, torch.Generator().manual_seed(1))
        cosine = (noisy * image).sum(-1).mean().item()
        # ε has the norm of h, so h + ξε has cosine ≈ 1/sqrt(1 + ξ²) to h in high dimensions
        assert cosine == pytest.approx(1 / (1 + xi**2) ** 0.5, abs=0.05)
    assert torch.equal(GapBridge(GapConfig()).for_training(image), image)


def test_bridge_round_trips_through_the_run_dir(tmp_path):
    image, text = gapped_pairs()
    bridge = GapBridge(GapConfig(bridge="c3", noise=0.126), image.mean(0), text.mean(0))
    bridge.save(tmp_path)
    loaded = GapBridge.load(tmp_path)
    assert loaded.config == bridge.config
    torch.testing.assert_close(loaded.for_inference(text), bridge.for_inference(text))
    with pytest.raises(ValueError, match="needs the image and the text mean"):
        GapBridge(GapConfig(bridge="c3"))
    with pytest.raises(FileNotFoundError, match="no gap bridge"):
        GapBridge.load(tmp_path / "elsewhere")


def test_retrieval_answers_text_with_the_nearest_training_images():
    image, text = gapped_pairs()
    bank = GapBridge.bank_from(image, size=10_000)
    bridge = GapBridge(GapConfig(bridge="retrieval", retrieval_k=1), bank=bank)
    assert torch.equal(bridge.for_training(image[:5]), image[:5])  # training is that of `none`
    retrieved = bridge.for_inference(text[:200])
    # each prompt is answered with an embedding from the image side: its own image, mostly
    own = (retrieved - image[:200].half().float()).norm(dim=-1) < 1e-2
    assert own.float().mean() > 0.9
    after = gap_statistics(retrieved, image[:200])
    assert after["mean_distance"] < gap_statistics(text[:200], image[:200])["mean_distance"] / 5
    averaged = GapBridge(GapConfig(bridge="retrieval", retrieval_k=4), bank=bank).for_inference(text[:3])
    assert torch.allclose(averaged.norm(dim=-1), torch.ones(3), atol=1e-3)


def test_retrieval_bank_is_a_seeded_subset_and_round_trips(tmp_path):
    image, text = gapped_pairs()
    bank = GapBridge.bank_from(image, size=500, seed=3)
    assert bank.shape == (500, 32) and bank.dtype == torch.float16
    assert torch.equal(bank, GapBridge.bank_from(image, size=500, seed=3))
    assert not torch.equal(bank, GapBridge.bank_from(image, size=500, seed=4))
    bridge = GapBridge(GapConfig(bridge="retrieval", retrieval_k=2), bank=bank)
    bridge.save(tmp_path)
    torch.testing.assert_close(GapBridge.load(tmp_path).for_inference(text[:10]), bridge.for_inference(text[:10]))
    (tmp_path / "gap-bank.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="bank"):
        GapBridge.load(tmp_path)
    with pytest.raises(ValueError, match="bank"):
        GapBridge(GapConfig(bridge="retrieval"))
