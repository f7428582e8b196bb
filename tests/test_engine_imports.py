"""The engine never imports textual: a headless run or a remote worker must not need the console."""

import subprocess
import sys

from enginekit import ROOT

CHECK = """
import importlib, pkgutil, sys
import engine
names = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]
for name in names:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))
print(len(names), loaded)
"""


def test_no_engine_module_imports_textual():
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    count, loaded = out.stdout.strip().split(" ", 1)
    assert int(count) >= 20  # every engine module was imported, workloads included
    assert loaded == "[]", f"engine imported {loaded}"


def test_the_check_would_catch_textual():
    out = subprocess.run(
        [sys.executable, "-c", CHECK.replace("import engine\n", "import engine, textual.app\n")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "textual.app" in out.stdout
