"""Golden check for refactors: a fixed set of small sweeps whose records (run ids, outcomes, summaries,
trace bytes) and figures (decoded pixels) must stay bit-identical across a change that claims to
change nothing.

    python scripts/golden.py record before.json [SWEEP ...]   # on the old code (all sweeps, or these)
    python scripts/golden.py record after.json      # on the new code, same machine
    python scripts/golden.py compare before.json after.json

Float results depend on the CPU and the library versions, so compare digests made on one machine;
the digest files are not committed. The sweeps cover every traced path of the engine: SGD with and
without momentum, Adam / GI-Adam (both seedings) / RI-Adam with preconditioned sharpness, muP with
Adam's lr factors, lr in 1/lambda0 units with averaged lambda0, lr_init at eta_c, catapult warmup,
cosine decay, cross-entropy, micro-batched training and probes, vmapped and mapped probes, the
registered diagnostics, divergence, and a Transformer LM on a generated text file.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TINY = ["model.width=16", "model.depth=2", "steps=12", "probe.every=3", "probe.dense_steps=2"]
SWEEPS: dict[str, list[str]] = {
    "sgd": [*TINY, "lr_unit=sharpness", "lr=0.5,400", "warmup=1,4", "seed=0,1", "probe.lambda0_batches=2",
            "batch_size=64"],
    "momentum_xent_cosine": [*TINY, "optimizer.momentum=0.9", "loss=xent", "decay=cosine", "lr=0.05", "warmup=4"],
    "adam": [*TINY, "optimizer=adam", "lr=0.001,0.5", "warmup=1,4"],
    "gi_adam": [*TINY, "optimizer=gi_adam", "lr=0.01", "optimizer.v0_batch=update,separate"],
    "ri_adam_mup": [*TINY, "optimizer=ri_adam", "param=mup", "param.adam_lr_factors=true", "lr=0.01"],
    "eta_c": [*TINY, "lr_init_mode=eta_c", "lr=0.3", "warmup=8"],
    "catapult": [*TINY, "warmup_mode=catapult", "lr_unit=sharpness", "lr=8"],
    "micro": [*TINY, "memory.budget_mib=0.05", "memory.train_mib=0.05", "lr=0.1", "optimizer=adam",
              "probe.members=vmap"],
    "diagnostics": [*TINY, "probe.hessian_trace=2", "probe.grad_cov=16", "probe.ntk_trace=8",
                    "probe.param_norm=true", "lr=0.1"],
    "lm": ["model=transformer", "model.depth=1", "model.width=16", "model.heads=2", "model.context=8",
           "data=text", "data.train=TEXT", "data.test=TEXT", "data.context=8", "data.vocab_size=64",
           "optimizer=adam", "lr=0.003", "batch_size=8", "steps=6", "probe.every=2", "probe.batch_size=16",
           "loss=xent"],
}
PLOTS = {"sgd": ["heatmap", "trajectories"], "adam": ["heatmap", "trajectories"], "diagnostics": ["all"]}
VOLATILE = ("timings", "git_commit", "host", "device", "versions")


def _text_file(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away", "and", "then", "slept"]
    path = folder / "tiny.txt"
    path.write_text("\n".join(" ".join(rng.choice(words, 12)) for _ in range(200)) + "\n")
    return path


def _sweep(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-c", "import sys; from sweep.cli import main; sys.exit(main())", *args],
                   cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def _pixels(path: Path) -> str:
    from PIL import Image

    return hashlib.sha256(np.asarray(Image.open(path).convert("RGBA")).tobytes()).hexdigest()


def record(out: Path, only: list[str]) -> None:
    digest: dict = {}
    work = Path(tempfile.gettempdir()) / "sweep-golden"  # a fixed path: the text file's path is in the LM's run id
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        text = _text_file(work)
        for name, overrides in SWEEPS.items():
            if only and name not in only:
                continue
            args = [o.replace("TEXT", str(text)) for o in overrides]
            _sweep("run", *args, f"sweep_name={name}", cwd=work)
            runs = {}
            for rec_path in sorted((work / "results" / name / "runs").glob("*/record.json")):
                rec = json.loads(rec_path.read_text())
                for key in VOLATILE:
                    rec.pop(key, None)
                rec["config"].pop("grid", None)
                runs[rec["run_id"]] = rec
            digest[name] = {"runs": runs}
            for kind in PLOTS.get(name, []):
                _sweep("plot", f"results/{name}", "--kind", kind, "--format", "png", cwd=work)
            figs = sorted((work / "results" / name / "figures").glob("*.png"))
            digest[name]["figures"] = {p.name: _pixels(p) for p in figs}
            print(f"{name}: {len(runs)} runs, {len(figs)} figures", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out.write_text(json.dumps(digest, indent=1, sort_keys=True, default=str))


def compare(a: Path, b: Path) -> int:
    before, after = json.loads(a.read_text()), json.loads(b.read_text())
    problems = []
    for name in sorted(set(before) | set(after)):
        x, y = before.get(name, {}), after.get(name, {})
        if set(x.get("runs", {})) != set(y.get("runs", {})):
            problems.append(f"{name}: run ids differ")
        for run_id in set(x.get("runs", {})) & set(y.get("runs", {})):
            if x["runs"][run_id] != y["runs"][run_id]:
                diff = [k for k in x["runs"][run_id] if x["runs"][run_id][k] != y["runs"][run_id].get(k)]
                problems.append(f"{name}/{run_id}: {', '.join(diff)} differ")
        if x.get("figures") != y.get("figures"):
            problems.append(f"{name}: figures differ")
    n_runs = sum(len(v.get("runs", {})) for v in before.values())
    n_figs = sum(len(v.get("figures", {})) for v in before.values())
    print("\n".join(problems) if problems else f"identical: {len(before)} sweeps, {n_runs} runs, {n_figs} figures")
    return 1 if problems else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["record"]:
        record(Path(sys.argv[2]), sys.argv[3:])
    elif sys.argv[1:2] == ["compare"]:
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)
