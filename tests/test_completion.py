"""Shell tab completion (issue 10, item 5): the completer itself, its speed budget (no jax/pandas), and the
bash script driven as bash drives it (COMP_LINE/COMP_POINT)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sweep.cli import SUBCOMMANDS, main
from sweep.completion import complete, script
from sweep.grid import CONF_DIR

BIN = Path(sys.executable).parent


def test_subcommands_and_options() -> None:
    assert complete([""]) == list(SUBCOMMANDS)
    assert "__complete" not in complete([""])
    assert complete(["st"]) == ["status"]
    assert complete(["run", "--d"]) == ["--dry-run"]
    assert {"--width", "--height", "--dpi", "--style", "--context", "--kind"} <= set(complete(["plot", "x", "--"]))
    assert complete(["plot", "x", "--kind", ""]) == ["heatmap", "trajectories", "treach", "scatter", "warmup_push", "batch_sharpness", "grad_cov", "noise_kernel", "all"]
    assert complete(["plot", "x", "--context", "t"]) == ["talk"]
    assert complete(["plot", "x", "--kind=tr"]) == ["--kind=trajectories", "--kind=treach"]
    assert complete(["run", "--cfg", ""]) == ["job", "hydra", "all"]
    assert complete(["plot", "x", "--metric", ""]) == []  # a free value: nothing to offer
    assert complete(["status", ""]) == []  # a folder: the shell completes file names
    assert complete(["completion", ""]) == ["bash", "zsh"]
    assert complete(["export", ""]) == ["tensorboard"]
    assert complete(["export", "tensorboard", ""]) == []
    assert complete(["nope", ""]) == []


def test_config_keys_from_the_schema() -> None:
    top = complete(["run", ""])
    assert {"model=", "model.", "param=", "optimizer=", "data=", "cluster=", "experiment=", "lr=", "warmup=",
            "probe.", "outcome.", "batch_size=", "sweep_name=", "force="} <= set(top)
    assert "defaults=" not in top and "grid=" not in top
    assert complete(["run", "lr_"]) == ["lr_unit=", "lr_init=", "lr_init_mode="]
    assert "probe.lanczos_iters=" in complete(["run", "probe."])
    assert complete(["run", "probe.ev"]) == ["probe.every=", "probe.eval_every="]
    assert complete(["run", "+probe.ev"]) == ["+probe.every=", "+probe.eval_every="]
    # a group's keys follow the option chosen on the line (default fcn, sgd, digits)
    assert "model.width=" in complete(["run", "model."]) and "model.widen=" not in complete(["run", "model."])
    assert "model.widen=" in complete(["run", "model=wrn", "model."])
    assert "model.heads=" in complete(["submit", "model=transformer", "model.h"])
    assert complete(["run", "optimizer."]) == ["optimizer.name=", "optimizer.clip_norm=", "optimizer.momentum="]
    assert "optimizer.b2=" in complete(["run", "optimizer=adam", "optimizer."])
    assert "data.path=" in complete(["run", "data=npz", "data."])
    assert "cluster.partition=" in complete(["submit", "cluster=slurm", "cluster."])


def test_group_options_and_values() -> None:
    assert complete(["run", "model="]) == ["model=fcn", "model=wrn", "model=transformer"]
    assert complete(["run", "param="]) == ["param=sp", "param=mup"]
    assert complete(["run", "optimizer=gi"]) == ["optimizer=gi_adam"]
    assert "data=cifar10" in complete(["run", "data="])
    experiments = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
    assert complete(["run", "experiment="]) == [f"experiment={e}" for e in experiments]
    assert "experiment=demo" in complete(["run", "experiment=de"])
    assert complete(["submit", "cluster="]) == [f"cluster={p.stem}" for p in sorted((CONF_DIR / "cluster").glob("*.yaml"))]
    assert complete(["run", "loss="]) == ["loss=mse", "loss=xent"]
    assert complete(["run", "lr_unit="]) == ["lr_unit=absolute", "lr_unit=sharpness"]
    assert complete(["run", "force="]) == ["force=true", "force=false"]
    assert complete(["run", "probe.dtype="]) == ["probe.dtype=float32", "probe.dtype=float64"]
    assert complete(["run", "mse_reduction=half"]) == ["mse_reduction=half_mean", "mse_reduction=half_sum"]
    assert complete(["run", "model=transformer", "model.norm="]) == [
        "model.norm=pre_ln", "model.norm=post_ln", "model.norm=pre_ln_no_final"]
    assert complete(["run", "lr="]) == []


def test_every_offered_value_composes(compose_cfg) -> None:
    """Values offered for closed-set keys are accepted by the config (they are read from validate())."""
    from sweep.completion import allowed_values

    checked = 0
    for key, values in allowed_values().items():
        if key.startswith(("model.norm", "model.activation")):
            prefix = ["model=transformer"] if key == "model.norm" else []
        elif key.startswith("optimizer.v0_batch"):
            prefix = ["optimizer=gi_adam"]
        else:
            prefix = []
        for value in values:
            compose_cfg(*prefix, f"{key}={value}")
            checked += 1
    assert checked >= 15


def test_figures_names_then_overrides() -> None:
    from sweep.figures import FIGURES

    assert complete(["figures", ""]) == list(FIGURES)
    assert complete(["figures", "fig1", "--scale", ""]) == ["quick", "paper"]
    assert complete(["figures", "fig1", "lr_u"]) == ["lr_unit="]


def test_complete_is_fast_no_jax_no_pandas() -> None:
    code = ("import sys\n"
            "from sweep.cli import main\n"
            "for words in (['run', 'model='], ['run', 'probe.'], ['plot', 'x', '--kind', ''], ['figures', ''],"
            " ['export', '']):\n"
            "    main(['__complete', *words])\n"
            "heavy = [m for m in ('jax', 'pandas', 'matplotlib', 'flax', 'numpy') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []"
    assert "model=wrn" in out.stdout


def test_hidden_command_prints_one_candidate_per_line(capsys) -> None:
    assert main(["__complete", "run", "param="]) == 0
    assert capsys.readouterr().out == "param=sp\nparam=mup\n"
    assert main(["completion", "bash"]) == 0
    assert "complete -o default -o bashdefault -F _sweep_complete sweep" in capsys.readouterr().out
    assert main(["completion", "zsh"]) == 0
    zsh = capsys.readouterr().out
    assert zsh.startswith("#compdef sweep") and "sweep __complete" in zsh and "compdef _sweep sweep" in zsh


def _bash_complete(line: str) -> list[str]:
    """COMPREPLY of the bash script for a command line typed up to the cursor (and nothing on stderr:
    bash prints its errors, e.g. a bad array subscript, right into the user's prompt)."""
    program = ('source <(sweep completion bash); COMP_LINE="$1"; COMP_POINT=${#1}; _sweep_complete; '
               'printf "%s\\n" "${COMPREPLY[@]}"')
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": "/tmp"}
    out = subprocess.run(["bash", "-c", program, "bash", line], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0 and not out.stderr, out.stderr
    return [w for w in out.stdout.split("\n") if w]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_bash_script() -> None:
    assert (BIN / "sweep").exists()
    assert _bash_complete("sweep r") == ["run"]
    # bash splits the word at '=': the reply is the part after it
    assert _bash_complete("sweep run model=") == ["fcn", "wrn", "transformer"]
    assert _bash_complete("sweep run lr=0.1 model=w") == ["wrn"]
    assert _bash_complete("sweep run probe.dty") == ["probe.dtype="]
    assert _bash_complete("sweep run experiment=dem") == ["demo"]
    assert _bash_complete("sweep plot results/x --kind tr") == ["trajectories", "treach"]
    assert _bash_complete("sweep ") == list(SUBCOMMANDS)
    assert _bash_complete("sweep run nosuchkey") == []  # no candidates: no reply, no bash error
