"""Tables from eval results: per-method R-D summaries and BD-rate / BD-PSNR against an anchor."""

from __future__ import annotations

from dataclasses import dataclass

from ...metrics.bd import bd_psnr, bd_rate


@dataclass(frozen=True)
class BDRow:
    method: str
    bd_rate_pchip: float | None
    bd_rate_cubic: float | None
    bd_psnr_pchip: float | None
    mean_rd_gain: float  # mean relative change of the real R-D cost vs the anchor (per image, per quality)


def _safe(f, *args, **kw):
    try:
        return f(*args, **kw)
    except ValueError:
        return None


def bd_table(doc: dict, anchor: str = "amortized") -> list[BDRow]:
    curves = doc["methods"]
    if anchor not in curves:
        raise ValueError(f"anchor method {anchor!r} is not in the results (have: {', '.join(curves)})")
    a = curves[anchor]["results"]
    by_key = {(e["image"], e["quality"], e["method"]): e for e in doc["entries"]}
    rows = []
    for m, c in curves.items():
        if m == anchor:
            continue
        r = c["results"]
        gains = []
        for (img, q, meth), e in by_key.items():
            if meth == m and (img, q, anchor) in by_key:
                base = by_key[(img, q, anchor)]["rd_cost"]
                gains.append(e["rd_cost"] / base - 1.0)
        rows.append(BDRow(
            method=m,
            bd_rate_pchip=_safe(bd_rate, a["bpp"], a["psnr-rgb"], r["bpp"], r["psnr-rgb"], method="pchip"),
            bd_rate_cubic=_safe(bd_rate, a["bpp"], a["psnr-rgb"], r["bpp"], r["psnr-rgb"], method="cubic"),
            bd_psnr_pchip=_safe(bd_psnr, a["bpp"], a["psnr-rgb"], r["bpp"], r["psnr-rgb"], method="pchip"),
            mean_rd_gain=sum(gains) / len(gains) if gains else float("nan"),
        ))
    return rows


def fmt(v, spec: str, unit: str = "") -> str:
    return "n/a" if v is None else format(v, spec) + unit


def summary_text(doc: dict, anchor: str = "amortized") -> str:
    lines = []
    for m, c in doc["methods"].items():
        r = c["results"]
        lines.append(f"{m}:")
        lines.append("  q    bpp(real)  bpp(est.)  PSNR[dB]  MS-SSIM  R-D cost  enc[s]  dec[s]")
        ms = r.get("ms-ssim-rgb")
        for i, q in enumerate(r["quality"]):
            lines.append(
                f"  {q:<4d} {r['bpp'][i]:9.4f}  {r['bpp_estimated'][i]:9.4f}  {r['psnr-rgb'][i]:8.3f}  "
                f"{fmt(ms[i] if ms else None, '7.4f'):>7s}  {r['rd_cost'][i]:8.4f}  {r['encoding_time'][i]:6.2f}  "
                f"{r['decoding_time'][i]:6.2f}"
            )
    if anchor in doc["methods"] and len(doc["methods"]) > 1:
        lines.append("")
        lines.append(f"vs {anchor} (negative BD-rate = fewer bits at equal PSNR; real file sizes):")
        lines.append("  method      BD-rate pchip  BD-rate cubic  BD-PSNR pchip  mean ΔR-D cost")
        for row in bd_table(doc, anchor):
            lines.append(
                f"  {row.method:<10s} {fmt(row.bd_rate_pchip, '+.2f', '%'):>13s}  {fmt(row.bd_rate_cubic, '+.2f', '%'):>13s}  "
                f"{fmt(row.bd_psnr_pchip, '+.3f', ' dB'):>13s}  {row.mean_rd_gain * 100:+13.2f}%"
            )
    return "\n".join(lines)
