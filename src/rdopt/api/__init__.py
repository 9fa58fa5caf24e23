"""Encoding and decoding entry points: images (:mod:`.image`, re-exported here), video (:mod:`.video`),
lossy bits-back coding (:mod:`.bitsback`)."""

from .image import (Decoded, Encoded, EncodeStats, TracePoint, check_distortion, check_model, check_payload,
                    check_weight, coded_latents, decode_bytes, decode_latents, default_model, encode_image,
                    encode_images, frame_types, header_for, model_for_header, package, rdo_file)

__all__ = ["Decoded", "Encoded", "EncodeStats", "TracePoint", "check_distortion", "check_model", "check_payload",
           "check_weight", "coded_latents", "decode_bytes", "decode_latents", "default_model", "encode_image",
           "encode_images", "frame_types", "header_for", "model_for_header", "package", "rdo_file"]
