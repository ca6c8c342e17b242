"""``make reproduce``: execute the study's notebooks in order with papermill, render HTML.

Parameters come from one YAML file per data set (``params/<name>.yaml``). Each notebook's executed
copy and HTML go to ``<report_dir>/`` (figures to ``<report_dir>/figures/``), each written under a
temporary name and moved into place, so a failed run never leaves a half-written report. The first
failing notebook stops the chain: its error is printed and the exit status is non-zero.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from .. import config


def read_params(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a parameter YAML file (a flat mapping of literals)."""
    path = Path(path)
    if not path.is_file():
        choices = ", ".join(sorted(p.stem for p in config.PARAMS_DIR.glob("*.yaml")))
        raise ValueError(f"{path}: parameter file not found (available in params/: {choices})")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"{path}:{where} not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping of parameter names to values")
    odd = [k for k in params if not isinstance(k, str) or not k]
    if odd:  # (found by the fuzzer: YAML's "?" is a mapping with the key None)
        raise ValueError(f"{path}: parameter names must be non-empty text; got {', '.join(map(repr, odd))}")
    return params


def prepare_data(params: dict[str, Any]) -> None:
    """Generate the SYNTHETIC demo data when the parameters ask for it and it is absent."""
    if params.get("synthetic"):
        from ..data.demo import make_demo_dataset

        csv = config.resolve(params["metadata_csv"])
        if not csv.is_file():
            print(f"generating SYNTHETIC demo data in {csv.parent}", flush=True)
            make_demo_dataset(csv.parent, seed=int(params.get("seed", 0)))
        for folder in params.get("external_dirs") or []:  # the SYNTHETIC external set in HAM10000's schema
            path = config.resolve(folder)
            if not path.is_dir():
                from ..data.demo import make_external_demo

                print(f"generating SYNTHETIC external demo data in {path}", flush=True)
                make_external_demo(path, seed=int(params.get("seed", 0)) + 1)


def render_html(notebook: Path, html: Path) -> None:
    """Write ``notebook`` as HTML to ``html`` (temporary name, then moved)."""
    import nbformat
    from nbconvert import HTMLExporter

    from ..atomic import write_text

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    write_text(html, body)


#: Stream lines that say nothing about the study: TensorFlow's C++ start-up notices (they ignore
#: TF_CPP_MIN_LOG_LEVEL) and tqdm's notebook-widget warning with the import line it quotes.
NOISE_LINES = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|[IWE]\d{4} [\d:.]+ +\d+ "
                         r"\S+\] |\S+ \d\d:\d\d:\d\d\.\d+: [IWE] tensorflow/|.*TqdmWarning: IProgress not found|"
                         r"\s*from \.autonotebook import tqdm as notebook_tqdm|"
                         # progress bars (tqdm, Keras), library warnings (retracing, with addresses), download notices
                         r".*\d+%\|.*\|.*|.*\d+/\d+ \[[=>.]*\].*|WARNING:|Downloading data from |"
                         # per-run log lines of a cross-validation (the tables and figures summarise them)
                         r"\[cv\] )")
#: Fragments of text outputs rewritten for a reader: object reprs with memory addresses, ``PosixPath('…')`` wrappers,
#: and the socket error a failed download quotes (``[Errno -2] Name or service not known``).
SCRUBS: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"<([\w.]+(?: object)?) at 0x[0-9a-fA-F]+>"), r"<\1>"),
    (re.compile(r"(?:Posix|Windows)?Path\('([^']*)'\)"), r"'\1'"),
    (re.compile(r"URL fetch failure on (\S+?): None -- \[Errno -?\d+\] [^)]*"), r"no network access to \1"),
)
#: An absolute path into a report or run folder, wherever it was rendered: kept from ``reports/`` on.
ABSOLUTE_REPORT_PATH = re.compile(r"(?<![\w.])/(?:[^\s'\"/]+/)+?(?=reports/)")


