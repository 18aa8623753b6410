"""Modules of clipgen as of another git revision, imported beside the working tree's, so a bench can
time "before" and "after" in one process on the same weights."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


# what gpt.py imports from clipgen first, then gpt.py itself
GPT_FILES = ("clipgen/models/rope.py", "clipgen/models/attention.py", "clipgen/models/knowledge.py", "clipgen/models/token_pick.py",
             "clipgen/models/gpt.py")  # fmt: skip


def load_revision(rev: str, paths: tuple[str, ...] = GPT_FILES) -> ModuleType:
    """The files at `paths` as of `rev`, each imported as a module of its own, in order; while a later
    one is imported, `clipgen.…` names of the earlier ones resolve to the revision's copies (gpt.py
    then gets the revision's Rope2D, not the tree's). A file the revision did not have yet is
    skipped (the revision's code did not import it). Returns the last module."""
    folder = Path(tempfile.mkdtemp(prefix="clipgen_rev_"))
    displaced: dict[str, ModuleType | None] = {}
    module = None
    try:
        for path in paths:
            present = subprocess.run(["git", "cat-file", "-e", f"{rev}:{path}"], cwd=ROOT, capture_output=True).returncode == 0
            if not present and path != paths[-1]:
                continue
            source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
            name = path.removesuffix(".py").replace("/", ".")
            file = folder / f"{name.replace('.', '_')}_{rev.replace('/', '_')}.py"
            file.write_text(source)
            spec = importlib.util.spec_from_file_location(f"{name}__at_{abs(hash(rev))}", file)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # dataclasses look their module up there
            displaced.setdefault(name, sys.modules.get(name))
            sys.modules[name] = module
            spec.loader.exec_module(module)
    finally:
        for name, original in displaced.items():
            if original is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = original
    return module


def config_as_of(config_class: type, config) -> object:
    """`config` (a dataclass of the tree) as the revision's `config_class`, which may lack fields the
    tree added since; those must still hold their defaults, or the two models would differ."""
    names = {f.name for f in dataclasses.fields(config_class)}
    for field in dataclasses.fields(config):
        if field.name not in names and getattr(config, field.name) != field.default:
            raise ValueError(f"{field.name}={getattr(config, field.name)!r} did not exist at the revision")
    return config_class(**{name: getattr(config, name) for name in names})
