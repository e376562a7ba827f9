"""The submit stage up to the network: the real `kaggle` 2.2.4 client against a local server playing Kaggle.

The package takes its endpoint from kagglesdk's table of environments (kagglesdk.kaggle_env); each run here
points the production entry at a local http.server before the package is imported, and nothing else is
replaced: the stage, the package's authentication, requests, the upload and the JSON are the real ones.
The server answers the calls a submission makes (IntrospectToken for a token, StartSubmissionUpload, the
upload itself, CreateSubmission, ListSubmissions) with what each test needs: a success, 401, 403, 429, a
daily limit, a closed competition. A fake key is planted in the environment of every run, and no file the
run wrote, nor its stdout or stderr, may contain it.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO, write_params

from workflow.core.errors import UserError
from workflow.data.submission_format import check_submission
from workflow.data.submission_message import build_message, git_revision
from workflow.stages.submit import DISABLED

SLUG = "dog-breeds"
KEY = "kgl-planted-" + secrets.token_hex(12)  # the credential that must never leave the kaggle package
USER = "someone"
IDS = ["007", "010", "2"]  # leading zeros, and not sorted: both must survive
# Runs the stage as `python -m` would, with the package's production endpoint moved to the local server.
LAUNCH = ("import runpy, sys\n"
          "import kagglesdk.kaggle_env as env\n"
          "env._env_to_endpoint[env.KaggleEnv.PROD] = sys.argv.pop(1)\n"
          "runpy.run_module('workflow.stages.submit', run_name='__main__', alter_sys=True)\n")


class FakeKaggle(ThreadingHTTPServer):
    """Kaggle's API for the calls of a submission; `refuse` maps a call's name to (status, reason)."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.refuse: dict[str, tuple[int, str]] = {}
        self.calls: list[tuple[str, dict, dict]] = []  # (call, headers, JSON body)
        self.uploads: list[bytes] = []
        self.upload_status = 200
        self.token_active = True
        self.submissions: list[dict] = []  # what ListSubmissions returns, newest first

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]


class Handler(BaseHTTPRequestHandler):
    server: FakeKaggle

    def log_message(self, *args) -> None:  # quiet
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:  # the upload to the URL StartSubmissionUpload handed out
        self.server.uploads.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.server.calls.append(("upload", dict(self.headers), {}))
        self._reply(self.server.upload_status, {})

    def do_POST(self) -> None:
        server, name = self.server, self.path.rsplit("/", 1)[-1]
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        server.calls.append((name, dict(self.headers), body))
        if name in server.refuse:
            status, reason = server.refuse[name]
            return self._reply(status, {"code": status, "message": reason})
        if name == "IntrospectToken":
            return self._reply(200, {"active": server.token_active, "username": USER if server.token_active else ""})
        if name == "StartSubmissionUpload":
            return self._reply(200, {"token": "blob-1", "createUrl": f"{server.url}/upload/blob-1"})
        if name == "CreateSubmission":
            ref = 4242 + len(server.submissions)
            server.submissions.insert(0, {"ref": ref, "description": body.get("submissionDescription", ""),
                                          "status": "PENDING"})
            return self._reply(200, {"message": "Successfully submitted", "ref": ref})
        if name == "ListSubmissions":
            return self._reply(200, {"submissions": server.submissions})
        return self._reply(404, {"code": 404, "message": "NotFound"})


@pytest.fixture
def kaggle():
    server = FakeKaggle()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# A project with what the stage reads: params, data/raw's manifests, the trained adapter's records, predictions.

