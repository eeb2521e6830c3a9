"""lab.yaml as editors know it: its JSON Schema (`labctl schema`, written by `init`), every shape error
at once with its line and column, did-you-mean for keys, and a real yaml-language-server reading it."""

from __future__ import annotations

import ast
import json
import os
import re
import select
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import pytest

from conftest import REPO, TEST_CACHE, Result, require_tool
from labctl.catalog import Catalog
from labctl.errors import LabFileError
from labctl.labfile import lab_from_dict
from labctl.labfile.problems import problems
from labctl.labfile.shape import schema
from labctl.labyaml import parse_yaml

CLUMSY = """\
name: demo
machines:
  - name: web
    memroy: 4G
    cpus: 0
  - name: db
    role: master
devstack:
  force: yes
  localrc:
    BAR: ~
classroom:
  trainess: [a]
"""


def labs_of_readme_and_tests() -> Iterator[tuple[str, object]]:
    """Every lab the README and docs/ show (```yaml blocks with a name) and every lab a test writes (dict
    literals and YAML texts with a name and machines or a classroom), good and bad alike."""
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S):
            data = parse_yaml(block, page.name)
            if isinstance(data, dict) and "name" in data:
                yield "docs", data
    for file in sorted((REPO / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(file.read_text())):
            data = None
            if isinstance(node, ast.Dict):
                try:
                    data = ast.literal_eval(node)
                except ValueError:
                    continue
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "name:" in node.value:
                try:
                    data = parse_yaml(node.value, "test")
                except LabFileError:
                    continue
            if isinstance(data, dict) and "name" in data and {"machines", "classroom"} & set(data):
                yield f"{file.name}:{getattr(node, 'lineno', 0)}", data


def test_the_schema_says_what_labctl_says_of_every_lab_in_the_readme_and_tests() -> None:
    validator = jsonschema.Draft202012Validator(schema())
    labs = list(labs_of_readme_and_tests())
    assert len(labs) > 100 and sum(1 for where, _ in labs if where == "docs") >= 3
    valid = 0
    for where, data in labs:
        ours = problems(data)
        if validator.is_valid(data) != (not ours):
            # A size written with its unit ("99999999999G") is a string to a JSON Schema, which can
            # give its form but not its range: labctl alone says it is too large.
            assert ours and all("out of range" in p.message for p in ours), (where, data, ours)
        valid += not ours
    assert valid > 50  # the good labs are there too, not only the hostile ones


def test_schema_command_prints_a_json_schema_and_writes_one(run: Callable[..., Result], tmp_path: Path) -> None:
    result = run("schema")
    assert result.code == 0
    printed = json.loads(result.out)
    jsonschema.Draft202012Validator.check_schema(printed)
    assert printed == schema() and printed["properties"]["machines"] and "name" in printed["required"]
    out = tmp_path / "lab.schema.json"
    assert run("schema", "-o", str(out)).code == 0 and json.loads(out.read_text()) == printed
    (tmp_path / "mine.json").write_text("{}")
    refused = run("schema", "-o", str(tmp_path / "mine.json"))
    assert refused.code == 2 and "not labctl's schema" in refused.err
    assert (tmp_path / "mine.json").read_text() == "{}"


def test_every_shape_error_at_once_with_its_line(run: Callable[..., Result], tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(CLUMSY)
    result = run("plan", "-f", str(lab))
    assert result.code == 2 and "Traceback" not in result.err
    assert f"labctl: error: {lab}: 6 problems" in result.err
    for line in (f"{lab}:4:5: machines[0].memroy: unknown key; did you mean memory?",
                 f"{lab}:5:5: machines[0].cpus: expected a whole number from 1 to 256, got 0",
                 f"{lab}:7:5: machines[1].role: expected one of allinone, controller, compute, got 'master'",
                 f"{lab}:9:3: devstack.force: expected true or false, got 'yes'",
                 "hint: lab.yaml reads only true and false as yes/no",
                 f"{lab}:11:5: devstack.localrc.BAR: expected a value, got nothing",
                 f"{lab}:13:3: classroom.trainess: unknown key; did you mean trainees?"):
        assert line in result.err, line
    # In the file's order, one per line.
    assert result.err.index("memroy") < result.err.index("cpus") < result.err.index("trainess")


def test_a_meaning_error_gets_its_line_too(run: Callable[..., Result], tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text("name: demo\nmachines:\n  - name: web\n  - name: web\n")
    result = run("plan", "-f", str(lab))
    assert result.code == 2
    assert f"{lab}:4:5: machines[1].name: machine name 'web' is used twice" in result.err


def test_did_you_mean_without_a_file(catalog: Catalog) -> None:
    with pytest.raises(LabFileError) as err:
        lab_from_dict({"name": "t", "machines": [{"name": "a", "memroy": "4G"}]}, catalog)
    assert err.value.message == "machines[0].memroy: unknown key; did you mean memory?"
    assert err.value.hint and "memory" in err.value.hint


def test_init_writes_the_schema_beside_the_lab_and_points_editors_at_it(run: Callable[..., Result],
                                                                        tmp_path: Path) -> None:
    folder = tmp_path / "my-lab"
    folder.mkdir()
    assert run("init", str(folder / "lab.yaml")).code == 0
    text = (folder / "lab.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=./lab.schema.json\n")
    assert json.loads((folder / "lab.schema.json").read_text()) == schema()
    jsonschema.validate(parse_yaml(text, "lab.yaml"), schema())
    # A lab.schema.json of the user's own is left as it is, and so is everything else.
    other = tmp_path / "other"
    other.mkdir()
    (other / "lab.schema.json").write_text('{"mine": true}')
    refused = run("init", str(other / "lab.yaml"))
    assert refused.code == 2 and "not labctl's schema" in refused.err
    assert (other / "lab.schema.json").read_text() == '{"mine": true}' and not (other / "lab.yaml").exists()


# ---------------------------------------------------------------------------------------------
# The real yaml-language-server (VS Code's YAML extension and most editors' YAML support)


@pytest.fixture(scope="session")
def yaml_language_server() -> Path:
    """yaml-language-server from npm, kept in the test cache."""
    require_tool("npm")
    folder = TEST_CACHE / "yaml-language-server"
    server = folder / "node_modules" / "yaml-language-server" / "bin" / "yaml-language-server"
    if not server.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(folder),
                        "yaml-language-server@2"], check=True, timeout=600)
    return server


class LanguageClient:
    """The smallest LSP client: JSON-RPC over the server's stdin and stdout."""

    def __init__(self, server: Path) -> None:
        self.process = subprocess.Popen(["node", str(server), "--stdio"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)

    def send(self, message: dict[str, object]) -> None:
        assert self.process.stdin is not None
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def receive(self, deadline: float) -> dict[str, object] | None:
        out = self.process.stdout
        assert out is not None
        header = b""
        while not header.endswith(b"\r\n\r\n"):
            ready, _, _ = select.select([out], [], [], max(0.0, deadline - time.monotonic()))
            if not ready or not (byte := out.read(1)):
                return None
            header += byte
        length = int(re.search(rb"Content-Length: *([0-9]+)", header, re.I)[1])  # type: ignore[index]
        body = b""
        while len(body) < length:
            body += out.read(length - len(body))
        message = json.loads(body)
        assert isinstance(message, dict)
        return message

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def diagnostics_of(server: Path, document: Path) -> list[dict[str, object]]:
    client = LanguageClient(server)
    try:
        client.send({"id": 1, "method": "initialize",
                     "params": {"processId": os.getpid(), "rootUri": document.parent.as_uri(), "capabilities": {}}})
        deadline = time.monotonic() + 60
        while (message := client.receive(deadline)) is not None and message.get("id") != 1:
            pass
        assert message is not None, "yaml-language-server did not answer initialize"
        client.send({"method": "initialized", "params": {}})
        client.send({"method": "workspace/didChangeConfiguration",
                     "params": {"settings": {"yaml": {"validate": True, "schemaStore": {"enable": False}}}}})
        client.send({"method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": document.as_uri(), "languageId": "yaml", "version": 1, "text": document.read_text()}}})
        while (message := client.receive(deadline)) is not None:
            if "id" in message and "method" in message:  # a question of the server's: no settings here
                client.send({"id": message["id"], "result": [None] if message["method"] == "workspace/configuration"
                             else None})
            elif message.get("method") == "textDocument/publishDiagnostics":
                params = message["params"]
                assert isinstance(params, dict)
                return list(params["diagnostics"])
        raise AssertionError("yaml-language-server published no diagnostics")
    finally:
        client.close()


