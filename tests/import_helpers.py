"""The seed systems' tiny checkpoints (tests/fixtures/clipgen_release, tests/fixtures/easynlp) as
the importer tests and the comparison test use them."""

import shutil
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
CLIP_GEN = FIXTURES / "clipgen_release"
EASYNLP = FIXTURES / "easynlp"
ARTIST = EASYNLP / "artist"
TOLERANCE = 1e-4  # float32 logits and pixels; indices and greedy tokens are equal
ENTITY_FILES = ["--entity2vec", str(ARTIST / "entity2vec.pt"), "--entity2id", str(ARTIST / "entity2id.txt")]


def make_painter_dir(directory: Path) -> Path:
    """A pai-painter checkpoint directory: the ARTIST fixture without its knowledge. The generator
    made both from the same weights (ARTIST's adds transformer.ent_emb.* and the entity files), so
    the painter's references hold for it; storing it too would double the fixture."""
    import torch

    directory.mkdir(parents=True)
    state = torch.load(ARTIST / "pytorch_model.bin", weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("transformer.ent_emb.")}, directory / "pytorch_model.bin")
    for name in ("config.json", "vocab.txt"):
        shutil.copy(ARTIST / name, directory / name)
    return directory


def assert_vqgan_reproduces(vqgan, reference) -> None:
    """The seed project's encode indices (equal) and quantised codes and decoded pixels (float32,
    TOLERANCE), from its fixture's reference tensors."""
    import torch

    with torch.no_grad():
        encoded = vqgan.encode(reference["images"])
        assert torch.equal(encoded.indices, reference["indices"])
        assert (encoded.quantized - reference["quant"]).abs().max() < TOLERANCE
        assert (vqgan.decode(reference["quant"]) - reference["decoded"]).abs().max() < TOLERANCE
        assert (vqgan.decode_indices(reference["indices"]) - reference["decoded_from_indices"]).abs().max() < TOLERANCE


def assert_greedy_reproduces(gpt, cond, expected) -> None:
    """The seed project's greedy tokens, with temperature 0 and with top-k 1 (the seed projects
    have no temperature-0 path), from the KV cache and the naive re-run alike."""
    import torch

    for kv_cache in (True, False):
        for greedy in ({"temperature": 0}, {"top_k": 1}):
            tokens = gpt.sample(cond, guidance_scale=1, kv_cache=kv_cache, **greedy)
            assert torch.equal(tokens, expected), (kv_cache, greedy)