def write_project(root: Path, fmt: str = "label", source: str = "kaggle", **params) -> Path:
    overrides = {"data.source": source, "data.competition": SLUG, "submit.enabled": True,
                 "submit.message": "first try", **params}
    write_params(root, overrides)
    raw = root / "data/raw"
    raw.mkdir(parents=True)
    classes = ["cat", "dog"]
    if fmt == "label":
        sample = pd.DataFrame({"id": IDS, "label": "cat"})
        predictions = pd.DataFrame({"id": IDS, "label": ["dog", "cat", "dog"]})
    else:
        sample = pd.DataFrame({"id": IDS, "dog": "0.5", "cat": "0.5"})
        predictions = pd.DataFrame({"id": IDS, "dog": [0.25, 0.9999997, 0.5], "cat": [0.75, 0.0000004, 0.5]})
    sample.to_csv(raw / "sample_submission.csv", index=False)
    predictions.to_csv(root / "predictions.csv", index=False)
    (raw / "competition.json").write_text(json.dumps({
        "format": fmt, "label_column": "label" if fmt == "label" else None, "classes": classes,
        "submission_columns": list(sample.columns), "id_column": "id", "source": source, "task": "image"}))
    (root / "models/adapter").mkdir(parents=True)
    (root / "models/adapter/model_meta.json").write_text(json.dumps(
        {"recipe": {"model": {"name": "microsoft/beit-large-patch16-384"}}, "classes": classes}))
    (root / "models/adapter/method.json").write_text(json.dumps({"method": "lora", "lora": {"r": 16, "alpha": 16}}))
    (root / "reports/train").mkdir(parents=True)
    (root / "reports/train/metrics.json").write_text(json.dumps({"val": {"accuracy": 0.93125, "macro_f1": 0.9}}))
    return root


@pytest.fixture
def project(tmp_path) -> Path:
    return write_project(tmp_path / "project")


def environment(home: Path, credentials: str | None = "legacy", **extra: str) -> dict[str, str]:
    """The run's environment: no Kaggle or DVC variable of ours, no proxy, a fresh HOME, the planted key."""
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAGGLE_", "DVC_")) and k.lower() not in proxies and k not in ("VERBOSE",
                                                                                                "VERBOSE_OUTPUT")}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), NO_PROXY="127.0.0.1,localhost",
               PYTHONPATH=str(REPO))
    if credentials == "legacy":
        env.update(KAGGLE_USERNAME=USER, KAGGLE_KEY=KEY)
    elif credentials == "token":
        env["KAGGLE_API_TOKEN"] = KEY
    return {**env, **extra}


def run_stage(project: Path, endpoint: str, *args: str, credentials: str | None = "legacy",
              **extra: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", LAUNCH, endpoint, *args], check=False, cwd=project,
                            env=environment(project.parent / "home", credentials, **extra),
                            capture_output=True, text=True, timeout=120)
    assert_key_not_leaked(result, project.parent)
    return result


def assert_key_not_leaked(result: subprocess.CompletedProcess, *roots: Path) -> None:
    """Neither the output nor any file under `roots` (the project and HOME) holds the key, plain or encoded."""
    forms = [KEY, base64.b64encode(f"{USER}:{KEY}".encode()).decode()]
    for form in forms:
        assert form not in result.stdout and form not in result.stderr
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(form.encode() in data for form in forms), f"the key leaked into {path}"


def error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(result.stderr.splitlines()) == 1, result.stderr[-3000:]
    return result.stderr.strip()


def history(project: Path) -> pd.DataFrame:
    return pd.read_csv(project / "reports/submissions.csv", dtype=str, keep_default_na=False)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Off by default.

def test_disabled_uploads_nothing_and_says_so_in_one_line(project, kaggle):
    write_params(project, {"data.source": "kaggle", "data.competition": SLUG})  # the shipped submit: enabled false
    result = run_stage(project, kaggle.url, credentials=None)  # and no credentials are needed
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [result.stdout.strip()] and "nothing uploaded" in result.stdout
    assert result.stderr == "" and kaggle.calls == []
    assert not (project / "reports/submissions.csv").exists()
    assert json.loads((project / "reports/submission.json").read_text()) == DISABLED


def test_the_history_is_no_output_so_nothing_deletes_it_and_a_score_leaves_dvc_status_clean():
    from workflow.engines.dag import load_stages

    stages = {stage.name: stage for stage in load_stages(REPO)}
    history = "reports/submissions.csv"
    assert "--history reports/submissions.csv" in stages["submit"].cmd
    assert stages["submit"].outs == ("reports/submission.json",)
    produced = [out for stage in stages.values() for out in stage.outs]
    assert not [out for out in produced if history == out or history.startswith(out + "/")]
    ignored = subprocess.run(["git", "check-ignore", "-q", history], cwd=REPO, check=False)
    assert ignored.returncode == 0  # and out of git: no checkout or `dvc exp apply` puts back an older copy


