"""The geometric shapes-zh judge: exact on ground truth, robust to blur, honest about blank images."""

import numpy as np
import pytest
from PIL import Image, ImageFilter

from clipgen.data.shapes import ATTRIBUTES, BACKGROUND_RGB, full_prompts, render_sample
from clipgen.eval.shapes_judge import AttributeScore, read_image, score_prompts, wanted_attributes


@pytest.mark.parametrize("size", [32, 64])
def test_every_attribute_is_read_back_from_ground_truth_renders(size):
    score = AttributeScore()
    for i in range(1500):
        sample = render_sample(i, seed=11, size=size)
        score.add(read_image(sample.image), sample.labels)
    assert score.accuracy() == {name: 100.0 for name in ATTRIBUTES}
    assert score.asked["shape"] == 1500 and score.unreadable == 0


def test_large_shapes_survive_a_blur_like_a_decoder_gives():
    correct = 0
    samples = [render_sample(i, seed=3, size=32) for i in range(400)]
    large = [s for s in samples if s.labels["size"] == "大"]
    for sample in large:
        blurred = Image.fromarray(sample.image).filter(ImageFilter.GaussianBlur(0.6))
        correct += read_image(blurred).as_dict() == sample.labels
    assert correct / len(large) > 0.97


def test_a_blank_canvas_reads_as_nothing_and_counts_as_wrong():
    blank = np.full((32, 32, 3), BACKGROUND_RGB, dtype=np.uint8)
    reading = read_image(blank)
    assert reading.as_dict() == {name: None for name in ATTRIBUTES}
    score = AttributeScore()
    score.add(reading, {"colour": "红色", "shape": "圆形"})
    assert score.accuracy()["colour"] == 0.0 and score.unreadable == 1
    assert np.isnan(score.accuracy()["size"])  # nobody asked


def test_the_largest_blob_is_judged_and_specks_are_ignored():
    sample = render_sample(5, seed=0, size=32)
    noisy = sample.image.copy()
    x0, y0, x1, y1 = sample.bbox
    free = [(y, x) for y in (0, 31) for x in (0, 31) if not (y0 <= y < y1 and x0 <= x < x1)]
    for y, x in free:
        noisy[y, x] = (240, 240, 240)
    assert read_image(noisy).as_dict() == sample.labels


def test_prompts_name_all_four_attributes_and_the_judge_reads_them_back():
    prompts = full_prompts(576, seed=0)
    combos = {tuple(labels.values()) for _, labels in prompts}
    assert len(combos) == 576  # every combination exactly once
    for text, labels in prompts:
        assert wanted_attributes(text) == labels, text
    # a perfect generator: draw each prompt's labels with the corpus renderer
    images, texts = [], []
    for i in range(2000):
        sample = render_sample(i, seed=1)
        images.append(sample.image)
        texts.append(next(t for t, l in prompts if l == sample.labels))
    assert score_prompts(images, texts).accuracy() == {name: 100.0 for name in ATTRIBUTES}


def test_a_prompt_naming_two_values_of_an_attribute_does_not_ask_for_it():
    assert wanted_attributes("红色和蓝色的圆形") == {"shape": "圆形"}


def test_non_square_input_is_refused():
    with pytest.raises(ValueError, match="square RGB"):
        read_image(np.zeros((32, 16, 3), dtype=np.uint8))
