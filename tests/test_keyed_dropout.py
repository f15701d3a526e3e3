"""Keyed dropout and the encoder built on it: masks are lowbias32 hashes of (key, index) at the stated rate, one
member's row of a stacked draw is its lone mask, nothing is drawn at rate 0; the encoder is nn.TransformerEncoder's
(same weights from a seed, same parameter names, same outputs without dropout)."""

import pytest
import torch
from torch import nn

from fusion.layers.encoder import Encoder, EncoderLayer
from fusion.layers.keyed_dropout import KeyedDropout, keep_masks, keyed_dropout


def _lowbias32(x: int, last_shift: bool = True) -> int:
    """The hash on Python ints (unsigned 32-bit arithmetic), as published with its constants."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16) if last_shift else x


CPU = torch.device("cpu")


def _signed(x: int) -> int:
    return x - (1 << 32) if x >= 1 << 31 else x


def test_a_mask_is_the_hash_of_the_key_and_the_index_at_the_rate_asked():
    keys, n, p = [3, 2_000_000_000], 50, [0.25, 0.5]
    masks = keep_masks(keys, n, p, CPU)
    for row, (key, q) in enumerate(zip(keys, p)):
        threshold = round(q * (1 << 32)) - (1 << 31)
        hashes = [_signed(_lowbias32(_lowbias32(i) ^ key, last_shift=False)) for i in range(n)]
        assert masks[row].tolist() == pytest.approx([1 / (1 - q) if h >= threshold else 0.0 for h in hashes])
    many = keep_masks([12345], 200_000, [0.3], CPU)[0]
    assert many.unique().tolist() == pytest.approx([0.0, 1 / 0.7])
    assert (many > 0).float().mean().item() == pytest.approx(0.7, abs=0.005)


def test_a_member_row_of_a_stacked_draw_is_its_lone_mask_and_keys_differ():
    stacked = keep_masks([7, 8, 9], 1000, [0.1, 0.0, 0.4], CPU)
    assert stacked.dtype == torch.float32 and stacked.shape == (3, 1000)
    assert torch.equal(stacked[2], keep_masks([9], 1000, [0.4], CPU)[0])
    assert torch.equal(stacked[1], torch.ones(1000))  # rate 0 keeps everything
    assert not torch.equal(keep_masks([7], 1000, [0.4], CPU), keep_masks([9], 1000, [0.4], CPU))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_are_scaled_in_fp32_and_rounded_once(dtype):
    """As CUDA's fused dropout scales (the scale a float, one rounding of the product): 1 / (1 - 0.15) in bf16 is
    1.1797, not 1.1765, and kept values would be 0.27% too large on average."""
    x = torch.randn(4096, generator=torch.Generator().manual_seed(1)).to(dtype)
    scaled = (x.float() * torch.tensor(1 / 0.85)).to(dtype)  # torch's dropout: the scale in fp32, one rounding
    torch.manual_seed(0)
    out = keyed_dropout(x, 0.15)
    kept = out != 0
    assert out.dtype == dtype and torch.equal(out[kept], scaled[kept])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_mask_is_the_same_on_a_gpu():
    keys, p = [1, 99, 2_000_000_000], [0.1, 0.0, 0.5]
    on_gpu = keep_masks(keys, 10_000, p, torch.device("cuda"))
    assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), keep_masks(keys, 10_000, p, CPU))


def test_the_mask_follows_the_elements_not_their_memory_layout():
    x = torch.randn(6, 10)
    strided = x.t().contiguous().t()  # the same values, laid out column-major
    torch.manual_seed(0)
    a = keyed_dropout(x, 0.5)
    torch.manual_seed(0)
    b = keyed_dropout(strided, 0.5)
    assert torch.equal(a, b) and not torch.equal(a, x)


def test_no_key_is_drawn_at_rate_zero_or_in_evaluation():
    x = torch.randn(4, 8)
    state = torch.get_rng_state()
    assert torch.equal(KeyedDropout(0.0)(x), x)
    assert torch.equal(KeyedDropout(0.5).eval()(x), x)
    assert torch.equal(torch.get_rng_state(), state)
    KeyedDropout(0.5)(x)
    assert not torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ValueError, match="expected 0 <= p < 1"):
        KeyedDropout(1.0)


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_the_encoder_is_torchs_transformer_encoder_under_its_names(dropout):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout, activation="gelu", batch_first=True, norm_first=True)
    theirs = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    torch.manual_seed(0)
    ours = Encoder(EncoderLayer(32, 4, 64, dropout), 2)
    a, b = theirs.state_dict(), ours.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[key], b[key]) for key in a)
    x = torch.randn(5, 9, 32)
    out = ours.eval()(x)
    assert out.shape == (5, 9, 32)
    assert torch.allclose(out, theirs.eval()(x), atol=1e-5)
    if not dropout:  # training without dropout: the same function too
        assert torch.allclose(ours.train()(x), theirs.train()(x), atol=1e-5)
