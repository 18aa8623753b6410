"""`clipgen import easynlp`: EasyNLP's pai-painter and ARTIST checkpoints as clipgen text-token
runs, checked against what EasyNLP's own code computes from the tiny checkpoints in
tests/fixtures/easynlp/ (made by tests/fixtures/make_easynlp_reference.py)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from clipgen.cli import main as clipgen_main
from clipgen.models.gpt import load_gpt
from clipgen.models.vqgan import VQGAN
from import_helpers import ARTIST, EASYNLP, ENTITY_FILES, TOLERANCE, assert_greedy_reproduces, assert_vqgan_reproduces, make_painter_dir

IMG_VOCAB = 64  # the tiny models' codebook: EasyNLP's text ids are shifted past it


@pytest.fixture(scope="module")
def reference():
    return load_file(str(EASYNLP / "reference.safetensors"))


@pytest.fixture(scope="module")
def prompts():
    return json.loads((EASYNLP / "reference.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def painter(tmp_path_factory):
    root = tmp_path_factory.mktemp("easynlp")
    out = root / "painter-run"
    assert clipgen_main(["import", "easynlp", str(make_painter_dir(root / "painter")), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def artist(tmp_path_factory):
    out = tmp_path_factory.mktemp("easynlp") / "artist-run"
    assert clipgen_main(["import", "easynlp", str(ARTIST), *ENTITY_FILES, "--out", str(out)]) == 0
    return out


def test_the_vqgan_gives_easynlps_indices_and_pixels(painter, reference):
    vqgan = VQGAN.from_pretrained(painter / "vqgan").eval()
    assert_vqgan_reproduces(vqgan, reference)


def test_the_pipeline_reads_prompts_as_easynlps_predictor_does(painter, reference, prompts):
    from clipgen.pipeline import ClipGenPipeline

    pipe = ClipGenPipeline.from_pretrained(painter, device="cpu")
    ids = pipe.encode_prompts(prompts["prompts"])  # the 43-token one is cut to 32, as EasyNLP cuts it
    assert ids.tolist() == prompts["text_ids_unshifted"]
    assert torch.equal(ids + IMG_VOCAB, reference["text_ids"])  # the predictor's input ids, unshifted here
    assert pipe.encode_knowledge(prompts["prompts"][:1]) is None  # pai-painter reads no entities
    assert pipe.sampling.top_k == 100 and pipe.sampling.guidance_scale == 1  # the predictor's generate()
    images = pipe(prompts["prompts"][:2], num_images=2, seed=0)
    assert [len(group) for group in images] == [2, 2] and images[0][0].size == (8, 8)


def test_the_transformer_gives_easynlps_logits_and_greedy_tokens(painter, reference):
    gpt = load_gpt(painter / "model")
    text = reference["text_ids"] - IMG_VOCAB
    with torch.no_grad():
        logits = gpt(text, reference["indices"].flatten(1))
    assert (logits - reference["logits"]).abs().max() < TOLERANCE
    assert torch.equal(reference["greedy_tokens"], reference["greedy_tokens_generate"])  # EasyNLP's two loops agree
    assert_greedy_reproduces(gpt, text, reference["greedy_tokens"])


def test_artist_with_its_knowledge_gives_its_logits_and_tokens(artist, reference, prompts):
    from clipgen.pipeline import ClipGenPipeline

    pipe = ClipGenPipeline.from_pretrained(artist, device="cpu")
    text = pipe.encode_prompts(prompts["prompts"])
    knowledge = pipe.encode_knowledge(prompts["prompts"])  # EasyNLP's lexicon matching, from the prompts
    vectors = torch.load(ARTIST / "entity2vec.pt", weights_only=True)
    assert torch.equal(knowledge, vectors[reference["words_mat"]])
    with torch.no_grad():
        informed = pipe.gpt(text, reference["indices"].flatten(1), knowledge=knowledge)
        plain = pipe.gpt(text, reference["indices"].flatten(1))
    assert (informed - reference["logits_knowledge"]).abs().max() < TOLERANCE
    assert (plain - reference["logits"]).abs().max() < TOLERANCE  # without knowledge ARTIST is pai-painter
    # the knowledge enters after the last block: only the first image token's logits change
    assert torch.equal(informed[:, 1:], plain[:, 1:]) and not torch.allclose(informed[:, 0], plain[:, 0])
    for kv_cache in (True, False):  # ARTIST's generate: knowledge at the first step only
        tokens = pipe.gpt.sample(text, temperature=0, guidance_scale=1, kv_cache=kv_cache, knowledge=knowledge)
        assert torch.equal(tokens, reference["greedy_tokens_knowledge"]), kv_cache
    images = pipe(prompts["prompts"][:2], num_images=2, seed=0)  # the pipeline matches the entities itself
    assert [len(group) for group in images] == [2, 2]


def test_a_prompt_shorter_than_32_tokens_gets_a_constant_from_artists_knowledge(artist, reference):
    """What the fixture shows about ARTIST: the last caption position is covered by no entity unless
    a word spans position 31, so every entity row holds entity 0 there and the mixing weights,
    which sum to 1, add ent_emb(entity2vec[0]) whatever the prompt's entities are."""
    gpt = load_gpt(artist / "model")
    vectors = torch.load(ARTIST / "entity2vec.pt", weights_only=True)
    text, tokens = reference["text_ids"][:3] - IMG_VOCAB, reference["indices"][:3].flatten(1)
    with torch.no_grad():
        shift = gpt(text, tokens, knowledge=vectors[reference["words_mat"][:3]]) - gpt(text, tokens)
        with_nothing = gpt(text, tokens, knowledge=vectors[torch.zeros_like(reference["words_mat"][:3])]) - gpt(text, tokens)
    assert (shift - with_nothing).abs().max() < TOLERANCE


