"""Every model family trains end to end through the cohort engine on data in the real formats:
WRN on uint8 images with on-device augmentation, the Transformer on BPE-tokenized WikiText text,
with SGD, Adam and GI-Adam, SP and muP (tiny shapes: these check wiring, not physics)."""
import numpy as np
import pytest

from sweep.engine import CohortTrainer, plan_cohort
from sweep.runner import dataset_for
from sweep.workload import build_workload

from data_fixtures import data_dir  # noqa: F401  (fixture: private data dir, network off)


def _images(tmp_path, n=48, size=8):
    rng = np.random.default_rng(0)
    path = tmp_path / "imgs.npz"
    np.savez(path, x_train=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
             y_train=np.arange(n) % 4, x_test=rng.integers(0, 256, (16, size, size, 3), dtype=np.uint8),
             y_test=np.arange(16) % 4)
    return path


def _train(cfgs):
    w = build_workload(cfgs[0], dataset_for(cfgs[0]))
    return w, CohortTrainer(w, plan_cohort(cfgs), chunk=4).run()


@pytest.mark.parametrize("param, optimizer", [("sp", "sgd"), ("mup", "adam")])
def test_wrn_with_augmentation(compose_cfg, tmp_path, param, optimizer):
    path = _images(tmp_path)
    base = ["model=wrn", "model.depth=10", "model.widen=1", "data=npz", f"data.path={path}",
            "data.augment.flip=true", "data.augment.crop=2", "data.augment.mixup=0.5", "loss=xent",
            f"param={param}", f"optimizer={optimizer}", "batch_size=8", "steps=3", "probe.every=3",
            "probe.batch_size=16", "probe.lanczos_iters=4", "param.adam_lr_factors=true"]
    cfgs = [compose_cfg(*base, "lr=0.001"), compose_cfg(*base, "lr=0.002", "warmup=2")]
    w, res = _train(cfgs)
    assert w.data.x_train.dtype == np.uint8  # images stay uint8 on the device
    for tr in res.traces:
        assert list(tr.step) == [0, 3] and np.isfinite(tr.sharpness).all()
        assert tr.precond_sharpness.notna().all() == (optimizer == "adam")
    # probes are never augmented: the step-0 probe loss is the plain loss on the probe batch
    import jax

    params0 = jax.tree.map(lambda p: p[0], CohortTrainer(w, plan_cohort(cfgs)).init_members().params)
    direct = float(w.loss_and_accuracy(params0, w.data.x_probe, w.data.y_probe)[0])
    assert res.traces[0].probe_loss.iloc[0] == pytest.approx(direct, rel=1e-5)


@pytest.mark.parametrize("optimizer", ["sgd", "gi_adam"])
def test_transformer_on_wikitext(compose_cfg, tmp_path, data_dir, optimizer):  # noqa: F811
    root = tmp_path / "wt"
    root.mkdir()
    text = " = Heading = \n\n" + "the quick brown fox jumps over the lazy dog . " * 60 + "\n"
    for split in ("train", "valid", "test"):
        (root / f"wiki.{split}.raw").write_text(text)
    base = ["model=transformer", "model.depth=1", "model.width=16", "model.heads=2", "model.context=8",
            "data=wikitext2", f"data.root={root}", "data.vocab_size=64", "data.context=8", "loss=xent",
            f"optimizer={optimizer}", "batch_size=4", "steps=4", "probe.every=2", "probe.batch_size=8",
            "probe.lanczos_iters=4", "lr=0.01"]
    w, res = _train([compose_cfg(*base)])
    assert w.dataset.task == "lm" and w.data.x_train.shape[1] == 8
    tr = res.traces[0]
    assert list(tr.step) == [0, 2, 4] and np.isfinite(tr.probe_loss).all() and np.isfinite(tr.sharpness).all()
    assert tr.probe_loss.iloc[0] == pytest.approx(np.log(w.num_classes), rel=0.5)  # ~uniform at init
