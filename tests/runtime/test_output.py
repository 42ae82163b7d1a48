"""A run's output: shearc's lines on the console and in run.log, the libraries' in libraries.log, and the
process's logging put back as it was."""

import logging
import os
import subprocess
import warnings

from rich.console import Console

from shearc.runtime.output import LIBRARIES_LOG, RUN_LOG, into_log, run_output


def test_libraries_go_to_their_log_and_shearcs_warnings_to_the_console(tmp_path, capsys):
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    with run_output(tmp_path, Console(stderr=True)) as say:
        say("stage prune ...")
        logging.getLogger("lm_eval.evaluator").warning("Overwriting default num_fewshot")
        logging.getLogger("transformers.modeling_utils").warning("a transformers warning")
        warnings.warn("a FutureWarning from somewhere", FutureWarning, stacklevel=1)
        logging.getLogger("shearc.runtime.data.sampler").warning("domain 'a' ran out of data")
        with into_log(tmp_path):
            subprocess.run(["sh", "-c", "echo from a child process >&2"], check=True)
            os.write(2, b"written to fd 2\n")
    err = capsys.readouterr().err.splitlines()
    assert err == ["stage prune ...", "warning: domain 'a' ran out of data"]
    assert (tmp_path / RUN_LOG).read_text().splitlines() == err
    libraries = (tmp_path / LIBRARIES_LOG).read_text()
    for line in ("Overwriting default num_fewshot", "a transformers warning", "a FutureWarning from somewhere",
                 "from a child process", "written to fd 2"):
        assert line in libraries
    assert "ran out of data" not in libraries
    assert (root.level, root.handlers) == (level, handlers)
    assert logging.getLogger("shearc").propagate
