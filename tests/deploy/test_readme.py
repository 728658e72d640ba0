"""README: the two first commands, a configuration row per setting, only commands that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import typer.main

from schemas.settings import Settings
from triage.cli import app

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def code_lines() -> list[str]:
    """Lines inside ```bash blocks, comments stripped."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                lines.append(line)
    return lines


def test_the_two_commands_come_first() -> None:
    assert code_lines()[:2] == ["make demo", "make test"]


def test_configuration_lists_every_setting() -> None:
    for name, field in Settings.model_fields.items():
        variable = f"TRIAGE_{name.upper()}"
        assert re.search(rf"^\| `{variable}` \|", README, re.M), f"{variable} not in the table"
        assert field.description, f"Settings.{name} needs a description for the README"


def test_every_triage_command_and_option_in_the_readme_exists() -> None:
    commands = typer.main.get_command(app).commands
    used = set()
    for line in code_lines():
        words = shlex.split(line)
        if "triage" not in words[:-1] or words[words.index("triage") + 1].startswith("-"):
            continue
        name, *rest = words[words.index("triage") + 1 :]
        used.add(name)
        assert name in commands, f"README shows `triage {name}`, which the CLI lacks"
        command = commands[name]
        if hasattr(command, "commands"):  # a group such as `triage db`
            command = command.commands[rest.pop(0)]
        options = {option for param in command.params for option in param.opts}
        unknown = [word for word in rest if word.startswith("--") and word not in options]
        assert not unknown, f"README: `{line}` uses options `triage {name}` lacks: {unknown}"
    assert {"train", "enqueue", "urgent", "stats", "demo"} <= used
