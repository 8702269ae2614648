"""Image side: loading photos, preprocessing, pretrained encoders, an embedding cache and the
image model.

Importing this package imports neither onnxruntime nor PyTorch: onnxruntime is loaded when an
encoder first runs (extra ``image``), PyTorch only to export an encoder once (extra
``image-export``).
"""

from prodcat.image.cache import EmbeddingCache, content_digest, default_cache_dir, open_cache
from prodcat.image.encoders import (
    ENCODERS,
    EncodedImages,
    EncoderSpec,
    ImageEncoder,
    create_encoder,
    encode_images,
    list_encoders,
    register_encoder,
)
from prodcat.image.errors import ImageError
from prodcat.image.heads import IMAGE_HEADS, create_image_head, list_image_heads
from prodcat.image.loading import DEFAULT_MAX_PIXELS, load_image, read_image_bytes, try_load_image
from prodcat.image.model import ImageClassifier, image_column
from prodcat.image.preprocess import (
    PREPROCESS_VERSION,
    PreprocessConfig,
    crop_white_borders,
    normalize,
    pad_to_square,
    preprocess_image,
)

__all__ = [
    "DEFAULT_MAX_PIXELS", "ENCODERS", "IMAGE_HEADS", "PREPROCESS_VERSION", "EmbeddingCache",
    "EncodedImages", "EncoderSpec", "ImageClassifier", "ImageEncoder", "ImageError",
    "PreprocessConfig", "content_digest", "create_encoder", "create_image_head",
    "crop_white_borders", "default_cache_dir", "encode_images", "image_column", "list_encoders",
    "list_image_heads", "load_image", "normalize", "open_cache", "pad_to_square",
    "preprocess_image", "read_image_bytes", "register_encoder", "try_load_image",
]
