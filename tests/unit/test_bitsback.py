"""Lossy bits-back (paper 003 §3.3, Alg. 1): the model variant, the NELBO's entropy term, reproducible_bbvi,
the ANS side-information stack, and the accounting / error paths of the container. Tiny model only."""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import pytest
import torch

from conftest import GOLDEN, pattern_image


@pytest.fixture(scope="module")
def bb_model():
    from rdopt.codecs.image.bitsback import load_bitsback

    return load_bitsback(checkpoint=GOLDEN / "tiny.pt")


@pytest.fixture(scope="module")
def image():
    from rdopt.data.images import LoadedImage

    return LoadedImage(rgb=pattern_image(70, 130, 3), grayscale=False, alpha_dropped=False, source_mode="RGB")


def _encode(model, image, side_info, steps=8, bbvi_steps=12):
    from rdopt.api.bitsback import encode_image_bb
    from rdopt.infer.options import SolverOptions

    return encode_image_bb(model, image, SolverOptions(method="sga", steps=steps, bbvi_steps=bbvi_steps, progress=False),
                           side_info=side_info)


# ------------------------------------------------------------------------------------------ model, objective
def test_entropy_term_is_the_gaussian_entropy(bb_model):
    """The objective's extra term, checked analytically: loss(with) − loss(without) = −Σ H[q] / pixels with
    H = ½ log2(2πe σ²) from scipy, on the model's own σ for a tiny image (same noise draws)."""
    from scipy.stats import norm

    from rdopt.losses.bitsback import BitsBackELBO, gaussian_entropy_bits

    m = bb_model.fp64()  # float64: the difference is small next to the loss
    x = torch.from_numpy(pattern_image(64, 64, 1)).permute(2, 0, 1)[None].double() / 255
    with_h = BitsBackELBO(0.01)(m, x, torch.Generator().manual_seed(3))
    without = BitsBackELBO(0.01, entropy_weight=0.0)(m, x, torch.Generator().manual_seed(3))
    _, logvar = m.posterior(m.amortize(x)["y"])
    sigma = np.exp(0.5 * logvar.double().numpy())
    h_bits = norm(scale=sigma).entropy().sum() / math.log(2)
    assert float(without.loss - with_h.loss) == pytest.approx(h_bits / (64 * 64), rel=1e-9)
    assert float(without.mse) == float(with_h.mse)
    lv = torch.tensor([-3.0, 0.0, 1.5], dtype=torch.float64)
    assert gaussian_entropy_bits(lv).numpy() == pytest.approx(norm(scale=np.exp(lv.numpy() / 2)).entropy() / math.log(2))


def test_monte_carlo_of_minus_log_q_matches_the_entropy():
    """The reparameterized samples z = μ + σε are draws from q: E[−log2 q(z)] ≈ H[q] (what bits-back returns)."""
    from rdopt.losses.bitsback import gaussian_entropy_bits

    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.tensor([0.3, -2.0]).double(), torch.tensor([-2.5, 1.0]).double()
    eps = torch.randn(200_000, 2, generator=g, dtype=torch.float64)
    z = mu + torch.exp(0.5 * logvar) * eps
    log2q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z) / math.log(2)
    assert (-log2q).mean(0).numpy() == pytest.approx(gaussian_entropy_bits(logvar).numpy(), abs=0.01)


@torch.no_grad()
def test_flexible_density_is_the_cdf_derivative_and_normalized(bb_model):
    dens = bb_model.net.density
    z = torch.linspace(-30, 30, 60001, dtype=torch.float64)
    d = type(dens)(dens.channels)
    d.load_state_dict(dens.state_dict())
    d = d.double()
    zz = z.reshape(1, 1, -1).expand(1, dens.channels, -1).unsqueeze(-1)  # B=1, C, n, 1
    p = torch.exp2(d.log2_density(zz))[0, :, :, 0]
    total = torch.trapezoid(p, z, dim=1)
    assert total.numpy() == pytest.approx(np.ones(dens.channels), abs=1e-4)
    logits, _ = d._logits(torch.tensor([[-0.01], [0.01]], dtype=torch.float64).T.reshape(1, 1, 2).expand(dens.channels, 1, 2))
    fd = (torch.sigmoid(logits[:, 0, 1]) - torch.sigmoid(logits[:, 0, 0])) / 0.02
    at0 = torch.exp2(d.log2_density(torch.zeros(1, dens.channels, 1, 1, dtype=torch.float64)))[0, :, 0, 0]
    assert at0.numpy() == pytest.approx(fd.numpy(), rel=1e-3)
    table = bb_model.z_prior_table()
    assert table.shape == (dens.channels, 1025) and table.sum(1) == pytest.approx(np.ones(dens.channels), abs=1e-6)


