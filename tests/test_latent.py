"""GANSpace directions and bookmarks, on tiny random models: the directions are the latent
distribution's principal axes and are cached per model file; bookmarks survive a round trip, refuse
another model's file, and their arithmetic is parsed, never evaluated."""

import json

import pytest
import torch

from engine import generators
from engine.generators import checkpoint
from engine.latent import directions as dirs
from engine.latent import file_sha256
from engine.latent.bookmarks import BookmarkError, Bookmarks, parse

STYLEGAN = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, mapping_kwargs={"num_layers": 2},
                synthesis_kwargs={"channel_base": 64, "channel_max": 16})


def tiny(name, seed=0):
    torch.manual_seed(seed)
    if name == "stylegan2":
        return generators.create("stylegan2", **STYLEGAN).eval()
    return generators.create("dcgan", z_dim=8, resolution=16, base_channels=4).eval()


@pytest.fixture
def stylegan(tmp_path):
    g = tiny("stylegan2")
    path = tmp_path / "tiny.safetensors"
    checkpoint.save(g, "stylegan2", path)
    return g, path


def count_mapping(g):
    calls = []
    original = g.mapping.forward

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    g.mapping.forward = counted
    return calls


def ws_of(g, n, seed):
    z = torch.randn(n, g.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return g.mapping(z, None)[:, 0]  # [n, w_dim]


# -- directions --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["stylegan2", "dcgan"])
def test_directions_are_orthonormal_and_sorted(name):
    found = dirs.compute(tiny(name), components=6, samples=2000, seed=1)
    assert found.directions.shape == (6, 8) and found.sigmas.shape == (6,)
    torch.testing.assert_close(found.directions @ found.directions.T, torch.eye(6), atol=1e-5, rtol=0)
    assert (found.sigmas[:-1] >= found.sigmas[1:]).all() and (found.sigmas > 0).all()
    assert found.space == ("w" if name == "stylegan2" else "z")


def test_first_direction_carries_more_variance_than_random_ones():
    g = tiny("stylegan2")
    found = dirs.compute(g, components=8, samples=3000, seed=0)
    w = ws_of(g, 3000, seed=123)  # fresh samples, not those the PCA saw
    w = w - w.mean(0)
    along_first = (w @ found.directions[0]).var().item()
    assert along_first == pytest.approx(found.sigmas[0].item() ** 2, rel=0.15)
    randoms = torch.nn.functional.normalize(torch.randn(50, 8, generator=torch.Generator().manual_seed(5)), dim=1)
    assert along_first > (w @ randoms.T).var(0).max().item()
    assert along_first > 2 * (w @ found.directions[-1]).var().item()


def test_dcgan_directions_are_the_prior_s_axes():
    found = dirs.compute(tiny("dcgan"), components=8, samples=4000, seed=0)
    assert found.sigmas.min() > 0.85 and found.sigmas.max() < 1.15  # an isotropic Gaussian: no preferred axis


def test_directions_are_deterministic():
    g = tiny("stylegan2")
    a, b = dirs.compute(g, 4, 1000, seed=3), dirs.compute(g, 4, 1000, seed=3)
    assert torch.equal(a.directions, b.directions) and torch.equal(a.sigmas, b.sigmas)
    c = dirs.compute(g, 4, 1000, seed=4)
    assert not torch.equal(a.sigmas, c.sigmas)


def test_cache_hit_returns_the_same_tensors_without_recomputing(stylegan, tmp_path):
    g, model = stylegan
    calls = count_mapping(g)
    cache = tmp_path / "cache"
    first = dirs.load_or_compute(g, model, components=5, samples=1000, cache_dir=cache)
    computed_calls = len(calls)
    assert computed_calls > 0
    (file,) = cache.iterdir()
    assert file.name.startswith(first.model_sha256) and first.model_sha256 == file_sha256(model)
    stamp = file.stat().st_mtime_ns
    again = dirs.load_or_compute(g, model, components=5, samples=1000, cache_dir=cache)
    assert len(calls) == computed_calls  # the mapping network was not run again
    assert file.stat().st_mtime_ns == stamp
    assert torch.equal(again.directions, first.directions) and torch.equal(again.sigmas, first.sigmas)
    assert (again.components, again.samples, again.space) == (5, 1000, "w")
    other = dirs.load_or_compute(g, model, components=3, samples=1000, cache_dir=cache)
    assert len(calls) > computed_calls and len(list(cache.iterdir())) == 2  # other settings, other file
    torch.testing.assert_close(other.directions, first.directions[:3], atol=1e-5, rtol=0)


def test_a_changed_model_file_misses_the_cache(stylegan, tmp_path):
    g, model = stylegan
    cache = tmp_path / "cache"
    first = dirs.load_or_compute(g, model, components=4, samples=800, cache_dir=cache)
    with torch.no_grad():
        g.mapping.fc0.weight.mul_(-1.5)
    checkpoint.save(g, "stylegan2", model)
    calls = count_mapping(g)
    second = dirs.load_or_compute(g, model, components=4, samples=800, cache_dir=cache)
    assert calls and second.model_sha256 != first.model_sha256
    assert len(list(cache.iterdir())) == 2
    assert not torch.allclose(second.sigmas, first.sigmas)


def test_damaged_cache_file_is_recomputed(stylegan, tmp_path):
    g, model = stylegan
    cache = tmp_path / "cache"
    first = dirs.load_or_compute(g, model, components=4, samples=800, cache_dir=cache)
    (file,) = cache.iterdir()
    file.write_bytes(b"not safetensors")
    again = dirs.load_or_compute(g, model, components=4, samples=800, cache_dir=cache)
    assert torch.equal(again.directions, first.directions)
    assert dirs.load(file, first.model_sha256).components == 4
    with pytest.raises(dirs.DirectionsError, match="made for model"):
        dirs.load(file, "0" * 64)


def test_apply_moves_by_amount_times_sigma():
    g = tiny("stylegan2")
    found = dirs.compute(g, components=4, samples=1000, seed=0)
    w = ws_of(g, 2, seed=9)  # [2, w_dim]
    moved = dirs.apply(w, found, [2.0, 0.0, -1.0])
    want = w + 2 * found.sigmas[0] * found.directions[0] - found.sigmas[2] * found.directions[2]
    torch.testing.assert_close(moved, want)
    torch.testing.assert_close(dirs.apply(w, found, {2: -1.0, 0: 2.0}), want)
    assert torch.equal(dirs.apply(w, found, []), w)
    with pytest.raises(dirs.DirectionsError, match="direction 7"):
        dirs.apply(w, found, {7: 1.0})
    with pytest.raises(dirs.DirectionsError, match=r"\[B, 8\]"):
        dirs.apply(torch.zeros(1, 5), found, [1.0])


def test_apply_to_some_layers_only():
    g = tiny("stylegan2")
    found = dirs.compute(g, components=2, samples=500, seed=0)
    z = torch.randn(1, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ws = g.mapping(z, None)  # [1, num_ws, w_dim]
    assert ws.shape[1] >= 4
    moved = dirs.apply(ws, found, [3.0], layers=(1, 3))
    assert torch.equal(moved[:, 0], ws[:, 0]) and torch.equal(moved[:, 3:], ws[:, 3:])
    torch.testing.assert_close(moved[:, 1:3], ws[:, 1:3] + 3 * found.sigmas[0] * found.directions[0])
    torch.testing.assert_close(dirs.apply(ws, found, [3.0], layers=range(1, 3)), moved)
    with torch.no_grad():
        assert not torch.allclose(g.render(moved), g.render(ws))  # the picture changes
    with pytest.raises(dirs.DirectionsError, match="layers"):
        dirs.apply(ws, found, [1.0], layers=(3, 99))
    with pytest.raises(dirs.DirectionsError, match="layers"):
        dirs.apply(ws[:, 0], found, [1.0], layers=(0, 1))


def test_too_many_components_is_an_error():
    with pytest.raises(dirs.DirectionsError, match="components"):
        dirs.compute(tiny("dcgan"), components=9, samples=100)


# -- bookmarks ---------------------------------------------------------------------------------------

@pytest.fixture
def marks(stylegan, tmp_path):
    g, model = stylegan
    book = Bookmarks.open(tmp_path / "marks.json", model, z_dim=8, w_dim=8)
    gen = torch.Generator().manual_seed(0)
    for name in ("A", "B", "C", "smile_2"):
        z = torch.randn(1, 8, generator=gen)
        with torch.no_grad():
            book.add(name, z, g.mapping(z, None)[:, 0])
    return book


def test_bookmarks_round_trip_exactly(marks, stylegan):
    _, model = stylegan
    marks.save()
    data = json.loads(marks.path.read_text())
    assert data["model_sha256"] == file_sha256(model) and sorted(data["bookmarks"]) == marks.names()
    back = Bookmarks.open(marks.path, model, z_dim=8, w_dim=8)
    assert back.names() == ["A", "B", "C", "smile_2"]
    for name in back.names():
        assert torch.equal(back[name].z, marks[name].z) and torch.equal(back[name].w, marks[name].w)
    assert [p.name for p in marks.path.parent.iterdir() if p.name.startswith("marks")] == ["marks.json"]


def test_bookmarks_from_another_model_are_refused(marks, tmp_path):
    marks.save()
    other = tmp_path / "other.safetensors"
    checkpoint.save(tiny("stylegan2", seed=1), "stylegan2", other)
    with pytest.raises(BookmarkError) as e:
        Bookmarks.open(marks.path, other, z_dim=8, w_dim=8)
    assert "marks.json" in str(e.value) and "other.safetensors" in str(e.value) and "another model" in str(e.value)


def test_a_failed_save_leaves_the_old_file(marks, monkeypatch):
    marks.save()
    before = marks.path.read_bytes()
    marks.add("D", torch.zeros(8))

    def broken(data, f, **kw):
        f.write('{"format": "masq')
        raise OSError("disk full")

    monkeypatch.setattr("engine.latent.bookmarks.json.dump", broken)
    with pytest.raises(OSError, match="disk full"):
        marks.save()
    assert marks.path.read_bytes() == before
    assert [p.name for p in marks.path.parent.iterdir() if p.name.startswith("marks")] == ["marks.json"]


def test_latent_arithmetic(marks):
    a, b, c = marks["A"], marks["B"], marks["C"]
    back = marks.combine("A - B + B")
    torch.testing.assert_close(back.z, a.z, atol=1e-6, rtol=0)
    torch.testing.assert_close(back.w, a.w, atol=1e-6, rtol=0)
    torch.testing.assert_close(marks.combine("A - B + C").z, a.z - b.z + c.z)
    torch.testing.assert_close(marks.combine("0.5*A + B*0.5").z, marks.mean(["A", "B"]).z)
    torch.testing.assert_close(marks.mean(["A", "B", "C"]).w, (a.w + b.w + c.w) / 3)
    torch.testing.assert_close(marks.combine(" -2*smile_2+3 * smile_2 ").z, marks["smile_2"].z)
    torch.testing.assert_close(marks.combine("1.5e0*A - .5*A").z, a.z)
    assert parse("A - 0.25*B + C") == [(1.0, "A"), (-0.25, "B"), (1.0, "C")]


@pytest.mark.parametrize("expression, position", [
    ("__import__('os')", 10), ("A + + B", 4), ("A B", 2), ("A -", 3), ("", 0), ("2A", 1), ("A * B", 4),
    ("A; B", 1), ("A.z", 1), ("A + Z", 4),
])
def test_bad_expressions_name_the_expression_and_position(marks, expression, position):
    with pytest.raises(BookmarkError) as e:
        marks.combine(expression)
    message = str(e.value)
    assert repr(expression) in message and f"position {position}" in message


def test_unknown_names_and_bad_bookmark_names(marks):
    with pytest.raises(BookmarkError, match="unknown bookmark 'Z'.*A, B, C, smile_2"):
        marks.combine("A + Z")
    for bad in ("a-b", "1x", "", "A B"):
        with pytest.raises(BookmarkError, match="bookmark name"):
            marks.add(bad, torch.zeros(8))
    with pytest.raises(BookmarkError, match=r"shape \[8\]"):
        marks.add("short", torch.zeros(7))


def test_damaged_bookmarks_files_are_named(marks, stylegan):
    _, model = stylegan
    marks.save()
    data = json.loads(marks.path.read_text())
    data["bookmarks"]["A"]["z"] = data["bookmarks"]["A"]["z"][:-1]
    marks.path.write_text(json.dumps(data))
    with pytest.raises(BookmarkError, match="marks.json: bookmark 'A': z"):
        Bookmarks.open(marks.path, model, z_dim=8, w_dim=8)
    marks.path.write_text("{")
    with pytest.raises(BookmarkError, match="marks.json: not a readable"):
        Bookmarks.open(marks.path, model, z_dim=8, w_dim=8)


def test_dcgan_bookmarks_have_no_w(tmp_path):
    model = tmp_path / "dc.safetensors"
    checkpoint.save(tiny("dcgan"), "dcgan", model)
    book = Bookmarks.open(tmp_path / "dc.json", model, z_dim=8)
    book.add("A", torch.ones(8))
    book.add("B", torch.full((1, 8), 3.0))
    assert book.combine("B - A").w is None
    torch.testing.assert_close(book.combine("B - A").z, torch.full((8,), 2.0))
    with pytest.raises(BookmarkError, match="no w space"):
        book.add("C", torch.ones(8), torch.ones(8))
    book.save()
    assert Bookmarks.open(tmp_path / "dc.json", model, z_dim=8)["B"].w is None