def test_yaml_language_server_reports_a_misspelt_key_at_its_line(yaml_language_server: Path,
                                                                  run: Callable[..., Result], tmp_path: Path) -> None:
    assert run("init", str(tmp_path / "lab.yaml")).code == 0
    lab = tmp_path / "lab.yaml"
    lines = lab.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("machines:"))
    lines[at + 1:at + 1] = ["  - name: extra", "    memroy: 4G"]  # line at + 3 (1-based) of the file
    lab.write_text("\n".join(lines) + "\n")
    found = diagnostics_of(yaml_language_server, lab)
    assert found, "yaml-language-server reported nothing"
    (problem,) = found
    assert "memroy" in str(problem["message"])
    assert problem["range"]["start"]["line"] == at + 2  # type: ignore[index]  # 0-based
    # labctl itself says the same, at the same line.
    result = run("plan", "-f", str(lab))
    assert f"{lab}:{at + 3}:5: machines[0].memroy: unknown key; did you mean memory?" in result.err


def test_yaml_language_server_is_quiet_on_a_good_lab(yaml_language_server: Path, run: Callable[..., Result],
                                                     tmp_path: Path) -> None:
    # The other side: without this, a server that reported every file would pass the test above.
    assert run("init", "--classroom", "3", str(tmp_path / "lab.yaml")).code == 0
    client_saw = diagnostics_of(yaml_language_server, tmp_path / "lab.yaml")
    assert client_saw == []
