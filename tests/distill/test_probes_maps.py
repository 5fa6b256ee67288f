"""PIDProbe's ``measure=`` and ``on="filters"`` (issue 31): the map redundancy during training, of the
layers and of RID's filter outputs, and its plot next to BROJA's Red of the layers.

Tiny MLPs on 240 random samples, CPU, two epochs, three codes a side: each run takes about a second.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pidkd.distill import DistillConfig, PIDProbe, fit  # noqa: E402
from pidkd.estimators import Quantizer  # noqa: E402
from tests.distill.test_distill import mlp  # noqa: E402

RID_LAYERS = {"teacher_layers": ["1"], "student_layers": ["1"]}
TOL = 1e-9  # bits: the map redundancy of a pmf is a certified lower bound on its BROJA Red


def teacher():
    return mlp([6, 8, 3], 0)


def student():
    return mlp([6, 4, 3], 1)


def cfg(**kw):
    return DistillConfig(**({"epochs": 2, "batch_size": 32, "progress": False} | kw))


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(240, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # 3 classes
    return x, y


def probe(data, **kw):
    kw = {"teacher_layer": "1", "student_layer": "1", "n_bootstrap": 3, "n_permutations": 1} | kw
    return PIDProbe(data, quantizer=Quantizer(n_bins=3), background=False, **kw)


@pytest.fixture(scope="module")
def rid_history(data):
    """RID with a BROJA probe of the layers (and so of the filters) and a maps probe of the filters alone."""
    probes = [probe(data), probe(data, on="filters", measure="maps")]
    return fit(
        teacher(),
        student(),
        data,
        method="rid",
        config=cfg(cycle_epochs=2, phase1_fraction=0.5),
        probes=probes,
        **RID_LAYERS,
    ).history


def test_measure_names_the_probe_and_reaches_pid_from_samples(data):
    broja, maps = probe(data), probe(data, measure="MAPS")
    assert (broja.name, broja.measure.name, maps.name, maps.measure.name) == (
        "probe_1_1",
        "broja",
        "probe_1_1_maps",
        "maps",
    )
    h = fit(teacher(), student(), data, method="kd", config=cfg(), probes=[broja, maps]).history
    alone = fit(teacher(), student(), data, method="kd", config=cfg(), probes=[probe(data)]).history
    # the default (BROJA) probe's columns and numbers are those of a run without the maps probe
    cols = [c for c in alone.columns if c.startswith("probe_1_1_")]
    assert cols and not any("maps" in c or "filters" in c for c in cols)
    pytest.importorskip("pandas").testing.assert_frame_equal(h[cols], alone[cols], check_exact=True)
    # the maps probe: the same codes decomposed with the map redundancy, a lower bound on BROJA's Red
    red, red_broja = h["probe_1_1_maps_red_plugin"], h["probe_1_1_red_plugin"]
    assert h["probe_1_1_maps_red"].notna().all() and len(h) == 2
    assert (red >= 0).all() and (red <= red_broja + TOL).all()
    assert (red < red_broja - 1e-6).any()  # a different measure: not BROJA's numbers again
    np.testing.assert_allclose(h["probe_1_1_maps_mi_t"], h["probe_1_1_mi_t"], atol=1e-12)
    plug = h["probe_1_1_maps_red_plugin"] + h["probe_1_1_maps_uni_t_plugin"]
    np.testing.assert_allclose(plug, h["probe_1_1_maps_mi_t"], atol=1e-9)


def test_a_probe_shows_no_resample_bar(data, monkeypatch, capsys):
    from pidkd.estimators import samples

    monkeypatch.setattr(samples, "PROGRESS_CELLS", 0)  # every table counts as large
    fit(teacher(), student(), data, method="kd", config=cfg(epochs=1), probes=[probe(data)])
    assert "pid_from_samples" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (
            {"measure": "wedge"},
            r"'measure' parameter of PIDProbe\(\) must be one of \['broja', 'intersection', 'maps'\]",
        ),
        ({"measure": 2}, r"'measure' parameter of PIDProbe\(\).*Got 2 instead"),
        ({"on": "heads"}, r"'on' parameter of PIDProbe\(\) must be one of \['filters', 'layers'\]"),
    ],
)
def test_measure_and_on_are_checked_at_construction(data, kw, match):
    with pytest.raises(ValueError, match=match):
        probe(data, **kw)


def test_intersection_with_more_than_seven_codes_is_refused_at_construction(data):
    with pytest.raises(ValueError, match=r"measure='intersection'.*n_bins=10.*measure='maps'"):
        PIDProbe(data, teacher_layer="1", student_layer="1", measure="intersection")
    small = PIDProbe(data, "1", "1", quantizer=Quantizer(n_bins=3), measure="intersection")
    assert small.name == "probe_1_1_intersection"


def test_filters_probe_under_rid_records_the_map_redundancy_of_the_filters_every_epoch(rid_history):
    h = rid_history
    assert list(h["epoch"]) == [1, 2]
    maps = h["probe_1_1_maps_filters_red_plugin"]
    assert maps.notna().all() and h["probe_1_1_maps_filters_red"].notna().all()
    assert not any(c.startswith("probe_1_1_maps_") and "filters" not in c for c in h.columns)  # filters only
    # the map redundancy of the filters' codes is in [0, BROJA's Red of the same codes]
    assert (maps >= 0).all() and (maps <= h["probe_1_1_filters_red_plugin"] + TOL).all()
    assert (maps < h["probe_1_1_filters_red_plugin"] - 1e-6).any()  # the maps measure, not BROJA's again
    assert (h["probe_1_1_maps_filters_red"] >= 0).all()
    assert (h["probe_1_1_maps_filters_red"] <= h["probe_1_1_maps_filters_mi_t"] + TOL).all()
    np.testing.assert_allclose(h["probe_1_1_maps_filters_mi_t"], h["probe_1_1_filters_mi_t"], atol=1e-12)
    assert maps.max() > 0.01  # the filters carry label information that both sides share


@pytest.mark.parametrize(
    ("method", "kw", "match"),
    [
        ("student", {}, r"fit\(method='student'\).*on='filters'.*method='rid' or 'ted'.*on='layers'"),
        ("kd", {}, r"fit\(method='kd'\).*on='filters'"),
        ("rid", RID_LAYERS | {"student_layers": ["2"]}, r"\('1', '1'\), which is not distilled.*\[\('1', '2'\)\]"),
    ],
)
def test_filters_probe_is_refused_before_training_without_filters(data, method, kw, match):
    net = student()
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(ValueError, match=match):
        fit(teacher(), net, data, method=method, config=cfg(), probes=[probe(data, on="filters")], **kw)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_filters_probe_works_under_ted(data):
    h = fit(
        teacher(),
        student(),
        data,
        method="ted",
        config=cfg(),
        probes=[probe(data, on="filters", measure="maps")],
        **RID_LAYERS,
    ).history
    assert h["probe_1_1_maps_filters_red"].notna().all()
    assert (h["probe_1_1_maps_filters_red_plugin"] >= 0).all()


def test_plot_training_draws_the_filters_map_redundancy_beside_red_of_the_layers(rid_history):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.colors import to_hex

    from pidkd.plotting import plot_training

    fig = plot_training({"rid": rid_history})
    red, uni, filters = fig.axes[1].get_lines()
    np.testing.assert_allclose(red.get_ydata(), rid_history["probe_1_1_red"])  # BROJA's Red of the layers
    np.testing.assert_allclose(filters.get_ydata(), rid_history["probe_1_1_maps_filters_red"])
    assert filters.get_marker() == "^" and to_hex(filters.get_color()) == to_hex(red.get_color())
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert labels == ["Red", "Uni(Y:T\\S)", "Red_map of the filters f_t(T), f_s(S)"]
    import matplotlib.pyplot as plt

    plt.close(fig)