def test_artist_without_knowledge_is_asked_for_by_name(tmp_path):
    assert clipgen_main(["import", "easynlp", str(ARTIST), "--no-knowledge", "--out", str(tmp_path / "run")]) == 0
    assert load_gpt(tmp_path / "run" / "model").ent_emb is None
    assert not (tmp_path / "run" / "knowledge").exists()


def test_the_entity_lexicon_matches_as_artists_preprocessing(tmp_path):
    from clipgen.encoders.entity_lexicon import ENTITY_SLOTS, EntityLexicon, read_entity2id

    # a third column is ignored, as ARTIST's split('\t')[1] ignores it
    (tmp_path / "entity2id.txt").write_text("5\n天安门\t4\n天安门广场\t5\textra\n广场\t6\n猫\t7\nab\t8\n广场\t3\n", encoding="utf-8")
    words = read_entity2id(tmp_path / "entity2id.txt")
    assert words["广场"] == 3  # a repeated word keeps its last id
    lexicon = EntityLexicon(words, torch.randn(9, 5), length=6)
    tokens = list("北京天安门广场") + ["ab", "猫"]  # a multi-character token never matches; single characters are dropped
    assert lexicon.matches(tokens) == [(2, 4, 4), (2, 6, 5), (5, 6, 3)]  # overlapping ones too, by start then end
    ids = lexicon.matrix(tokens)
    assert ids.shape == (ENTITY_SLOTS, 6) and ids[1].tolist() == [0, 0, 5, 5, 5, 5]  # cut at the caption length
    many = EntityLexicon(words, torch.randn(9, 5), length=32).matrix(list("广场") * 12)  # the first ENTITY_SLOTS matches count
    assert (many != 0).sum(dim=1).tolist() == [2] * ENTITY_SLOTS
    with pytest.raises(ValueError, match="entity id 8 has no vector"):
        EntityLexicon(words, torch.randn(8, 5), length=6)


