"""Evaluation: image and video R-D runs, anchors (classic codecs), the stress check, latent statistics,
the demo, and the report (tables, plots)."""