def test_shipped_params_keep_submit_off():
    from workflow.config import load_params

    assert load_params(REPO / "params.yaml").submit.enabled is False


# A submission, its record, its score.

@pytest.mark.parametrize("credentials", ["legacy", "token"])
def test_a_submission_is_uploaded_and_recorded(project, kaggle, credentials):
    result = run_stage(project, kaggle.url, credentials=credentials, DVC_EXP_NAME="r16")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and len(result.stdout.splitlines()) == 1
    assert f"submitted to {SLUG} as ref 4242" in result.stdout

    # The credentials went where Kaggle wants them, and only there.
    auth = {headers.get("Authorization") for name, headers, _ in kaggle.calls if name != "upload"}
    basic = "Basic " + base64.b64encode(f"{USER}:{KEY}".encode()).decode()
    expected = f"Bearer {KEY}" if credentials == "token" else basic
    assert auth == {expected}
    assert all("Authorization" not in headers for name, headers, _ in kaggle.calls if name == "upload")

    uploaded = kaggle.uploads[-1]
    assert uploaded == (project / "predictions.csv").read_bytes()
    rows = history(project)
    assert rows.columns.tolist() == ["time", "competition", "message", "sha256", "ref", "public_score"]
    row = rows.iloc[0].to_dict()
    assert len(rows) == 1 and row["competition"] == SLUG and row["ref"] == "4242" and row["public_score"] == ""
    assert row["sha256"] == hashlib.sha256(uploaded).hexdigest() == sha256(project / "predictions.csv")
    assert row["time"].endswith("+00:00")
    assert row["message"] == ("exp r16 | microsoft/beit-large-patch16-384 lora r=16 | val accuracy 0.9313 | "
                              "git unknown | first try")  # not a git repository: no revision
    created = [body for name, _, body in kaggle.calls if name == "CreateSubmission"]
    assert created == [{"competitionName": SLUG, "blobFileTokens": "blob-1", "submissionDescription": row["message"]}]
    record = json.loads((project / "reports/submission.json").read_text())
    assert record == {"uploaded": True, **{k: v for k, v in row.items() if k != "public_score"}}


def test_the_same_file_is_not_submitted_twice(project, kaggle):
    assert run_stage(project, kaggle.url).returncode == 0
    write_params(project, {"data.source": "kaggle", "data.competition": SLUG, "submit.enabled": True,
                           "submit.message": "another message, same file"})
    result = run_stage(project, kaggle.url)
    assert result.returncode == 0 and "already submitted to dog-breeds as ref 4242" in result.stdout
    assert kaggle.names().count("CreateSubmission") == 1 and len(history(project)) == 1


def test_refresh_fills_the_public_score_and_every_submit_refreshes_first(project, kaggle):
    assert run_stage(project, kaggle.url).returncode == 0
    kaggle.submissions[0].update(status="COMPLETE", publicScore="0.91250")
    result = run_stage(project, kaggle.url, "--refresh")
    assert result.returncode == 0, result.stderr
    assert "1 of 1 submissions waiting got a public score" in result.stdout
    assert history(project)["public_score"].tolist() == ["0.91250"]
    assert run_stage(project, kaggle.url, "--refresh").stdout.startswith("submit: no submission")

    # A new file: the earlier submission's score is asked for before the upload.
    (project / "predictions.csv").write_text("id,label\n007,cat\n010,cat\n2,cat\n")
    kaggle.calls.clear()
    kaggle.submissions.insert(0, {"ref": 4300, "status": "COMPLETE", "publicScore": "0.5"})
    (project / "reports/submissions.csv").write_text(
        (project / "reports/submissions.csv").read_text() + f"2024-01-01T00:00:00+00:00,{SLUG},old,abc,4300,\n")
    assert run_stage(project, kaggle.url).returncode == 0
    names = kaggle.names()
    assert names.index("ListSubmissions") < names.index("CreateSubmission")
    assert history(project)["public_score"].tolist() == ["0.91250", "0.5", ""]


def test_an_experiment_run_in_a_copy_records_in_the_workspace(project, kaggle, tmp_path):
    # `dvc exp run --queue` runs in a temporary copy; DVC_ROOT names the workspace whose history is kept.
    workspace = tmp_path / "workspace"
    assert run_stage(project, kaggle.url, DVC_ROOT=str(workspace)).returncode == 0
    assert history(workspace)["ref"].tolist() == ["4242"] and not (project / "reports/submissions.csv").exists()


