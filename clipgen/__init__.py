"""clipgen: train a text-to-image generator on images without captions (CLIP-GEN).

Stages: a VQGAN learns image tokens from images alone; a condition transformer learns to map an
image's CLIP embedding to those tokens; at inference a Chinese CLIP text embedding takes the image
embedding's place.
"""

__version__ = "0.1.0"
