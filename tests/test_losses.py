"""Loss formulas against values worked out by hand, and their gradients."""

import pytest
import torch

from painterly.losses import PerceptualLoss, content_loss, gram_matrix, style_layer_loss, total_variation


def test_gram_matrix_by_hand():
    # One image, 2 channels, 2 positions: F = [[1, 2], [3, 4]] -> F·Fᵀ = [[5, 11], [11, 25]].
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 1, 2)
    assert torch.equal(gram_matrix(f), torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]))


def test_content_loss_paper_form_is_half_sum_of_squares():
    f = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    p = torch.tensor([0.0, 0.0, 1.0]).reshape(1, 3, 1, 1)
    # ½·(1² + 2² + 2²) = 4.5
    assert content_loss(f, p, "paper").item() == pytest.approx(4.5)


def test_content_loss_target_form_is_relative_mse():
    f = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    p = torch.tensor([0.0, 0.0, 1.0]).reshape(1, 3, 1, 1)
    # mean((F−P)²) / mean(P²) = (9/3) / (1/3) = 9
    assert content_loss(f, p, "target").item() == pytest.approx(9.0, rel=1e-6)


def test_style_layer_loss_paper_form():
    g = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]])
    a = torch.tensor([[[4.0, 11.0], [11.0, 23.0]]])
    # Σ(G−A)² = 1 + 4 = 5; N = 2 channels, M = 2 positions: 5 / (4·4·4) = 5/64
    assert style_layer_loss(g, a, channels=2, positions=2, normalisation="paper").item() == pytest.approx(5 / 64)


def test_total_variation_by_hand():
    x = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).reshape(1, 1, 2, 2)
    # vertical: (2−0)² + (4−1)² = 13; horizontal: (1−0)² + (4−2)² = 5
    assert total_variation(x, "paper").item() == pytest.approx(18.0)
    assert total_variation(x, "target").item() == pytest.approx(13 / 2 + 5 / 2)


class _Identity(torch.nn.Module):
    """An 'encoder' whose single layer is the image itself, to check PerceptualLoss exactly."""

    layers = ("x",)

    def forward(self, image):
        return {"x": image}


def test_perceptual_loss_paper_form_matches_gatys_formulas():
    torch.manual_seed(0)
    content, style, image = torch.rand(1, 3, 4, 5), torch.rand(1, 3, 4, 5), torch.rand(1, 3, 4, 5)
    loss = PerceptualLoss(_Identity(), ["x"], {"x": 0.5}, content_weight=2.0, style_weight=3.0, tv_weight=0.0,
                          normalisation="paper")
    loss.set_style([style])
    loss.set_content(content)
    terms = loss(image)
    n, m = 3, 20
    g, a = gram_matrix(image), gram_matrix(style)
    expected_style = 3.0 * 0.5 * ((g - a) ** 2).sum() / (4 * n**2 * m**2)
    expected_content = 2.0 * 0.5 * ((image - content) ** 2).sum()
    assert terms.style.item() == pytest.approx(expected_style.item(), rel=1e-5)
    assert terms.content.item() == pytest.approx(expected_content.item(), rel=1e-5)
    assert terms.total.item() == pytest.approx((expected_style + expected_content).item(), rel=1e-5)


def test_style_blend_is_weighted_gram_average():
    torch.manual_seed(1)
    s1, s2 = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    loss = PerceptualLoss(_Identity(), [], {"x": 1.0}, content_weight=0, style_weight=1, tv_weight=0)
    loss.set_style([s1, s2], blend=[3, 1])
    expected = (0.75 * gram_matrix(s1) + 0.25 * gram_matrix(s2)) / 16
    assert torch.allclose(loss.style_targets["x"], expected)


def test_target_form_is_size_independent_for_same_texture():
    # A texture tiled 2x2 has the same per-position Gram, so the style loss is the same.
    torch.manual_seed(2)
    tile, style = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    loss = PerceptualLoss(_Identity(), [], {"x": 1.0}, content_weight=0, style_weight=1, tv_weight=0)
    loss.set_style([style])
    small = loss(tile).style
    big = loss(tile.repeat(1, 1, 2, 2)).style
    assert small.item() == pytest.approx(big.item(), rel=1e-5)


@pytest.mark.parametrize("normalisation", ["paper", "target"])
def test_gradients_match_finite_differences(normalisation):
    torch.manual_seed(3)
    content, style = torch.rand(1, 2, 3, 3, dtype=torch.float64), torch.rand(1, 2, 3, 3, dtype=torch.float64)
    image = torch.rand(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)

    def objective(x):
        total = content_loss(x, content, normalisation)
        total = total + style_layer_loss(gram_matrix(x), gram_matrix(style), 2, 9, normalisation)
        return total + total_variation(x, normalisation)

    assert torch.autograd.gradcheck(objective, (image,))


def test_a_bad_normalisation_gets_the_one_message_the_config_gives():
    from painterly.config import TrainConfig
    from painterly.errors import UsageError

    with pytest.raises(UsageError) as from_config:
        TrainConfig(loss_normalisation="papers")
    with pytest.raises(UsageError) as from_loss:
        PerceptualLoss(_Identity(), [], {"x": 1.0}, content_weight=0, style_weight=1, tv_weight=0,
                       normalisation="papers")
    message = "loss_normalisation must be one of target, paper; got 'papers'"
    assert str(from_loss.value) == str(from_config.value) == message
