"""Data layer: sources -> webdataset shards -> batches. See loader.py for the training/eval reader.

The loader names are re-exported lazily: `import clipgen.data.shapes` (attribute tables for a
judge or prompts) should not pay for importing torch and webdataset.
"""

__all__ = ["ImageDataConfig", "ImageLoader", "make_image_loader"]


def __getattr__(name: str):
    if name in __all__:
        from clipgen.data import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'clipgen.data' has no attribute {name!r}")
