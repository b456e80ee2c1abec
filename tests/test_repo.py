"""Repository contracts: CI runs README's test command; configs and docs stay in sync."""
import os
import re

from conftest import REPO


def test_ci_runs_exactly_the_readme_test_command():
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    ci = open(os.path.join(REPO, ".ci", "run"), encoding="utf-8").read()
    assert blocks[1].strip() in ci.splitlines()
