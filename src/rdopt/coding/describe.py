"""What a bitstream holds, as a document (``rdopt info``): the header, the frames and their streams, sizes
and bits per pixel — read without decoding anything and without a model (no torch)."""

from __future__ import annotations

import re
from typing import BinaryIO

from .bbrecord import bits_back_accounting
from .container import unpack
from .rdov import VideoBitstreamReader

SKIP_KIND = "skip"  # rdopt.coding.skip.KIND (that module, and numpy, are imported only for a video with skips)
#: stream kinds in the order a per-frame table shows them
STREAM_KINDS = ("latent", "hyper", "motion", "motion-hyper", "residual", "residual-hyper", SKIP_KIND)
#: image model families whose decoder is serial: CompressAI's autoregressive context models, one 5×5 context step
#: per position of y (``rdopt.codecs.names.CONTEXT_ARCHITECTURES``, written out: coding imports no codecs)
SERIAL_DECODE_FAMILIES = ("mbt2018", "cheng2020-anchor", "cheng2020-attn")
#: image model families whose decoder is parallel with a context model: checkerboard passes per channel group
#: (``rdopt.codecs.names.PARALLEL_ARCHITECTURES`` and ``SCC``)
PARALLEL_DECODE_FAMILIES = ("rdopt-scc", "cheng2020-anchor-checkerboard", "elic2022-official", "elic2022-chandelier")
_ID_SUFFIX = re.compile(r"-(?:q[0-9]+|custom)$")


