"""fit() under torchrun: two gloo processes on the CPU, spawned from the test (a tiny model, a few seconds each)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
pd = pytest.importorskip("pandas")
dist = torch.distributed
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("needs torch.distributed with the gloo backend", allow_module_level=True)

from pidkd.distill import DistillConfig, fit  # noqa: E402

# The run: shared by the spawned script and the single-process comparison in this file.
COMMON = textwrap.dedent(
    """
    import torch
    from torch import nn
    from pidkd.distill import DistillConfig, PIDProbe

    def data():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(600, 16, generator=g)
        y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
        return (x[:400], y[:400]), (x[400:500], y[400:500]), (x[500:], y[500:])

    def teacher():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))

    def student():
        torch.manual_seed(1)  # BatchNorm: its running statistics are synchronised too
        return nn.Sequential(nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 4))

    def config(**kw):
        base = dict(epochs=3, batch_size=32, warmup_epochs=0, cycle_epochs=2, phase1_fraction=0.5,
                    coupling_from_cycle=1, lambda_distill=0.1, progress=False, seed=3)
        return DistillConfig(**(base | kw))

    def probe(val):
        return PIDProbe(val, teacher_layer="1", student_layer="2", n_bootstrap=0, n_permutations=0,
                        bias_correction="none", name="probe")

    LAYERS = {"teacher_layers": ["1"], "student_layers": ["2"]}
    """
)

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, sys, warnings
    import torch
    from pidkd.distill import fit
    from common import LAYERS, config, data, probe, student, teacher

    out, mode = sys.argv[1], sys.argv[2]
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    train, val, test = data()
    refused = {}
    if mode == "full":  # what fit() refuses under torchrun, before the run
        for name, kw in {"batch": dict(config=config(batch_size=33)), "iterable": dict(config=config())}.items():
            tr = list(zip(train[0].split(32), train[1].split(32))) if name == "iterable" else train
            try:
                fit(teacher(), student(), tr, method="rid", **LAYERS, **kw)
            except ValueError as err:
                refused[name] = str(err)
        ds = torch.utils.data.TensorDataset(*train)  # a DataLoader with a DistributedSampler is accepted
        sampler = torch.utils.data.distributed.DistributedSampler(ds, num_replicas=world, rank=rank, seed=0)
        loader = torch.utils.data.DataLoader(ds, batch_size=16, sampler=sampler)
        refused["loader_epochs"] = len(fit(teacher(), student(), loader, method="vid", epochs=1, **LAYERS,
                                           config=config()).history)
        torch.manual_seed(rank)  # a different teacher on each rank is warned about
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(torch.nn.Linear(16, 4), student(), train, method="kd", epochs=1, config=config())
        refused["teacher_warnings"] = [str(w.message) for w in caught if "teacher" in str(w.message)]
    resume = os.path.join(out, "..", "full", "ckpt", "rid_epoch0001.pt") if mode == "resume" else None
    if mode == "resume":  # a process group of the user's: fit() joins it and leaves it alone
        torch.distributed.init_process_group("gloo")
    res = fit(teacher(), student(), train, method="rid", val_data=val, test_data=test, probes=[probe(val)],
              config=config(checkpoint_every=1, checkpoint_dir=os.path.join(out, "ckpt")), resume_from=resume,
              **LAYERS)
    digest = hashlib.sha256()
    for v in [*res.student.state_dict().values(), *res.modules.state_dict().values()]:
        digest.update(v.detach().contiguous().numpy().tobytes())
    rows = res.history.drop(columns=[c for c in res.history if c.endswith(("seconds", "time"))])
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"weights": digest.hexdigest(), "rows": rows.to_dict("records"), "refused": refused,
                   "group_left": torch.distributed.is_initialized()}, f)
    if rank == 0:
        res.history.to_csv(os.path.join(out, "history.csv"), index=False)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    """
)