def clean_outputs(nb: Any, root: Path = config.PROJ_ROOT) -> int:
    """Remove machine noise from an executed notebook's outputs in place: TensorFlow start-up lines, widget warnings,
    progress bars, library ``WARNING:`` lines and download notices from streams; absolute paths (the project root, or
    any folder above ``reports/``), memory addresses, ``PosixPath(…)`` wrappers and quoted socket errors from every text
    output, so a committed report holds no machine's paths or log lines. Returns the number of outputs changed."""
    changed = 0
    prefix = str(root).rstrip("/") + "/"

    def scrub(text: str) -> str:
        text = ABSOLUTE_REPORT_PATH.sub("", text.replace(prefix, ""))
        for pattern, repl in SCRUBS:
            text = pattern.sub(repl, text)
        return text

    for cell in nb.cells:
        for out in cell.get("outputs", []):
            before = str(out)
            if out.get("output_type") == "stream":
                lines = out["text"].replace("\r", "\n").splitlines(keepends=True)  # a bar redraws with carriage returns
                out["text"] = scrub("".join(line for line in lines if not NOISE_LINES.match(line)))
            for key, value in (out.get("data") or {}).items():
                if key.startswith("text/") and isinstance(value, str):
                    out["data"][key] = scrub(value)
            changed += str(out) != before
        # a stream left empty (or whitespace only) would render as an empty box
        kept = [o for o in cell.get("outputs", []) if not (o.get("output_type") == "stream" and not o["text"].strip())]
        changed += len(cell.get("outputs", [])) - len(kept)
        cell["outputs"] = kept
    meta = nb.get("metadata", {}).get("papermill", {})
    for key in ("input_path", "output_path"):  # papermill records where it ran: keep the project-relative part
        if isinstance(meta.get(key), str):
            relative = re.sub(r"^.*?/(?=(notebooks|reports)/)", "", meta[key])
            changed += relative != meta[key]
            meta[key] = relative
    return changed


def clean_notebook_file(path: Path, root: Path = config.PROJ_ROOT) -> int:
    """:func:`clean_outputs` on a notebook file, rewritten under a temporary name and moved into place."""
    import nbformat

    from ..atomic import write_text

    nb = nbformat.read(path, as_version=4)
    n = clean_outputs(nb, root)
    if n:
        write_text(path, nbformat.writes(nb))
    return n


def run_notebook(name: str, params: dict[str, Any], report_dir: Path, timeout: int = 3600) -> Path:
    """Execute ``notebooks/<name>.ipynb`` with the parameters it declares; return the executed copy."""
    import papermill as pm

    source = config.NOTEBOOKS_DIR / f"{name}.ipynb"
    declared = pm.inspect_notebook(str(source))
    given = {k: v for k, v in params.items() if k in declared}
    report_dir.mkdir(parents=True, exist_ok=True)
    out = report_dir / f"{name}.ipynb"
    tmp = report_dir / f".{name}.tmp.ipynb"
    try:
        pm.execute_notebook(
            str(source),
            str(tmp),
            parameters=given,
            cwd=str(config.NOTEBOOKS_DIR),
            kernel_name="python3",
            log_output=False,
            progress_bar=False,
            execution_timeout=timeout,
        )
    except BaseException:
        failed = report_dir / f"{name}.failed.ipynb"  # kept for inspection, never the report itself
        if tmp.exists():
            os.replace(tmp, failed)
        raise
    clean_notebook_file(tmp)  # no machine paths or log lines in a report
    html_tmp = report_dir / f".{name}.tmp.html"
    render_html(tmp, html_tmp)  # both outputs complete before either replaces the previous pair
    os.replace(tmp, out)
    os.replace(html_tmp, report_dir / f"{name}.html")
    (report_dir / f"{name}.failed.ipynb").unlink(missing_ok=True)
    return out


#: Keys a parameter file may hold besides the notebooks' parameters, with the check of each value (checked with the
#: rest of the file, before anything is written).
RUNNER_KEYS: frozenset[str] = frozenset({"cell_timeout"})


def check_runner_keys(params: dict[str, Any], params_file: str | os.PathLike[str]) -> None:
    """Raise ``ValueError`` naming a runner key (:data:`RUNNER_KEYS`) whose value is not valid: ``cell_timeout`` a
    whole number of seconds > 0."""
    if "cell_timeout" in params:
        value = params["cell_timeout"]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{params_file}: cell_timeout must be a whole number of seconds > 0 (e.g. 3600); got {value!r}")


