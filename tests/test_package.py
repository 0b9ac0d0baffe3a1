"""The package runs installed: a wheel in a fresh virtual environment, outside the checkout."""

import re
import shutil
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

import pytest

from tests.helpers import ROOT, cli_overrides


@pytest.mark.slow
def test_an_installed_wheel_trains_and_samples_from_another_directory(tmp_path):
    """Before, `import scoresde.config_schema` failed from a wheel (`No module named 'configs'`) and
    there was no console command. The venv borrows this environment's dependencies through a .pth
    file (nothing is downloaded); scoresde itself comes from the wheel alone."""
    source, wheels = tmp_path / "source", tmp_path / "wheels"  # built from a copy: the checkout gets no build/ folder
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("scoresde-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(ROOT / "configs" / "toy_vp.py", elsewhere / "my_config.py")  # it imports only the package
    where = subprocess.run(
        [str(python), "-c", "import scoresde; print(scoresde.__file__)"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(site), where
    command = [str(venv / "bin" / "scoresde"), "--config=my_config.py", "--workdir=run", *cli_overrides()]
    for mode in ("train", "sample"):
        result = subprocess.run([*command, f"--mode={mode}"], cwd=elsewhere, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    assert (elsewhere / "run" / "quality.json").exists() and (
        elsewhere / "run" / "sample" / "euler_maruyama" / "samples.npz"
    ).exists()
    module = subprocess.run(
        [str(python), "-m", "scoresde", "--config=my_config.py", "--workdir=run", "--mode=nope"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert module.returncode != 0 and "--mode" in module.stderr and "train" in module.stderr


def test_the_old_defaults_module_still_works_and_warns():
    from scoresde.config import defaults

    sys.modules.pop("configs.base", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import configs.base
    assert any(issubclass(w.category, DeprecationWarning) and "scoresde.config.defaults" in str(w.message) for w in caught)
    assert configs.base.get_config().to_dict() == defaults.get_config().to_dict()


def test_the_old_controllable_modes_module_still_works_and_warns():
    from scoresde import run_lib

    sys.modules.pop("scoresde.run_controllable", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from scoresde import run_controllable
    assert any(issubclass(w.category, DeprecationWarning) and "scoresde.run_lib" in str(w.message) for w in caught)
    for mode in ("train_classifier", "inpaint", "colorize", "conditional"):
        assert getattr(run_controllable, mode) is run_lib.MODES[mode]


def test_every_mode_has_its_own_module_and_the_command_offers_exactly_these():
    import importlib

    from scoresde import cli

    for name, function in cli.MODES.items():
        assert function.__module__ == f"scoresde.cli.{name}", (name, function.__module__)
        assert importlib.import_module(f"scoresde.cli.{name}").__doc__.startswith(f"`--mode {name}`")


@pytest.mark.parametrize("old", sorted(__import__("scoresde._moved", fromlist=["MOVED"]).MOVED))
def test_a_moved_module_keeps_its_old_path_for_one_release_with_a_warning(old):
    """`import scoresde.<old>` and `from scoresde import <old>` give the module at its new path (the
    same object: patching one patches the other) and warn with the new path."""
    import importlib

    from scoresde import _moved

    new = importlib.import_module(_moved.MOVED[old])
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert importlib.import_module(old) is new
    assert [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)] == [
        f"{old} has moved to {_moved.MOVED[old]}; the old path works until the next release"
    ]
    parent, _, name = old.rpartition(".")
    assert getattr(importlib.import_module(parent), name) is new


def test_nothing_in_the_package_uses_an_old_path():
    moved = __import__("scoresde._moved", fromlist=["MOVED"]).MOVED
    for path in [*(ROOT / "scoresde").rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]:
        if path.name in ("_moved.py", "test_package.py"):
            continue
        text = path.read_text()
        for old in moved:
            package, _, name = old.rpartition(".")
            assert not re.search(rf"\b{re.escape(old)}\b|from {package} import [\w, ]*\b{name}\b", text), (path, old)
