"""The subnet search (paper-notes §8) on made-up fitness and latency: its moves stay inside the
space, every scored subnet is inside the window, a seed fixes the run, a killed run resumes
from the fitness cache, one cache serves several limits, and it beats random sampling."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from spaceevo_lib.search import (FitnessCache, NoValidSubnetError, SubnetSearchConfig,
                                 random_subnets, subnet_search)
from spaceevo_lib.space import (SpaceChoice, Subnet, crossover_subnets, max_subnet, min_subnet,
                                mutate_subnet, sample_subnet)

SPACE = SpaceChoice.decode("onnxw-train-111110-133301")
HS = SPACE.hyperspace
SMALL = SubnetSearchConfig(population=12, generations=4, parents=6, mutations=4, crossovers=4,
                           seed=0)


def toy_latency(subnets):
    """A made-up latency (ms) that grows with width, expand, kernel, depth and resolution."""
    return np.array([s.resolution ** 2 / 1024 * sum(
        w * (e or 1.0) * k / 2000 for k, w, e in zip(s.kernels, s.widths, s.expands))
        for s in subnets])


def toy_fitness(subnet) -> float:
    """Made up: larger nets score higher, plus a fixed pseudo-random part per subnet."""
    noise = zlib.crc32(subnet.encode().encode()) % 1000 / 1000
    return 50 + 10 * float(np.log(toy_latency([subnet])[0])) + 8 * noise


def _window():
    lat = toy_latency([sample_subnet(HS, SPACE, np.random.default_rng(i)) for i in range(400)])
    c = float(np.median(lat))
    return (0.85 * c, c)


# ----------------------------------------------------------------------------- moves


def test_mutation_and_crossover_stay_inside_the_space():
    rng = np.random.default_rng(0)
    subs = [sample_subnet(HS, SPACE, rng) for _ in range(30)] + \
        [min_subnet(HS, SPACE), max_subnet(HS, SPACE)]
    for _ in range(300):
        a, b = (subs[int(i)] for i in rng.integers(len(subs), size=2))
        for child in (mutate_subnet(SPACE, a, rng), crossover_subnets(SPACE, a, b, rng),
                      mutate_subnet(SPACE, a, rng, prob=1.0, resolution_prob=1.0)):
            child.validate(HS, SPACE)  # raises EncodingError if outside
            assert child.resolution in SPACE.spec.sample_resolutions + (a.resolution,
                                                                        b.resolution)


def test_mutation_probabilities_and_crossover_parents():
    rng = np.random.default_rng(1)
    a = sample_subnet(HS, SPACE, rng)
    b = sample_subnet(HS, SPACE, rng)
    assert mutate_subnet(SPACE, a, rng, prob=0.0, resolution_prob=0.0) == a
    changed = [mutate_subnet(SPACE, a, rng, prob=1.0) != a for _ in range(20)]
    assert sum(changed) >= 18
    assert crossover_subnets(SPACE, a, a, rng) == a
    for _ in range(50):
        c = crossover_subnets(SPACE, a, b, rng)
        assert c.depths in (a.depths, b.depths) and c.resolution in (a.resolution, b.resolution)
        donor = a if c.depths == a.depths and c.resolution == a.resolution else b
        assert c.depths == donor.depths
        # every block of the child is the block at that position of one parent (or, past a
        # parent's depth, that parent's last block of the stage)
        for stage, blocks in c.stage_blocks().items():
            pa, pb = a.stage_blocks()[stage], b.stage_blocks()[stage]
            for i, blk in enumerate(blocks):
                assert blk in (pa[min(i, len(pa) - 1)], pb[min(i, len(pb) - 1)])


# ----------------------------------------------------------------------------- the search


def test_every_scored_subnet_is_new_valid_and_inside_the_window():
    window = _window()
    res = subnet_search(SPACE, toy_fitness, toy_latency, window, SMALL)
    h = res.history
    assert len(h) == SMALL.evaluations and h.encoding.is_unique
    assert ((h.latency_ms >= window[0]) & (h.latency_ms <= window[1])).all()
    assert np.allclose(h.latency_ms, toy_latency([Subnet.decode(e) for e in h.encoding]))
    assert set(h.origin) <= {"random", "mutation", "crossover"}
    assert (h.generation == 0).sum() == SMALL.population
    assert res.best_score == h.score.max() == toy_fitness(res.best)
    # parents are the fittest: the final population holds the best subnet found
    assert res.best.encode() in res.final_population


def test_a_seed_fixes_the_run():
    window = _window()
    a = subnet_search(SPACE, toy_fitness, toy_latency, window, SMALL)
    b = subnet_search(SPACE, toy_fitness, toy_latency, window, SMALL)
    c = subnet_search(SPACE, toy_fitness, toy_latency, window,
                      SubnetSearchConfig(**{**SMALL.__dict__, "seed": 1}))
    assert a.history.equals(b.history) and a.final_population == b.final_population
    assert not a.history.encoding.equals(c.history.encoding)


def test_a_killed_search_resumes_from_its_cache_bit_exact(tmp_path):
    window = _window()
    whole = subnet_search(SPACE, toy_fitness, toy_latency, window, SMALL)

    class Killed(Exception):
        pass

    calls = []

    def dies_after_20(sub):
        if len(calls) == 20:
            raise Killed
        calls.append(sub)
        return toy_fitness(sub)

    key = {"supernet": "abc", "images": 100}
    with pytest.raises(Killed):
        subnet_search(SPACE, FitnessCache(tmp_path / "fit.json", key, dies_after_20),
                      toy_latency, window, SMALL)
    cache = FitnessCache(tmp_path / "fit.json", key, toy_fitness)
    assert len(cache) == 20
    again = subnet_search(SPACE, cache, toy_latency, window, SMALL)
    assert again.history.equals(whole.history)
    assert cache.new == SMALL.evaluations - 20
    assert not [p for p in tmp_path.iterdir() if p.name != "fit.json"]  # no partial file


def test_one_cache_serves_several_limits_and_refuses_another_supernet(tmp_path):
    lo, hi = _window()
    cache = FitnessCache(tmp_path / "fit.json", {"supernet": "abc"}, toy_fitness)
    subnet_search(SPACE, cache, toy_latency, (lo, hi), SMALL)
    known, first = set(cache.scores), cache.new
    wide = subnet_search(SPACE, cache, toy_latency, (0.0, 2 * hi), SMALL)
    reused = [e for e in wide.history.encoding if e in known]
    assert reused  # the wider limit meets subnets the first search scored ...
    assert cache.new - first == len(wide.history) - len(reused)  # ... and does not rescore
    r = random_subnets(SPACE, cache, toy_latency, (lo, hi), 10, seed=0)
    assert all(e in cache.scores for e in r.history.encoding)
    with pytest.raises(ValueError, match="another supernet"):
        FitnessCache(tmp_path / "fit.json", {"supernet": "other"}, toy_fitness)


def test_the_search_beats_random_sampling_at_equal_evaluations():
    window = _window()
    cfg = SubnetSearchConfig(population=16, generations=6, parents=8, mutations=6,
                             crossovers=6)
    gains = []
    for seed in range(3):
        s = subnet_search(SPACE, toy_fitness, toy_latency, window,
                          SubnetSearchConfig(**{**cfg.__dict__, "seed": seed}))
        r = random_subnets(SPACE, toy_fitness, toy_latency, window, cfg.evaluations, seed=seed)
        assert len(r.history) == len(s.history) == cfg.evaluations
        gains.append(s.best_score - r.best_score)
    assert np.mean(gains) > 0


def _from_the_ends_only(window, population: int, parents: int, resolution: int):
    """A window uniform draws never reach: no search without given subnets; the history of
    one given the space's smallest and largest subnets."""
    cfg = SubnetSearchConfig(population=population, generations=1, parents=parents,
                             mutations=2, crossovers=2, max_tries=300)
    r = (resolution,)
    with pytest.raises(NoValidSubnetError):
        subnet_search(SPACE, toy_fitness, toy_latency, window, cfg, resolutions=r)
    return subnet_search(SPACE, toy_fitness, toy_latency, window, cfg, resolutions=r,
                         start_with=[min_subnet(HS, SPACE), max_subnet(HS, SPACE)]).history


