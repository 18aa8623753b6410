"""Readers of other projects' checkpoint formats, turning them into clipgen's own models.

Each converter stands above the models it builds (it imports clipgen.models; no model file
imports a converter), so a model file stays readable top to bottom and a new format never
reaches into one:
- `taming.py`: CompVis/taming-transformers VQGANs (a Lightning .ckpt plus its YAML config);
- `clip_gen.py`: HFAiLab/clip-gen's released VQGAN and GPT (`vqgan_coco.pt`, `gpt_coco.pt`);
- `easynlp.py`: EasyNLP's text2image checkpoint directories (pai-painter, ARTIST).

`imports.py` is `clipgen import`: a converter's models written as a run directory
(`run_writer.py`); `state_map.py` and `torch_file.py` are what the converters share (renaming with
every source key accounted for; reading a torch file as data only).
"""
