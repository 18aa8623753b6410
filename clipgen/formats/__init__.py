"""Readers of other projects' checkpoint formats, turning them into clipgen's own models.

Each converter stands above the models it builds (it imports clipgen.models; no model file
imports a converter), so a model file stays readable top to bottom and a new format never
reaches into one:
- `taming.py`: CompVis/taming-transformers VQGANs (a Lightning .ckpt plus its YAML config).
"""