def test_conversion_keeps_the_base_model(bb_model):
    """From a plain hyperprior: g_a, g_s, h_s as they were; q's mean is the base model's z, its log-variance
    starts at log(1/12) (the base model's box)."""
    from rdopt.codecs.image.bitsback import LOGVAR_INIT
    from rdopt.codecs.image.loading import load_model

    base = load_model("rdopt-msh", 3, checkpoint=GOLDEN / "tiny.pt")
    x = torch.from_numpy(pattern_image(64, 64, 2)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        y = base.net.g_a(x)
        mu, logvar = bb_model.posterior(y)
        assert torch.equal(bb_model.net.g_a(x), y)
        assert torch.allclose(mu, base.net.h_a(y), atol=1e-6)
        assert torch.allclose(logvar, torch.full_like(logvar, LOGVAR_INIT))


# ------------------------------------------------------------------------------------------ reproducible BBVI
def test_reproducible_bbvi_is_deterministic_across_calls_and_thread_counts(bb_model, image):
    from rdopt.data.images import to_batch
    from rdopt.infer.bitsback import reproducible_bbvi, seed_of
    from rdopt.infer.options import SolverOptions

    x = to_batch([image.rgb], 64)
    y_hat = torch.round(bb_model.amortize(x)["y"]).detach()
    opts = SolverOptions(bbvi_steps=15)
    before = torch.get_num_threads()
    runs = []
    for threads in (1, 2, 1):
        torch.set_num_threads(threads)
        runs.append(reproducible_bbvi(bb_model, y_hat, opts))
    torch.set_num_threads(before)
    assert torch.get_num_threads() == before  # pinned() restores the caller's setting
    for mu, sigma in runs[1:]:
        assert torch.equal(mu, runs[0][0]) and torch.equal(sigma, runs[0][1])
    assert runs[0][0].dtype == torch.float64
    # it optimizes: the NELBO of fixed ŷ at the result is below the amortized start's (common noise)
    f = bb_model.fp64()
    mu0, logvar0 = f.posterior(y_hat.double())
    eps = [torch.randn(mu0.shape, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in range(8)]
    nelbo = lambda m, lv: float(sum(f.hyper_nelbo_bits(y_hat.double(), m, lv, e).sum() for e in eps))
    mu, sigma = runs[0]
    assert nelbo(mu, 2 * torch.log(sigma)) < nelbo(mu0, logvar0)
    # the seed is ŷ's: another ŷ, another seed; non-integer latents are refused
    y2 = y_hat.clone()
    y2.view(-1)[0] += 1
    assert seed_of(y2) != seed_of(y_hat)
    with pytest.raises(ValueError, match="integer"):
        seed_of(y_hat + 0.5)


# ------------------------------------------------------------------------------------------ coding
def test_padding_words_share_their_top():
    from rdopt.coding.bitsback import _padding

    assert np.array_equal(_padding(10, 7)[-3:], _padding(3, 7))


@pytest.mark.parametrize("n_bytes", [0, 1, 9, 300])
def test_side_info_recovered_and_rate_accounted(bb_model, image, n_bytes):
    """ξ of any length comes back exactly; net bits = file bits − bits of ξ. 300 bytes is more than ẑ
    takes here: the excess rides in the z stream (counted in the file, and recovered)."""
    from rdopt.api.bitsback import decode_bytes_bb
    from rdopt.coding.container import unpack

    xi = np.random.default_rng(n_bytes).bytes(n_bytes)
    enc = _encode(bb_model, image, xi)
    s = enc.stats
    assert s.file_bits == 8 * len(enc.data) and s.side_info_bits == 8 * n_bytes
    assert s.net_bits == s.file_bits - s.side_info_bits and s.net_bpp == pytest.approx(s.net_bits / (70 * 130))
    assert unpack(enc.data).frames[0].side_info_bits == 8 * n_bytes
    dec = decode_bytes_bb(enc.data, bb_model)
    assert dec.side_info == xi and dec.net_bits == s.net_bits
    assert np.array_equal(dec.pixels, enc.pixels)
    if 8 * n_bytes < s.z_taken_bits:  # short ξ: pseudo-random padding made up the difference
        assert s.padding_bits > 0
    if n_bytes == 300:
        assert s.z_taken_bits < 8 * n_bytes and s.padding_bits == 0


def test_bits_back_pays_for_the_hyper_latent(bb_model, image):
    """Recovered bits are real savings: with enough ξ the net rate is below the file size by what ẑ took
    (up to the coder's word granularity)."""
    enc = _encode(bb_model, image, bytes(range(256)) * 2)
    s = enc.stats
    assert s.z_taken_bits > 0
    assert s.file_bits - s.net_bits == s.side_info_bits


def _repack(data: bytes, edit) -> bytes:
    from rdopt.coding.container import Frame, RdoFile, Stream, pack, unpack

    f = unpack(data)
    fr = f.frames[0]
    streams = tuple(Stream(s.name, s.kind, edit(s.name, s.data)) for s in fr.streams)
    return pack(RdoFile(f.header, (Frame(fr.type, streams, fr.side_info_bits),)))


def test_checksum_mismatch_and_tampered_bbvi_are_loud(bb_model, image):
    from rdopt.api.bitsback import decode_bytes_bb
    from rdopt.coding.bitsback import BBRecord, SideInfoError

    enc = _encode(bb_model, image, b"secret side information")

    def bad_checksum(name, data):
        if name != "bb":
            return data
        r = BBRecord.unpack(data)
        return BBRecord(r.grid_exp, r.z_range, r.bbvi_steps, r.bbvi_lr, r.pad_words, bytes(8)).pack()

    with pytest.raises(SideInfoError, match="checksum mismatch"):
        decode_bytes_bb(_repack(enc.data, bad_checksum), bb_model)

    def other_bbvi(name, data):  # a decoder whose reproducible_bbvi differs from the encoder's
        if name != "bb":
            return data
        r = BBRecord.unpack(data)
        return BBRecord(r.grid_exp, r.z_range, r.bbvi_steps + 1, r.bbvi_lr, r.pad_words, r.checksum).pack()

    with pytest.raises(SideInfoError):
        decode_bytes_bb(_repack(enc.data, other_bbvi), bb_model)


def test_truncated_and_flipped_files_error_cleanly(bb_model, image):
    from rdopt.api.bitsback import decode_bytes_bb
    from rdopt.coding.container import BitstreamError

    enc = _encode(bb_model, image, b"abc")
    data = enc.data
    for bad in (data[:-1], data[: len(data) // 2], data[:10]):
        with pytest.raises(BitstreamError):
            decode_bytes_bb(bad, bb_model)
    for pos in (len(data) // 3, len(data) - 20):
        flipped = bytearray(data)
        flipped[pos] ^= 0x10
        with pytest.raises(BitstreamError):
            decode_bytes_bb(bytes(flipped), bb_model)
    # a flip inside the payload with a recomputed CRC: the entropy decoder or the checksum of ξ catches it
    body = bytearray(data[:-4])
    body[len(body) - 40] ^= 0x01
    forged = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)) & 0xFFFFFFFF)
    with pytest.raises(BitstreamError):
        decode_bytes_bb(forged, bb_model)


def test_bb_record_round_trip_and_limits():
    from rdopt.coding.bitsback import BBRecord
    from rdopt.coding.container import BitstreamError

    r = BBRecord(3, 512, 300, 0.003, 2, b"12345678")
    assert BBRecord.unpack(r.pack()) == r
    with pytest.raises(BitstreamError):
        BBRecord.unpack(r.pack()[:-1])
    with pytest.raises(BitstreamError):
        BBRecord.unpack(BBRecord(3, 512, 300, 5.0, 2, b"12345678").pack())


@pytest.mark.parametrize("xi", [b"\0" * 8, b"\0" * 200, b"\xff" * 3])
def test_side_info_of_zero_words_and_odd_lengths(bb_model, image, xi):
    """ξ ending in zero words (which an unsealed ANS stack could not hold) and lengths that are not whole
    words come back exactly."""
    from rdopt.api.bitsback import decode_bytes_bb

    enc = _encode(bb_model, image, xi, steps=2, bbvi_steps=3)
    assert decode_bytes_bb(enc.data, bb_model).side_info == xi


@pytest.mark.parametrize("xi", [b"\0" * 1200, b"caption text, padded to whole words\0\0\0" * 30])
def test_z_decoded_from_side_info_follows_q(xi):
    """ẑ decoded from side information lands where Q puts its mass, whatever ξ looks like: no element beyond
    6σ (a zero-padded top word, or a leaky support over all 1025 grid points, would put some far in the
    tail), and the mean offset and spread match Q's."""
    from rdopt.coding.bitsback import q_capacity_bits, take_z_from_side_info

    rng = np.random.default_rng(1)
    n = 2000
    mean, std = rng.uniform(-40, 40, n), rng.uniform(0.5, 3.0, n)
    assert 8 * len(xi) > q_capacity_bits(std) * 0.5
    enc = take_z_from_side_info(xi, mean, std, (1, n, 1, 1), 512, pad_seed=7)
    u = (enc.z_sym.reshape(-1) - mean) / std
    assert np.abs(u).max() < 6
    assert abs(u.mean()) < 0.1 and 0.85 < u.std() < 1.2


def test_shipped_models_share_the_base_transforms_and_refuse_a_changed_base(tmp_path, monkeypatch):
    """Every shipped rdopt-msh-bb-qQ is a slim file (no g_a / g_s parameters, their SHA-256 instead) that
    assembles with rdopt-msh-qQ; a base whose parameters changed is refused at load time; saving a net whose
    transforms differ from the named base is refused; a slim file is not a checkpoint."""
    import shutil

    import rdopt.codecs.image.bitsback as B
    from rdopt.codecs.image.loading import ModelUnavailable, read_state_dict

    for q in B.BB_QUALITIES:
        slim = torch.load(B.WEIGHTS_DIR / f"rdopt-msh-bb-q{q}.pt", weights_only=True)
        assert B.SHARED_DIGEST in slim and "g_s.0.weight" not in slim and "h_a.0.weight" in slim
        net = B.load_bitsback(q).net
        base = read_state_dict(B.WEIGHTS_DIR / f"rdopt-msh-q{q}.pt")
        assert all(torch.equal(v, base[k].float()) for k, v in net.named_parameters() if k.startswith(B.SHARED))
    # a changed base: the digest no longer matches
    fake = tmp_path / "weights"
    fake.mkdir()
    shutil.copy(B.WEIGHTS_DIR / "rdopt-msh-bb-q3.pt", fake)
    base = read_state_dict(B.WEIGHTS_DIR / "rdopt-msh-q3.pt")
    base["g_s.0.weight"] = base["g_s.0.weight"] + 0.01
    torch.save(base, fake / "rdopt-msh-q3.pt")
    monkeypatch.setattr(B, "WEIGHTS_DIR", fake)
    with pytest.raises(ModelUnavailable, match="other weights of rdopt-msh-q3"):
        B.load_bitsback(3)
    (fake / "rdopt-msh-q3.pt").unlink()
    with pytest.raises(ModelUnavailable, match="which is missing"):
        B.load_bitsback(3)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="slim"):
        B.load_bitsback(checkpoint=B.WEIGHTS_DIR / "rdopt-msh-bb-q3.pt")
    # saving: the transforms must be the base's
    net = B.load_bitsback(3).net
    B.save_bitsback(net, tmp_path / "slim.pt", shared_with=B.WEIGHTS_DIR / "rdopt-msh-q3.pt")
    assert B.load_bitsback(3).weight_hash() == B.BitsBackCodec(net, "x", 0.0).weight_hash()
    with torch.no_grad():
        net.g_s[0].weight.add_(0.01)
    with pytest.raises(ValueError, match="not shared"):
        B.save_bitsback(net, tmp_path / "bad.pt", shared_with=B.WEIGHTS_DIR / "rdopt-msh-q3.pt")