def _torchrun(tmp_path, mode: str) -> dict[int, dict]:
    out = tmp_path / mode
    out.mkdir()
    (tmp_path / "common.py").write_text(COMMON)
    (tmp_path / "script.py").write_text(SCRIPT)
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, str(tmp_path / "script.py"), str(out), mode], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return {r: json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)}


def _single_process_history(tmp_path, resume_from=None):
    sys.path.insert(0, str(tmp_path))
    try:
        import common
    finally:
        sys.path.remove(str(tmp_path))
    train, val, test = common.data()
    res = fit(
        common.teacher(),
        common.student(),
        train,
        method="rid",
        val_data=val,
        test_data=test,
        probes=[common.probe(val)],
        config=common.config(),
        resume_from=resume_from,
        **common.LAYERS,
    )
    sys.modules.pop("common", None)
    return res.history


@pytest.mark.filterwarnings("ignore:PIDProbe 'probe'")  # the tiny probe set
def test_two_gloo_processes_train_checkpoint_and_resume_exactly(tmp_path):
    full = _torchrun(tmp_path, "full")
    # every rank ends with the same weights and the same history (rank 0's, probe columns included)
    assert full[0]["weights"] == full[1]["weights"]
    assert pd.DataFrame(full[0]["rows"]).equals(pd.DataFrame(full[1]["rows"]))
    assert not full[0]["group_left"]  # the process group fit() created is gone again
    refused = full[0]["refused"]
    assert "batch_size=33" not in refused["batch"] and "not divisible by 2" in refused["batch"]
    assert "Use batch_size=32 or 34" in refused["batch"]
    assert "DistributedSampler" in refused["iterable"] and "list" in refused["iterable"]
    assert refused["loader_epochs"] == 1
    assert len(refused["teacher_warnings"]) == 1 and "differ between the 2 processes" in refused["teacher_warnings"][0]
    assert full[1]["refused"]["teacher_warnings"] == []  # warned on rank 0 only
    # rank 0 wrote the checkpoints and the history; the history has the single-process shape
    assert sorted(p.name for p in (tmp_path / "full" / "ckpt").iterdir()) == [f"rid_epoch000{e}.pt" for e in (1, 2, 3)]
    history = pd.read_csv(tmp_path / "full" / "history.csv")
    single = _single_process_history(tmp_path)
    assert list(history.columns) == list(single.columns) and len(history) == len(single) == 3
    assert history["probe_red"].notna().all()
    assert list(history["phase"]) == ["warmup", "phase2", "phase1"]
    assert (history["train_acc"] > 0.25).all() and history["val_acc"].iloc[-1] > 0.5
    # resuming from epoch 1 gives the uninterrupted run exactly (but the probes' quantizers, fitted anew)
    resumed = _torchrun(tmp_path, "resume")
    assert resumed[0]["weights"] == resumed[1]["weights"] == full[0]["weights"]
    assert resumed[0]["group_left"] and resumed[1]["group_left"]  # the script's own process group stays
    a, b = (pd.DataFrame(run[0]["rows"]) for run in (full, resumed))
    trained = [c for c in a if not c.startswith("probe")]
    assert a.columns.equals(b.columns) and a[trained].equals(b[trained])
    # the checkpoint of two processes is an ordinary one: a single process resumes it too
    alone = _single_process_history(tmp_path, resume_from=tmp_path / "full" / "ckpt" / "rid_epoch0001.pt")
    assert len(alone) == 3 and alone["epoch"].iloc[0] == 1 and alone["loss_filters"].iloc[0] == a["loss_filters"][0]


def test_a_process_group_of_one_is_single_process(tmp_path, monkeypatch):
    """WORLD_SIZE=1 (torchrun --nproc_per_node=1) starts no process group and trains as one process."""
    monkeypatch.setenv("WORLD_SIZE", "1")
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    cfg = DistillConfig(epochs=1, batch_size=33, progress=False)  # no global batch size rule for one process
    res = fit(torch.nn.Linear(4, 2), torch.nn.Linear(4, 2), (x, y), method="student", config=cfg)
    assert len(res.history) == 1 and not dist.is_initialized()