# Every failure: one line saying what to do; nothing recorded.

FAILURES = {  # name -> (what the server does, what the one line says)
    "invalid key (401)": ({"StartSubmissionUpload": (401, "Unauthenticated")},
                          ("Kaggle rejected the credentials (401: invalid or expired); create a new token at "
                           "https://www.kaggle.com/settings/api")),
    "rules not accepted (403)": ({"CreateSubmission": (403, "You must accept this competition's rules first")},
                                 f"accept the competition's rules at https://www.kaggle.com/competitions/{SLUG}/rules"),
    "too many requests (429)": ({"StartSubmissionUpload": (429, "Too Many Requests")},
                                "Kaggle's submission limit is reached (HTTP 429)"),
    "daily limit": ({"CreateSubmission": (400, ("Submission not allowed:  Your team has used its daily Submission "
                                                "allowance (5) today, please try again tomorrow UTC"))},
                    ("Kaggle's submission limit is reached (HTTP 400) (Kaggle: Submission not allowed: Your team has "
                     "used its daily Submission allowance (5) today")),
    "closed competition": ({"CreateSubmission": (400, ("Submission not allowed: This competition is no longer "
                                                       "accepting submissions"))},
                           "the competition no longer accepts submissions"),
    "failed upload": ("upload", "the upload of predictions.csv to Kaggle's storage failed"),
}


@pytest.mark.parametrize("case", FAILURES)
def test_kaggle_refusals_become_one_line(project, kaggle, case):
    server, message = FAILURES[case]
    if server == "upload":
        kaggle.upload_status = 403
    else:
        kaggle.refuse.update(server)
    line = error_line(run_stage(project, kaggle.url))
    assert line.startswith(f"error: data.competition '{SLUG}': ") and message in line, line
    assert not (project / "reports/submissions.csv").exists() and not (project / "reports/submission.json").exists()


def test_an_invalid_token_is_named(project, kaggle):
    kaggle.token_active = False  # expired or revoked: the package's authentication gives up
    line = error_line(run_stage(project, kaggle.url, credentials="token"))
    assert line == (f"error: data.competition '{SLUG}': Kaggle rejected the credentials; create a new token at "
                    "https://www.kaggle.com/settings/api and replace the old one")
    assert "CreateSubmission" not in kaggle.names()


def test_missing_credentials_say_where_to_put_them(project, kaggle):
    line = error_line(run_stage(project, kaggle.url, credentials=None))
    assert "no Kaggle credentials were found" in line and "https://www.kaggle.com/settings/api" in line
    assert "~/.kaggle/kaggle.json" in line and "KAGGLE_USERNAME and KAGGLE_KEY" in line and "KAGGLE_API_TOKEN" in line
    assert kaggle.calls == []


def test_no_network_is_one_line(project):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    line = error_line(run_stage(project, closed))
    assert line == (f"error: data.competition '{SLUG}': cannot reach Kaggle (ConnectionError); check the network "
                    "connection (and any proxy), then run again")


def test_with_verbose_output_the_key_still_stays_inside(project, kaggle):
    # VERBOSE makes the package print each request with its headers; the stage switches that off.
    for credentials in ("legacy", "token"):
        assert run_stage(project, kaggle.url, credentials=credentials, VERBOSE="1").returncode == 0
        (project / "reports/submissions.csv").unlink()
    kaggle.refuse["CreateSubmission"] = (401, "Unauthenticated")
    assert run_stage(project, kaggle.url, credentials="token", VERBOSE="1").returncode == 2


@pytest.mark.parametrize("source, competition, message", [
    # A local copy of a competition's files is fine, with the slug to submit to.
    ("local", "", "params.yaml: data.competition is empty; set it to the competition's Kaggle slug"),
    ("builtin", SLUG, "the built-in demo competition cannot be submitted to Kaggle"),
])
def test_what_is_not_a_kaggle_competition_is_refused_before_any_call(tmp_path, kaggle, source, competition, message):
    project = write_project(tmp_path / "project", source=source, **{"data.competition": competition,
                                                                     "data.path": "competition.zip"})
    assert message in error_line(run_stage(project, kaggle.url)) and kaggle.calls == []