def test_config_json_may_carry_pretrained_config_keys(tmp_path):
    """EasyNLP's ARTISTConfig is a transformers PretrainedConfig, whose save_pretrained adds generic
    keys; they are read past, while a key neither knows is still refused by name."""
    from clipgen.config import ConfigError
    from clipgen.formats.easynlp import read_artist_config

    path = tmp_path / "config.json"
    saved = {**json.loads((ARTIST / "config.json").read_text()), "architectures": ["ARTIST"],
             "transformers_version": "4.16.0", "torch_dtype": "float32", "_name_or_path": "artist-base"}  # fmt: skip
    path.write_text(json.dumps(saved))
    assert read_artist_config(path).n_layer == 2
    path.write_text(json.dumps({**saved, "n_layerz": 2}))
    with pytest.raises(ConfigError, match=r"config\.json: unknown config key n_layerz;") as err:
        read_artist_config(path)
    assert ": ." not in str(err.value)


def test_an_imported_run_refuses_guidance(painter):
    """Neither released project trained a null condition: the importer records cond_dropout 0, and
    guidance, which would guide against an untrained prefix, is refused before anything is drawn."""
    from clipgen.pipeline import ClipGenPipeline
    from clipgen.run_dir import read_condition

    assert read_condition(painter).cond_dropout == 0
    pipe = ClipGenPipeline.from_pretrained(painter, device="cpu")
    with pytest.raises(ValueError, match="never trained a null condition.*must be 1, got 2"):
        pipe("一只猫", guidance_scale=2.0)
    with pytest.raises(ValueError, match="never trained a null condition"):
        pipe.generate(pipe.encode_prompts(["一只猫"]), guidance_scale=2.0)


def test_an_imported_run_can_be_moved(tmp_path):
    """condition.yaml names the run's own VQGAN relative to the run, so a moved run still loads."""
    from clipgen.pipeline import ClipGenPipeline

    first = tmp_path / "first"
    assert clipgen_main(["import", "easynlp", str(make_painter_dir(tmp_path / "painter")), "--out", str(first)]) == 0
    moved = first.rename(tmp_path / "moved")
    pipe = ClipGenPipeline.from_pretrained(moved, device="cpu")
    assert pipe("一只猫", seed=0)[0][0].size == (8, 8)


def test_the_provenance_hashes_and_entity_vectors_are_the_given_files(artist):
    import hashlib

    provenance = json.loads((artist / "imported.json").read_text())
    for key, path in (("weights_sha256", ARTIST / "pytorch_model.bin"), ("entity2vec_sha256", ARTIST / "entity2vec.pt")):
        assert provenance[key] == hashlib.sha256(path.read_bytes()).hexdigest(), key
    vectors = load_file(str(artist / "knowledge" / "entity2vec.safetensors"))["entity2vec"]
    assert torch.equal(vectors, torch.load(ARTIST / "entity2vec.pt", weights_only=True).float())


def test_generate_on_artist_takes_its_knowledge_or_refuses(artist, painter, prompts):
    """pipe.generate reads conditions directly; an ARTIST run's knowledge is never silently left out."""
    from clipgen.pipeline import ClipGenPipeline

    pipe = ClipGenPipeline.from_pretrained(artist, device="cpu")
    text = pipe.encode_prompts(prompts["prompts"][:2])
    with pytest.raises(ValueError, match="entity knowledge: pass knowledge="):
        pipe.generate(text, seed=0)
    knowledge = pipe.encode_knowledge(prompts["prompts"][:2])
    assert pipe.generate(text, seed=0, knowledge=knowledge) == [group[0] for group in pipe(prompts["prompts"][:2], seed=0)]
    painter_pipe = ClipGenPipeline.from_pretrained(painter, device="cpu")
    with pytest.raises(ValueError, match="ARTIST runs only"):
        painter_pipe.generate(text, seed=0, knowledge=knowledge)
