"""What a newcomer installs: the README's install commands and the package ``uv build`` makes.

The README's Python blocks are run by test_docs_examples.py, with every other docs page.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def shell_commands() -> list[str]:
    blocks = re.findall(r"^```(?:bash|sh)\n(.*?)^```$", README, flags=re.DOTALL | re.MULTILINE)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]


def test_readme_never_installs_stalwart_from_an_index():
    # stalwart is not on a package index: a bare `uv add stalwart` fails for a newcomer.
    installs = [c for c in shell_commands() if re.match(r"(uv add|uv pip install|pip install) ", c)]
    naming_stalwart = [c for c in installs if "stalwart" in c]
    assert len(naming_stalwart) >= 5, installs
    for command in naming_stalwart:
        assert re.search(r"\.\./stalwart|/stalwart/dist/.*\.whl|git\+https://", command), command


def test_uv_build_ships_license_and_readme(tmp_path):
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is not on PATH (run the tests with `uv run pytest`)"
    subprocess.run(
        [uv, "build", "--quiet", "--sdist", "--wheel", "--out-dir", str(tmp_path), str(ROOT)],
        check=True,
        timeout=120,
    )
    (wheel,) = tmp_path.glob("stalwart-*.whl")
    (sdist,) = tmp_path.glob("stalwart-*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        assert archive.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload().strip() == README.strip()
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL"))
    assert {"Documentation", "Changelog"} <= set(urls)
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        for name in ("LICENSE", "README.md", "CHANGELOG.md"):
            assert f"{top}/{name}" in archive.getnames()
    assert "Copyright (c) 2026 stalwart contributors" in (ROOT / "LICENSE").read_text()