def test_a_window_near_the_largest_subnet_fills_from_it():
    big = max_subnet(HS, SPACE)
    top = float(toy_latency([big])[0])
    window = (0.8 * top, top)  # uniform draws almost never reach it
    h = _from_the_ends_only(window, population=6, parents=3, resolution=big.resolution)
    assert h.origin.iloc[0] == "given" and h.encoding.iloc[0] == big.encode()
    assert (h.generation == 0).sum() >= 2 and h.encoding.is_unique
    assert ((h.latency_ms >= window[0]) & (h.latency_ms <= window[1])).all()


def test_a_window_just_above_the_smallest_subnet_fills_from_its_mutants():
    """On one host the ort-vnni limit of SEQnet-A0 (MobileNetV3-Small's INT8 latency) sat
    6-18 % above the evolved space's smallest subnet: 4000 uniform draws found none, so the
    row stayed empty. The smallest subnet is outside the window, yet its mutants reach it."""
    small = min_subnet(HS, SPACE)
    fast = float(toy_latency([small])[0])
    window = (1.06 * fast, 1.18 * fast)
    h = _from_the_ends_only(window, population=4, parents=2, resolution=small.resolution)
    assert h.origin.iloc[0] == "mutation" and h.parent.iloc[0] == small.encode()
    assert ((h.latency_ms >= window[0]) & (h.latency_ms <= window[1])).all()
    assert h.encoding.is_unique and len(h) >= 4  # the population


def test_windows_no_subnet_meets_and_bad_settings():
    fast = float(toy_latency([min_subnet(HS, SPACE)])[0])
    cfg = SubnetSearchConfig(population=4, generations=1, parents=2, mutations=1,
                             crossovers=1, max_tries=200)
    with pytest.raises(NoValidSubnetError, match="no subnet of onnxw-train-111110-133301"):
        subnet_search(SPACE, toy_fitness, toy_latency, (0.0, fast / 2), cfg)
    with pytest.raises(NoValidSubnetError):
        random_subnets(SPACE, toy_fitness, toy_latency, (0.0, fast / 2), 3, max_tries=200)
    with pytest.raises(ValueError, match="low <= high"):
        subnet_search(SPACE, toy_fitness, toy_latency, (2.0, 1.0), cfg)
    with pytest.raises(ValueError, match="parents"):
        SubnetSearchConfig(population=4, parents=5)
    with pytest.raises(ValueError, match="mutate_prob"):
        SubnetSearchConfig(mutate_prob=1.5)
