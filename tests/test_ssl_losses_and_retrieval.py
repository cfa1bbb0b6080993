"""Eq. (2)'s top-1 retrieval accuracy against a brute-force reading of its definition, and the
contrastive losses against their formulas written out term by term."""

import math

import pytest
import torch

from ray_lth.tasks.ssl.losses import info_nce_with_queue, nt_xent
from ray_lth.tasks.ssl.retrieval import retrieval_chance, retrieval_top1


def _cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm


def brute_force_eq2(z, z_prime):
    """Appendix A.2 literally: for each z_i (and each z'_i) the set D_i of cosine similarities to
    the other 2n - 1 representations; correct when z'_i (z_i) is the one argmax."""
    n = len(z)
    reps = [[float(x) for x in row] for row in z] + [[float(x) for x in row] for row in z_prime]
    correct = 0
    for i in range(2 * n):
        positive = i + n if i < n else i - n
        similarity = {j: _cosine(reps[i], reps[j]) for j in range(2 * n) if j != i}
        best = max(similarity.values())
        argmax = [j for j, s in similarity.items() if s == best]
        correct += argmax == [positive]
    return correct / (2 * n)


@pytest.mark.parametrize("n,d,seed", [(2, 3, 0), (5, 4, 1), (17, 8, 2), (40, 2, 3)])
def test_retrieval_matches_brute_force_on_random_representations(n, d, seed):
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=generator)
    z_prime = z + 1.5 * torch.randn(n, d, generator=generator)  # noisy views: some hits, some misses
    expected = brute_force_eq2(z, z_prime)
    assert n < 5 or 0 < expected < 1  # the larger cases are informative: some hits, some misses
    assert retrieval_top1(z, z_prime) == pytest.approx(expected, abs=1e-6)


def test_retrieval_with_ties_counts_a_tie_as_a_miss():
    # exact cosines (0, ±1) so that ties are exact in any summation order
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    z_prime = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, -1.0]])
    # z_1 ties with z_3 and z'_1 (cos 1): miss; z_2 -> z'_2 alone at cos 1: hit; z_3 ties: miss;
    # z'_1 ties with z_1 and z_3: miss; z'_2 -> z_2: hit; z'_3 (0,-1) is nearest to nothing at cos 1:
    # its best candidates are z_1, z_3, z'_1 at cos 0 and its positive z_3 is among them: miss
    assert brute_force_eq2(z, z_prime) == pytest.approx(2 / 6)
    assert retrieval_top1(z, z_prime) == pytest.approx(2 / 6)
    collapsed = torch.ones(4, 3)
    assert retrieval_top1(collapsed, collapsed) == 0.0 == brute_force_eq2(collapsed, collapsed)


def test_retrieval_with_one_image_is_always_correct():
    for z, z_prime in [([[1.0, 0.0]], [[0.0, 1.0]]), ([[1.0, 2.0]], [[-1.0, -2.0]]), ([[3.0]], [[3.0]])]:
        z, z_prime = torch.tensor(z), torch.tensor(z_prime)
        assert retrieval_top1(z, z_prime) == 1.0 == brute_force_eq2(z, z_prime)
    assert retrieval_chance(1) == 1.0 and retrieval_chance(256) == pytest.approx(1 / 511)


def test_retrieval_rejects_mismatched_batches():
    with pytest.raises(ValueError, match="must both be"):
        retrieval_top1(torch.ones(3, 2), torch.ones(2, 2))


def nt_xent_by_definition(z_a, z_b, temperature):
    """simCLR's Algorithm 1: images k = 1..n give anchors 2k-1 (view a) and 2k (view b);
    L = 1/(2n) Σ_k [l(2k-1, 2k) + l(2k, 2k-1)], l(i, j) = -log(exp(s_ij/τ) / Σ_{m≠i} exp(s_im/τ))."""
    n = len(z_a)
    reps = []
    for k in range(n):  # interleaved, as in the paper, to be independent of the code's layout
        reps += [[float(x) for x in z_a[k]], [float(x) for x in z_b[k]]]

    def l(i, j):
        numerator = math.exp(_cosine(reps[i], reps[j]) / temperature)
        denominator = sum(math.exp(_cosine(reps[i], reps[m]) / temperature) for m in range(2 * n) if m != i)
        return -math.log(numerator / denominator)

    return sum(l(2 * k, 2 * k + 1) + l(2 * k + 1, 2 * k) for k in range(n)) / (2 * n)


@pytest.mark.parametrize("n,temperature", [(1, 0.5), (3, 0.1), (6, 0.5), (4, 2.0), (5, 20.0)])
def test_nt_xent_matches_its_definition(n, temperature):
    generator = torch.Generator().manual_seed(n)
    z_a, z_b = torch.randn(n, 5, generator=generator), torch.randn(n, 5, generator=generator)
    assert nt_xent(z_a, z_b, temperature).item() == pytest.approx(nt_xent_by_definition(z_a, z_b, temperature), rel=1e-5)


def test_nt_xent_falls_as_the_two_views_agree():
    generator = torch.Generator().manual_seed(0)
    z_a = torch.randn(16, 8, generator=generator)
    noise = torch.randn(16, 8, generator=generator)
    losses = [nt_xent(z_a, z_a + scale * noise, 0.5).item() for scale in (4.0, 1.0, 0.3, 0.0)]
    assert losses == sorted(losses, reverse=True) and losses[0] - losses[-1] > 0.5
    # and gradient descent on one view pulls it onto the other
    z_b = torch.randn(16, 8, generator=generator, requires_grad=True)
    before, retrieved_before = nt_xent(z_a, z_b, 0.5).item(), retrieval_top1(z_a, z_b.detach())
    optimizer = torch.optim.SGD([z_b], lr=2.0)
    for _ in range(100):
        optimizer.zero_grad()
        nt_xent(z_a, z_b, 0.5).backward()
        optimizer.step()
    assert nt_xent(z_a, z_b, 0.5).item() < before - 0.5
    assert retrieval_top1(z_a, z_b.detach()) > retrieved_before + 0.25


def test_info_nce_with_queue_matches_its_definition():
    generator = torch.Generator().manual_seed(1)
    q, k, queue = (torch.randn(*shape, generator=generator) for shape in ((4, 6), (4, 6), (7, 6)))
    queue = torch.nn.functional.normalize(queue, dim=1)
    temperature = 0.2
    expected = 0.0
    for i in range(4):
        positive = math.exp(_cosine(q[i].tolist(), k[i].tolist()) / temperature)
        negatives = sum(math.exp(_cosine(q[i].tolist(), queue[j].tolist()) / temperature) for j in range(7))
        expected += -math.log(positive / (positive + negatives)) / 4
    assert info_nce_with_queue(q, k, queue, temperature).item() == pytest.approx(expected, rel=1e-5)


def test_losses_refuse_a_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.ones(2, 2), torch.ones(2, 2), 0.0)
