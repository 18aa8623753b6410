"""clipgen.eval's metrics: Fréchet distance in CLIP and Inception feature spaces, CLIP score,
and the per-run accumulator that ranks gather."""

import io
import math

import numpy as np
import pytest
import torch

from clipgen.data.shapes_shards import make_shapes
from clipgen.encoders import load_clip
from clipgen.eval.frechet import FeatureStats, frechet_distance_of
from clipgen.eval.scores import (
    GeneratedScores,
    clip_feature_space,
    clip_scores,
    feature_stats,
    inception_feature_space,
    shapes_prompts,
)
from data_helpers import save_tiny_stage_models


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """96 shapes-zh images with their captions, and a random tiny toy CLIP."""
    from clipgen.data.loader import ImageDataConfig, make_image_loader
    from clipgen.images import to_pil

    root = tmp_path_factory.mktemp("metrics")
    make_shapes(root / "images", 96, size=32, seed=0, shard_size=96)
    save_tiny_stage_models(root)
    batch = next(iter(make_image_loader(ImageDataConfig(shards=str(root / "images")), batch_size=96, seed=0, train=False)))
    return root, to_pil(batch["image"]), [meta["caption"] for meta in batch["meta"]]


def noisy(images, sigma: float, seed: int = 0):
    from PIL import Image

    generator = torch.Generator().manual_seed(seed)
    out = []
    for image in images:
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32))
        pixels = (pixels + sigma * 255 * torch.randn(pixels.shape, generator=generator)).clamp(0, 255).byte()
        out.append(Image.fromarray(pixels.numpy()))
    return out


def distances_with_noise(space, images, sigmas=(0.1, 0.3, 0.6)):
    real = feature_stats({"f": space}, [images])["f"]
    same = frechet_distance_of(real, feature_stats({"f": space}, [images])["f"])
    return same, [frechet_distance_of(real, feature_stats({"f": space}, [noisy(images, s)])["f"]) for s in sigmas]


def test_clip_space_distance_is_zero_on_the_same_images_and_grows_with_noise(shapes):
    root, images, _ = shapes
    same, with_noise = distances_with_noise(clip_feature_space(load_clip("toy", root / "clip")), images)
    assert abs(same) < 1e-6
    assert 0 < with_noise[0] < with_noise[1] < with_noise[2]


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """A randomly initialised InceptionV3 state dict in the layout of the published weight files
    (torch-fidelity's class is built without its loader, which would download)."""
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    skip = pytest.MonkeyPatch()
    skip.setattr(tf_inception, "load_state_dict_from_url", lambda *a, **k: {})
    skip.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
    torch.manual_seed(0)
    model = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    skip.undo()
    for module in model.modules():  # He init keeps activations from fading through ~90 layers
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("inception") / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(model.state_dict(), path)
    return path


def test_inception_features_load_from_a_local_file_and_name_it(inception_file, shapes):
    from clipgen.eval.inception import InceptionFeatures

    features = InceptionFeatures(inception_file, batch_size=6)
    assert "torch-fidelity" in features.name and inception_file.name in features.name
    _, images, _ = shapes
    space = inception_feature_space(features)
    real = FeatureStats(space.dim)
    clean = features(images[:12])  # the network is large: few images, each through it once per set
    assert clean.shape == (12, 2048) and torch.isfinite(clean).all()
    real.add(clean)
    same, noisy_set = FeatureStats(space.dim), FeatureStats(space.dim)
    same.add(clean.clone())
    noisy_set.add(features(noisy(images[:12], 0.6)))
    scale = real.mean_cov()[1].trace()  # the features' total variance
    # 12 vectors in 2048-d: a singular covariance, so the matrix square root leaves a little error
    assert abs(frechet_distance_of(real, same)) < 1e-4 * scale < 0.01 * scale < frechet_distance_of(real, noisy_set)


def test_inception_refuses_missing_pickled_and_foreign_files(tmp_path):
    from clipgen.eval.inception import InceptionFeatures

    with pytest.raises(FileNotFoundError, match="never downloads"):
        InceptionFeatures(tmp_path / "missing.pth")
    pickled = tmp_path / "pickled.pth"
    torch.save({"weights": io.StringIO("not a tensor")}, pickled)  # unpickling it would run arbitrary code
    with pytest.raises(ValueError, match="plain tensor state dict"):
        InceptionFeatures(pickled)
    foreign = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, foreign)
    with pytest.raises(ValueError, match="does not fit"):
        InceptionFeatures(foreign)


def test_clip_score_is_100_cos_clamped_at_zero(shapes):
    root, images, captions = shapes
    clip = load_clip("toy", root / "clip")
    scores = clip_scores(clip, images[:8], captions[:8])
    cos = (clip.encode_image(images[:8]) * clip.encode_text(captions[:8])).sum(-1)
    assert torch.allclose(scores, (100 * cos).clamp(min=0), atol=1e-4)
    assert (scores >= 0).all()


def test_generated_scores_accumulate_batches_like_one_pass(shapes):
    root, images, captions = shapes
    clip = load_clip("toy", root / "clip")
    spaces = {"clip": clip_feature_space(clip)}
    real = feature_stats(spaces, [images[48:]])
    whole, pieces = GeneratedScores(spaces, clip, judge=True), GeneratedScores(spaces, clip, judge=True)
    whole.add(images[:48], captions[:48])
    for start in range(0, 48, 16):
        pieces.add(images[start : start + 16], captions[start : start + 16])
    a, b = whole.gather().results(real), pieces.gather().results(real)
    assert set(a) == {"fd_clip", "clip_score", "colour", "shape", "size", "position"}
    for key in a:
        assert math.isclose(a[key], b[key], rel_tol=1e-6, abs_tol=1e-6), key
    # ground-truth images judged against their own captions: the judge is right on all of them
    assert all(a[name] == 100.0 for name in ("colour", "shape", "size", "position"))


def test_shapes_prompts_recognises_what_the_judge_can_read():
    assert shapes_prompts(["左上有一个大的红色圆形", "红色圆形"])
    assert not shapes_prompts(["一只猫坐在窗台上"])
