"""`clipgen import`: another project's released model in, a clipgen run directory out.

Each function converts the weights (clip_gen.py, easynlp.py), checks everything it was given
before anything is written, and writes the run (run_writer.py) with the sampling settings the
source project's own demo or predictor uses.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from clipgen.formats.run_writer import check_out_dir, write_imported_run
from clipgen.run_dir import CAPTION_VOCAB_NAME, ENTITY_IDS_NAME, ENTITY_VECTORS_NAME, ConditionConfig
from clipgen.sampling import SamplingSettings

# clip-gen's demo.py: top-k 500 then top-p 0.95 at temperature 1 (its 64 candidates re-ranked by
# CLIP to 8 are a per-call choice: `--candidates 64 --num-images 8`); no guidance, which needs a
# null condition neither project trained
CLIP_GEN_SAMPLING = SamplingSettings(guidance_scale=1.0, top_k=500, top_p=0.95, temperature=1.0)
EASYNLP_SAMPLING = SamplingSettings(guidance_scale=1.0, top_k=100, temperature=1.0)  # its predictor's generate()


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:  # in chunks: a released checkpoint is gigabytes (hashlib.file_digest is 3.11+)
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def import_clip_gen_run(vqgan: str | Path, gpt: str | Path, out: str | Path, heads: int | None = None, clip: str = "") -> Path:
    """HFAiLab/clip-gen's `vqgan_coco.pt` and `gpt_coco.pt` as a run directory; `clip` names the
    CLIP that reads prompts (it must share OpenAI ViT-B/32's embedding space)."""
    from clipgen.formats.clip_gen import import_clip_gen

    check_out_dir(out)
    vqgan_model, gpt_model = import_clip_gen(vqgan, gpt, heads)
    provenance = {
        "format": "HFAiLab/clip-gen", "vqgan": str(Path(vqgan).resolve()), "vqgan_sha256": _sha256(vqgan),
        "gpt": str(Path(gpt).resolve()), "gpt_sha256": _sha256(gpt), "gpt_heads": gpt_model.config.n_head,
        "note": "conditioned on L2-normalised OpenAI CLIP ViT-B/32 embeddings; no null condition: sample with guidance 1",
    }  # fmt: skip
    condition = ConditionConfig(source="image", cond_dropout=0.0, clip=clip)
    return write_imported_run(out, gpt_model, vqgan_model, condition, CLIP_GEN_SAMPLING, provenance)


def import_easynlp_run(src: str | Path, out: str | Path, entity2vec: str | Path | None = None,
                       entity2id: str | Path | None = None, knowledge: bool = True) -> Path:  # fmt: skip
    """An EasyNLP text2image checkpoint directory (pai-painter, ARTIST) as a text-token run
    directory. An ARTIST checkpoint needs its entity files, or `knowledge=False` to leave its
    knowledge out on purpose."""
    from clipgen.encoders.caption_tokens import CaptionTokenizer
    from clipgen.encoders.entity_lexicon import EntityLexicon, read_entity2id
    from clipgen.formats.easynlp import TEXT_LEN, VOCAB_FILE, import_easynlp, read_easynlp_dir
    from clipgen.formats.torch_file import read_torch_file

    check_out_dir(out)
    if (entity2vec is None) != (entity2id is None):
        raise ValueError("ARTIST's knowledge needs both --entity2vec and --entity2id")
    if entity2vec is not None and not knowledge:
        raise ValueError("--no-knowledge leaves ARTIST's knowledge out: give it without --entity2vec and --entity2id")
    checkpoint = read_easynlp_dir(src)
    is_artist = "transformer.ent_emb.weight" in checkpoint.state
    with_knowledge = entity2vec is not None
    if with_knowledge and not is_artist:
        raise ValueError(f"SRC {src} is not an ARTIST checkpoint (no transformer.ent_emb): it takes no --entity2vec/--entity2id")
    if is_artist and knowledge and not with_knowledge:
        raise ValueError(f"SRC {src} is an ARTIST checkpoint (transformer.ent_emb): give its --entity2vec and --entity2id, "
                         "or --no-knowledge to import it without its entity knowledge")  # fmt: skip
    vqgan_model, gpt_model = import_easynlp(checkpoint, f"SRC {src}", knowledge=with_knowledge)
    tokenizer = CaptionTokenizer(Path(src) / VOCAB_FILE, TEXT_LEN)
    if tokenizer.vocab_size != gpt_model.config.text_vocab_size:
        raise ValueError(f"{Path(src) / VOCAB_FILE} holds {tokenizer.vocab_size} tokens, config.json's text_vocab_size "
                         f"is {gpt_model.config.text_vocab_size}")  # fmt: skip
    files = {CAPTION_VOCAB_NAME: checkpoint.vocab}
    provenance = {"format": "alibaba/EasyNLP text2image", "src": str(Path(src).resolve()),
                  "weights_sha256": _sha256(Path(src) / "pytorch_model.bin"), "knowledge": with_knowledge}  # fmt: skip
    if with_knowledge:
        import torch
        from safetensors.torch import save_file

        vectors = read_torch_file(entity2vec, "--entity2vec")
        if not isinstance(vectors, torch.Tensor) or vectors.dim() != 2 or vectors.shape[1] != gpt_model.config.entity_dim:
            raise ValueError(f"--entity2vec {entity2vec} must hold one [entities, {gpt_model.config.entity_dim}] tensor")
        EntityLexicon(read_entity2id(entity2id), vectors, TEXT_LEN)  # checks every id has a vector
        files[ENTITY_IDS_NAME] = Path(entity2id).read_bytes()
        # written straight into the run (ARTIST's table is large), not built in memory first
        files[ENTITY_VECTORS_NAME] = lambda path: save_file({"entity2vec": vectors.float().contiguous()}, str(path))
        provenance.update(entity2vec_sha256=_sha256(entity2vec), entity2id_sha256=_sha256(entity2id))
    condition = ConditionConfig(source="caption-tokens", caption_vocab=str((Path(src) / VOCAB_FILE).resolve()), cond_dropout=0.0)
    return write_imported_run(out, gpt_model, vqgan_model, condition, EASYNLP_SAMPLING, provenance, files)