#: Parameters whose values may take more than the type of their notebook default.
PARAM_TYPES: dict[str, tuple[type, ...]] = {"prevalence": (str, int, float)}


def _expected_types(default: str) -> tuple[type, ...] | None:
    """The types a parameter accepts, from its notebook default's literal (``None`` default: any)."""
    import ast

    try:
        value = ast.literal_eval(default)
    except (ValueError, SyntaxError):
        return None
    if value is None:
        return None
    if isinstance(value, bool):
        return (bool,)
    if isinstance(value, int):
        return (int,)
    if isinstance(value, float):
        return (int, float)
    return (type(value),)


def check_preset(params: dict[str, Any], params_file: str | os.PathLike[str]) -> None:
    """Raise ``ValueError`` when a parameter file's ``preset`` is unknown, its ``train_overrides`` name a field
    ``TrainConfig`` lacks or hold a value that is not valid, or restate one the preset already has (a file states
    only what it changes, so that it cannot drift from the preset it names)."""
    if "preset" not in params and "train_overrides" not in params:
        return
    from ..models.train_config import TrainConfig

    name, overrides = params.get("preset", "demo"), params.get("train_overrides") or {}
    if not isinstance(overrides, dict):
        raise ValueError(f"{params_file}: train_overrides must be a mapping of TrainConfig fields; got {overrides!r}")
    try:
        cfg = TrainConfig.from_preset(name, **overrides)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise ValueError(f"{params_file}: preset {name!r} with train_overrides: {exc}") from None
    restated = sorted(k for k in overrides  # without it, the same value (some fields follow others: image_size, weights)
                      if getattr(TrainConfig.from_preset(name, **{o: v for o, v in overrides.items() if o != k}), k)
                      == getattr(cfg, k))
    if restated:
        raise ValueError(f"{params_file}: train_overrides restate what preset {name!r} already sets: "
                         f"{', '.join(f'{k}={overrides[k]!r}' for k in restated)}; remove them")


def check_params(params: dict[str, Any], params_file: str | os.PathLike[str], notebooks: Sequence[str] | None = None) -> None:
    """Raise ``ValueError`` naming any key that no notebook declares (a typo would otherwise be ignored), and any value
    whose type differs from the notebook default's (``cv_folds: "five"``), before a notebook runs.

    ``notebooks`` defaults to every notebook in ``notebooks/`` (a file serves all of them, whichever run).
    """
    import papermill as pm

    if notebooks is None:
        notebooks = sorted(p.stem for p in config.NOTEBOOKS_DIR.glob("*.ipynb"))
    declared: set[str] = set(RUNNER_KEYS)
    defaults: dict[str, str] = {}
    for name in notebooks:
        info = pm.inspect_notebook(str(config.NOTEBOOKS_DIR / f"{name}.ipynb"))
        declared |= set(info)
        defaults.update({k: v["default"] for k, v in info.items()})
    unknown = sorted(set(params) - declared)
    if unknown:
        raise ValueError(f"{params_file}: unknown parameter(s) {', '.join(unknown)}: no notebook of "
                         f"{', '.join(notebooks)} declares them (check the spelling)")
    for key, value in params.items():
        types = PARAM_TYPES.get(key) or (_expected_types(defaults[key]) if key in defaults else None)
        if types is None:
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join(t.__name__ for t in types)
            raise ValueError(f"{params_file}: parameter {key} must be {names} (like the notebook default "
                             f"{defaults.get(key)}); got {value!r}")
    check_preset(params, params_file)
    check_runner_keys(params, params_file)


#: Written into a report folder while ``reproduce`` runs and removed when every notebook succeeded: a folder that
#: holds it is a mixture of two renderings (what it says).
INCOMPLETE = "RENDERING_INCOMPLETE.txt"


#: Where each notebook's record of what its report was rendered from lives, inside the report folder.
STAMPS = ".rendered"


def _file_state(path: Path) -> list[Any]:
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


