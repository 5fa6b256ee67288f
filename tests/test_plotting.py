import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")


def history(acc, red=None):
    h = pd.DataFrame({"epoch": np.arange(1, len(acc) + 1), "val_acc": acc})
    if red is not None:
        h["probe_red"] = red
        h["probe_uni_t"] = [None if r is None else 2.0 - r for r in red]
    return h


def test_plot_training_draws_mean_accuracy_and_probes_in_one_color_per_method(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.colors import to_hex

    from pidkd.plotting import plot_training

    seeds = [history([0.2, 0.6, 0.8]), history([0.4, 0.8, 1.0])]
    fig = plot_training(
        {"student": seeds, "rid": history([0.1, 0.5, 0.9], red=[None, 1.0, 1.5])}, None, title="trained teacher"
    )
    acc_ax, pid_ax = fig.axes
    student, rid = acc_ax.get_lines()
    np.testing.assert_allclose(student.get_ydata(), [0.3, 0.7, 0.9])  # mean over seeds
    red, uni = pid_ax.get_lines()  # only rid has probe columns; epochs without a probe are skipped
    np.testing.assert_array_equal(red.get_xdata(), [2, 3])
    np.testing.assert_allclose(uni.get_ydata(), [1.0, 0.5])
    assert to_hex(red.get_color()) == to_hex(uni.get_color()) == to_hex(rid.get_color())
    assert to_hex(student.get_color()) != to_hex(rid.get_color())
    out = tmp_path / "training.png"
    plot_training({"rid": history([0.1, 0.5, 0.9])}, str(out))
    assert out.stat().st_size > 1000


def test_plot_training_finds_a_default_named_probe_and_takes_a_name():
    import matplotlib

    matplotlib.use("Agg")
    from pidkd.plotting import plot_training

    h = pd.DataFrame({"epoch": [1, 2], "val_acc": [0.5, 0.7]})
    h["probe_conv2_layer1_red"], h["probe_conv2_layer1_uni_t"] = [1.0, 1.2], [0.9, 0.6]
    h["probe_conv2_layer1_filters_red"], h["probe_conv2_layer1_filters_uni_t"] = [9.0, 9.0], [9.0, 9.0]
    h["other_red"], h["other_uni_t"] = [0.1, 0.2], [0.3, 0.4]
    red, uni = plot_training({"rid": h}).axes[1].get_lines()
    np.testing.assert_allclose(red.get_ydata(), [1.0, 1.2])  # the layer probe, not its filters
    red, uni = plot_training({"rid": h}, probe="other").axes[1].get_lines()
    np.testing.assert_allclose(uni.get_ydata(), [0.3, 0.4])


def test_plot_training_draws_the_filters_map_redundancy_only_when_recorded():
    import matplotlib

    matplotlib.use("Agg")
    from pidkd.plotting import plot_training

    h = pd.DataFrame({"epoch": [1, 2, 3], "val_acc": [0.5, 0.7, 0.8]})
    h["probe_a_maps_red"], h["probe_a_maps_uni_t"] = [0.1, 0.2, 0.3], [0.1, 0.1, 0.1]  # a maps probe of the layers
    h["probe_a_red"], h["probe_a_uni_t"] = [1.0, 1.2, 1.4], [0.9, 0.6, 0.4]
    h["probe_a_filters_red"] = [5.0, 5.0, 5.0]  # BROJA's Red of the filters: not drawn
    h["probe_a_maps_filters_red"] = [None, 0.4, 0.7]
    h["mine_filters_red"] = [0.2, 0.3, 0.5]
    fig = plot_training({"rid": h, "bas": h[["epoch", "val_acc", "probe_a_red", "probe_a_uni_t"]]})
    red, uni, filters, bas_red, bas_uni = fig.axes[1].get_lines()
    np.testing.assert_allclose(red.get_ydata(), [1.0, 1.2, 1.4])  # the BROJA probe is preferred
    np.testing.assert_array_equal(filters.get_xdata(), [2, 3])
    np.testing.assert_allclose(filters.get_ydata(), [0.4, 0.7])
    assert filters.get_linestyle() == ":" and filters.get_marker() == "^"
    assert "Red_map of the filters f_t(T), f_s(S)" in [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    _, _, mine = plot_training({"rid": h}, filters="mine").axes[1].get_lines()
    np.testing.assert_allclose(mine.get_ydata(), [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match=r"no history has the column nope_filters_red.*\['mine', 'probe_a', "):
        plot_training({"rid": h}, filters="nope")
    plain = plot_training({"rid": h.drop(columns=["probe_a_maps_filters_red"])})
    assert len(plain.axes[1].get_lines()) == 2
    assert [t.get_text() for t in plain.axes[1].get_legend().get_texts()] == ["Red", "Uni(Y:T\\S)"]
    matplotlib.pyplot.close("all")