def test_a_bad_file_is_refused_before_any_call(project, kaggle):
    (project / "predictions.csv").write_text("id,label\n007,dog\n2,cat\n010,dog\n")
    line = error_line(run_stage(project, kaggle.url))
    assert line.startswith("error: predictions.csv line 3: id '2' where data/raw/sample_submission.csv has '010'")
    assert kaggle.calls == []


def test_help_works_without_kaggle_or_torch():
    code = ("import runpy, sys\nsys.argv = ['submit', '--help']\ntry:\n"
            "    runpy.run_module('workflow.stages.submit', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('LOADED', [m for m in ('torch', 'kaggle') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert "--refresh" in result.stdout and "LOADED []" in result.stdout, result.stderr


# The format check, in-process.

@pytest.mark.parametrize("predictions, message", [
    ("id,label\n007,dog\n010,cat\n", "predictions.csv: 2 rows where"),
    ("label,id\ndog,007\ncat,010\ndog,2\n", r"columns \['label', 'id'\] differ from"),
    ("id,label,extra\n007,dog,1\n010,cat,1\n2,dog,1\n", r"columns \['id', 'label', 'extra'\] differ"),
    ("id,label\n7,dog\n010,cat\n2,dog\n", "line 2: id '7' where .*sample_submission.csv has '007'"),
    ("id,label\n007,dog\n010,\n2,dog\n", "line 3: column 'label' is empty"),
    ("id,label\n007,dog\n010,cow\n2,dog\n", "line 3: label 'cow' is not one of the competition's 2 classes"),
])
def test_label_files_that_kaggle_would_reject(tmp_path, predictions, message):
    project = write_project(tmp_path / "p")
    (project / "predictions.csv").write_text(predictions)
    with pytest.raises(UserError, match=message):
        check_submission(project / "predictions.csv", project / "data/raw")


@pytest.mark.parametrize("rows, message", [
    (["007,0.25,0.75", "010,0.6,0.6", "2,0.5,0.5"], "line 3: the class probabilities sum to 1.2, not 1"),
    (["007,0.25,0.75", "010,0.5,0.4999", "2,0.5,0.5"], "line 3: the class probabilities sum to 0.9999, not 1"),
    (["007,1.5,-0.5", "010,0.5,0.5", "2,0.5,0.5"], "line 2: column 'dog' is '1.5', not a probability in"),
    (["007,0.5,0.5", "010,high,0.5", "2,0.5,0.5"], "line 3: column 'dog' is 'high', not a probability"),
    (["007,0.5,0.5", "010,0.5,nan", "2,0.5,0.5"], "line 3: column 'cat' is 'nan'"),
])
def test_probability_files_that_kaggle_would_reject(tmp_path, rows, message):
    project = write_project(tmp_path / "p", fmt="probabilities")
    (project / "predictions.csv").write_text("\n".join(["id,dog,cat", *rows]) + "\n")
    with pytest.raises(UserError, match=message):
        check_submission(project / "predictions.csv", project / "data/raw")


@pytest.mark.parametrize("fmt", ["label", "probabilities"])
def test_good_files_pass(tmp_path, fmt):
    project = write_project(tmp_path / "p", fmt=fmt)  # probabilities off by up to 4e-7 from 1, as float32 gives
    check_submission(project / "predictions.csv", project / "data/raw")


def test_the_message_names_the_run_and_the_revision(tmp_path, monkeypatch):
    project = write_project(tmp_path / "p")
    monkeypatch.chdir(project)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (project / "dvc.lock").write_text("schema: '2.0'\n")
    subprocess.run([*git, "add", "params.yaml", "dvc.lock"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=True, capture_output=True,
                         text=True).stdout.strip()
    (project / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")  # a run's own record: not a code change
    (project / "notes.txt").write_text("untracked")
    assert git_revision() == sha
    message = build_message(project / "models/adapter", project / "reports/train/metrics.json", " line\none ")
    assert message == f"microsoft/beit-large-patch16-384 lora r=16 | val accuracy 0.9313 | git {sha} | line one"
    with open(project / "params.yaml", "a") as f:
        f.write("# edited\n")
    assert git_revision() == f"{sha}+dirty"