def inputs_digest(name: str, params: dict[str, Any]) -> str:
    """What the report of notebook ``name`` depends on: the notebook, the parameters it takes, the package's source,
    and the size and modification time of every data file or folder its parameters name (a folder: its files)."""
    import hashlib
    import json

    import papermill as pm

    source = config.NOTEBOOKS_DIR / f"{name}.ipynb"
    declared = pm.inspect_notebook(str(source))
    given = {k: v for k, v in sorted(params.items()) if k in declared}
    h = hashlib.sha256(source.read_bytes())
    h.update(json.dumps(given, sort_keys=True, default=str).encode())
    for py in sorted((config.PROJ_ROOT / "melanoma_utils").rglob("*.py")):
        h.update(py.read_bytes())
    for key, value in given.items():
        if key == "report_dir":  # the output, not an input
            continue
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v and ("/" in v or v.endswith((".csv", ".yaml"))):
                path = config.resolve(v)
                if path.is_file():
                    h.update(json.dumps(_file_state(path)).encode())
                elif path.is_dir():
                    for f in sorted(path.rglob("*"))[:100_000]:
                        if f.is_file():
                            h.update(json.dumps(_file_state(f)).encode())
    return h.hexdigest()


def up_to_date(name: str, params: dict[str, Any], report_dir: Path) -> bool:
    """Whether ``report_dir`` holds a complete rendering of ``name`` from exactly these inputs."""
    stamp = report_dir / STAMPS / f"{name}.sha256"
    return (stamp.is_file() and (report_dir / f"{name}.ipynb").is_file() and (report_dir / f"{name}.html").is_file()
            and stamp.read_text().strip() == inputs_digest(name, params))


def reproduce(params_file: str | os.PathLike[str], notebooks: Sequence[str] = config.NOTEBOOKS,
              force: bool = False) -> int:
    """Run the notebooks in order; return 0, or 1 at the first failure (its error printed).

    A notebook whose report is up to date (:func:`up_to_date`: same notebook, parameters, package source and data
    files) is skipped, so a killed ``reproduce`` re-run continues where it stopped; once one notebook runs, every
    later one runs too (it may read what that one wrote). ``force``: run them all."""
    params = read_params(params_file)
    check_params(params, params_file)
    report_dir = config.resolve(params.get("report_dir", f"reports/{Path(params_file).stem}"))
    prepare_data(params)
    from ..atomic import write_text

    marker = report_dir / INCOMPLETE
    done: list[str] = []

    def mark(state: str) -> None:
        report_dir.mkdir(parents=True, exist_ok=True)
        write_text(marker, f"A rendering with {Path(params_file).name} is {state} (started {started}).\n"
                           f"Notebooks asked for: {', '.join(notebooks)}; finished: {', '.join(done) or 'none'}.\n"
                           "Until this file is gone, the notebooks, figures and tables here may come from two "
                           "renderings (and two data sets). Run `make reproduce` again to finish it.\n")

    started = time.strftime("%Y-%m-%d %H:%M")
    mark("running")
    rerun = force
    for name in notebooks:
        if not rerun and up_to_date(name, params, report_dir):
            print(f"[reproduce] {name}: report up to date (same notebook, parameters, code and data): skipped "
                  "(--force runs it)", flush=True)
            done.append(name)
            continue
        rerun = True
        (report_dir / STAMPS / f"{name}.sha256").unlink(missing_ok=True)
        start = time.perf_counter()
        print(f"[reproduce] {name} -> {report_dir}/", flush=True)
        try:
            run_notebook(name, params, report_dir, timeout=int(params.get("cell_timeout", 3600)))
        except BaseException as exc:  # papermill's PapermillExecutionError carries the cell's error
            mark(f"incomplete: {name} failed or was stopped")
            print(f"[reproduce] {name} FAILED: {exc}", file=sys.stderr, flush=True)
            if not isinstance(exc, Exception):
                raise
            return 1
        done.append(name)
        write_text(report_dir / STAMPS / f"{name}.sha256", inputs_digest(name, params) + "\n")
        mark("running")
        print(f"[reproduce] {name} done in {time.perf_counter() - start:.0f} s", flush=True)
    marker.unlink(missing_ok=True)
    return 0