def decode_cost(model_id: str, width: int, height: int) -> dict | None:
    """How a decoder of this model id reconstructs a width×height image, for the families with a context model
    (``None`` for the others: a hyperprior decodes y in one parallel pass). Read from the model id only: the family
    is the id without its ``-qN`` / ``-custom`` suffix; y has one position per 16×16 pixels of the image padded
    to 64."""
    family = _ID_SUFFIX.sub("", model_id)
    rows, cols = -(-height // 64) * 4, -(-width // 64) * 4
    if family in PARALLEL_DECODE_FAMILIES:
        return {"order": "parallel context passes", "latent_grid": [rows, cols],
                "note": "y is decoded in two checkerboard passes per channel group (one for cheng2020-anchor-"
                        "checkerboard), each a convolution over the whole latent"}
    if family not in SERIAL_DECODE_FAMILIES:
        return None
    return {"order": "serial autoregressive", "sequential_steps": rows * cols, "latent_grid": [rows, cols],
            "note": "each position of y is entropy-decoded after a 5x5 context step over the positions decoded "
                    "before it (H/16 x W/16 steps, one after another)"}


def _streams(fr) -> dict:
    return {s.name: {"kind": s.kind, "bytes": len(s.data)} for s in fr.streams}


def frame_skip(fr, where: str = "") -> dict | None:
    """What a video frame's skip stream says (``None``: it has none): ``{"mode": "frame"}`` or ``{"mode":
    "blocks", "blocks": skipped, "of": rows·cols, "grid": [rows, cols]}``. A corrupt stream is a
    :class:`rdopt.coding.container.BitstreamError`."""
    for s in fr.streams:
        if s.kind == SKIP_KIND:
            from .skip import unpack_skip

            skip = unpack_skip(s.data, where=where)
            if skip.mode == "frame":
                return {"mode": "frame"}
            rows, cols = skip.mask.shape
            return {"mode": "blocks", "blocks": int(skip.mask.sum()), "of": rows * cols, "grid": [rows, cols]}
    return None


def describe_rdo(data: bytes) -> dict:
    """The document of an ``.rdo`` file (an image, or a multi-frame container)."""
    f = unpack(data)
    h = f.header
    doc = {
        "format_version": f.version, "model": h.model_id, "weight_hash": h.weight_hash.hex(),
        "width": h.width, "height": h.height, "grayscale": h.grayscale, "alpha_dropped": h.alpha_dropped,
        "method": h.method, "solver": h.solver, "steps": h.steps, "file_bytes": len(data),
        "string_bytes": [len(s) for s in f.strings],
        # bits per pixel of all the coded pixels: a multi-frame container (a GoP) codes width×height per frame
        "bpp": 8.0 * len(data) / (h.width * h.height * max(len(f.frames), 1)),
        "frames": [{"type": fr.type, "side_info_bits": fr.side_info_bits, "streams": _streams(fr)} for fr in f.frames],
    }
    bb = bits_back_accounting(f, len(data))
    if bb is not None:
        doc["bits_back"] = bb
    cost = decode_cost(h.model_id, h.width, h.height)
    if cost is not None:
        doc["decode"] = cost
    return doc


def describe_rdov(source: str | BinaryIO) -> dict:
    """The document of an ``.rdov`` file (a path or a binary stream): header, one entry per GoP chunk and
    a per-frame table of stream sizes and skips (``skip``: :func:`frame_skip`)."""
    with VideoBitstreamReader(source) as r:
        h = r.header
        frames, gops = [], []
        for chunk in r.gops():
            gops.append({"index": chunk.index, "first_frame": chunk.first_frame, "frames": len(chunk.frames),
                         "chunk_bytes": chunk.chunk_bytes})
            for t, fr in enumerate(chunk.frames):
                frames.append({"frame": chunk.first_frame + t, "gop": chunk.index, "type": fr.type,
                               "side_info_bits": fr.side_info_bits, "streams": _streams(fr),
                               "bytes": sum(len(s.data) for s in fr.streams),
                               "skip": frame_skip(fr, where=f"frame {chunk.first_frame + t}: ")})
        file_bytes = r.header_bytes + sum(g["chunk_bytes"] for g in gops)
    return {
        "format": "rdov", "format_version": 1, "model": h.model_id, "weight_hash": h.weight_hash.hex(),
        "width": h.width, "height": h.height, "frames": h.frames, "gop": h.gop, "fps": str(h.fps),
        "matrix": h.matrix, "full_range": h.full_range, "grayscale": h.grayscale, "tight_padding": h.tight_padding,
        "compact_frames": h.layout is not None, "method": h.method, "solver": h.solver, "steps": h.steps,
        "file_bytes": file_bytes, "header_bytes": r.header_bytes,
        "bpp": 8.0 * file_bytes / (h.width * h.height * h.frames),
        "skipped_frames": sum(1 for f in frames if f["skip"] and f["skip"]["mode"] == "frame"),
        "skipped_blocks": sum(f["skip"]["blocks"] for f in frames if f["skip"] and f["skip"]["mode"] == "blocks"),
        "gops": gops, "frame_table": frames,
    }


def frame_table(doc: dict) -> list[str]:
    """The per-frame table of an ``.rdov`` document as text lines: bytes per stream kind and in total, and
    (when a frame skips) what it skips: ``frame``, or the skipped 16×16 blocks of all."""
    frames = doc["frame_table"]
    kinds = [k for k in STREAM_KINDS if any(s["kind"] == k for f in frames for s in f["streams"].values())]
    skips = any(f.get("skip") for f in frames)
    lines = [f"{'frame':>6} {'GoP':>4} {'type':>4} " + " ".join(f"{k:>14}" for k in kinds) + f" {'total':>8}"
             + ("  skipped" if skips else "")]
    for f in frames:
        per = {k: sum(s["bytes"] for s in f["streams"].values() if s["kind"] == k) for k in kinds}
        cells = " ".join(f"{per[k]:14d}" if any(s["kind"] == k for s in f["streams"].values()) else f"{'-':>14}"
                         for k in kinds)
        line = f"{f['frame']:6d} {f['gop']:4d} {f['type']:>4} {cells} {f['bytes']:8d}"
        if skips:
            sk = f.get("skip")
            line += "  " + ("-" if not sk else "frame" if sk["mode"] == "frame" else f"{sk['blocks']}/{sk['of']} blocks")
        lines.append(line)
    return lines


__all__ = ["SERIAL_DECODE_FAMILIES", "STREAM_KINDS", "decode_cost", "describe_rdo", "describe_rdov", "frame_skip",
           "frame_table"]
