"""The `shearc` command line.

Exit codes: 0 done; 2 the input is wrong (every problem listed, no traceback);
1 a check of the output failed (what to do next printed) or a bug (traceback shown); 130 interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.text import Text

from shearc import __version__
from shearc.errors import EXIT_BUG, EXIT_INTERRUPTED, EXIT_OK, EXIT_USER, CheckFailed, Interrupted, Problem, UserError

# Piped output is not wrapped at 80 columns: plans have wide tables.
stdout = Console(highlight=False, width=None if sys.stdout.isatty() else 140)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shearc")
def cli() -> None:
    """shearc: compile LLM compression recipes (YAML) into plans, and run them."""


@cli.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(specs: tuple[Path, ...]) -> None:
    """Check SPECS against the schema and their source models; list every error."""
    from shearc.compiler.compile import compile_spec

    failed = 0
    for spec in specs:
        try:
            plan = compile_spec(spec)
        except UserError as exc:
            failed += 1
            print(exc.render(), file=sys.stderr)
            continue
        source, target = plan.source.model_info.params, plan.target.model_info.params
        stdout.print(f"ok: {spec} ({source:,} -> {target:,} params)", markup=False)
    if failed:
        print(f"{failed} of {len(specs)} specs invalid", file=sys.stderr)
        raise click.exceptions.Exit(EXIT_USER)


@cli.command(name="compile")
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", type=click.Path(path_type=Path), default=Path("plan.json"),
              show_default=True, help="Where to write the plan.")
def compile_command(spec: Path, output: Path) -> None:
    """Compile SPEC into a fully resolved plan."""
    from shearc.compiler.compile import compile_spec, write_plan

    plan = compile_spec(spec, output)
    write_plan(plan, output)
    source, target = plan.source.model_info, plan.target.model_info
    stdout.print(f"compiled {plan.spec.name}: {source.params:,} -> {target.params:,} parameters "
                 f"({plan.target.params_ratio:.1%} kept); stages: {', '.join(s.stage for s in plan.stages)}",
                 markup=False)
    for warning in plan.warnings:
        stdout.print(Text("warning: ", style="yellow") + Text(warning))
    stdout.print(f"wrote {output} (sha256 {plan.plan_sha256[:12]}); see `shearc explain {output}`", markup=False)


@cli.command()
@click.argument("plan", type=click.Path(path_type=Path))
def explain(plan: Path) -> None:
    """Print a readable summary of PLAN: shapes, groups, stages, cost, mixture."""
    from shearc.compiler.explain import explain as render
    from shearc.plan import read_plan

    render(read_plan(plan).as_json(), stdout, plan.resolve().parent)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
def data(path: Path) -> None:
    """Tokenize the data of PATH (a spec or a plan) ahead of a run, into the cache every run reads."""
    from shearc.compiler.compile import compile_spec
    from shearc.plan import read_plan
    from shearc.runtime import distributed
    from shearc.runtime.data.ahead import prepare_ahead

    plan = read_plan(path) if path.suffix == ".json" else compile_spec(path, path.parent / "plan.json")
    distributed.initialize()
    try:
        prepared = prepare_ahead(plan, path.resolve().parent)
    finally:
        distributed.shutdown()
    for domain in prepared.domains:
        stdout.print(f"{domain.name}: {len(domain.train.stream):,} train tokens, {len(domain.eval):,} eval tokens",
                     markup=False)
    done = prepared.stats.line() if prepared.stats.files else "every file was prepared already"
    stdout.print(f"{done}; cache: {prepared.cache_dir}", markup=False)


@cli.command()
@click.argument("plan", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run directory; default: the plan's runtime.output_dir, relative to the plan.")
@click.option("--finalize-tolerance", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Accept a sliced model whose logits differ from the masked model's by up to this much "
                   "(default: derived from the model's own rounding; a failed check prints the value to use).")
def run(plan: Path, out: Path | None, finalize_tolerance: float | None) -> None:
    """Execute PLAN: verify it against the source model, prune, finalize and export a dense model."""
    from shearc.runtime.run import run_plan

    run_plan(plan, out, finalize_tolerance=finalize_tolerance)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for the PNG plots; default RUN_DIR/report.")
def report(run_dir: Path, out: Path | None) -> None:
    """Print RUN_DIR's tables (size, speed, per-domain loss before/after, mixture) and write PNG plots."""
    from shearc.report.plots import write_plots
    from shearc.report.records import read_run
    from shearc.report.tables import print_tables

    out = out or run_dir / "report"
    if out.exists() and not out.is_dir():
        raise UserError([Problem("exists and is not a folder", file=str(out))], title="cannot write the plots")
    record = read_run(run_dir)
    print_tables(record, stdout)
    for path in write_plots(record, out):
        stdout.print(f"wrote {path}", markup=False)


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None, help="Also write the table as CSV.")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path), default=None,
              help="Also write the table as markdown (best values in bold).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for the PNG plots (per-domain loss per run; training loss against tokens).")
def compare(run_dirs: tuple[Path, ...], csv_path: Path | None, markdown_path: Path | None, out: Path | None) -> None:
    """One table over several runs: what each did, spent and made, per-domain and worst-domain loss, downstream
    tasks; the best value of each column marked."""
    from shearc.report.compare import compare_runs
    from shearc.report.records import read_run

    for path in (csv_path, markdown_path):
        if path is not None and path.is_dir():
            raise UserError([Problem("is a folder; give a file name", file=str(path))], title="cannot write the table")
    if out is not None and out.exists() and not out.is_dir():
        raise UserError([Problem("exists and is not a folder", file=str(out))], title="cannot write the plots")
    records = [read_run(run_dir) for run_dir in run_dirs]
    for path in compare_runs(records, stdout, csv_path=csv_path, markdown_path=markdown_path, plots=out):
        stdout.print(f"wrote {path}", markup=False)


@cli.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--train-documents", type=click.IntRange(min=1), default=8000, show_default=True,
              help="Training documents per domain.")
@click.option("--eval-documents", type=click.IntRange(min=1), default=200, show_default=True,
              help="Eval documents per domain.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def corpus(out: Path, train_documents: int, eval_documents: int, seed: int) -> None:
    """Generate the embedded multi-domain corpus into OUT/<domain>/{train,eval}.jsonl."""
    from shearc.corpus.writer import write_corpus

    manifest = write_corpus(out, train_documents=train_documents, eval_documents=eval_documents, seed=seed)
    for domain, splits in manifest["domains"].items():
        stdout.print(f"{domain:>10}: {splits['train']['documents']:,} train / {splits['eval']['documents']:,} eval "
                     f"documents, {splits['train']['characters']:,} train characters", markup=False)
    stdout.print(f"wrote {out}", markup=False)


@cli.command()
@click.option("--check", is_flag=True, help="Fail if the checked-in schemas differ from the models.")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=Path("schemas"), show_default=True,
              help="Folder of spec.schema.json and plan.schema.json.")
def schema(check: bool, directory: Path) -> None:
    """Write (or check) the JSON Schemas of specs and plans."""
    from shearc.canonical import write_text_atomic
    from shearc.compiler.schemas import schema_files, stale_schemas

    if check:
        stale = stale_schemas(directory)
        if stale:
            raise UserError([Problem("out of date; run `shearc schema`", file=str(directory / n)) for n in stale],
                            title="stale schemas")
        stdout.print(f"schemas in {directory} are up to date")
        return
    for name, text in schema_files().items():
        write_text_atomic(directory / name, text)
        stdout.print(f"wrote {directory / name}")


def main(argv: list[str] | None = None) -> int:
    try:
        result = cli.main(args=argv, prog_name="shearc", standalone_mode=False)
    except UserError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_USER
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except CheckFailed as exc:
        print(f"check failed: {exc}", file=sys.stderr)
        return EXIT_BUG
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:  # usage errors: unknown option, missing argument
        exc.show()
        return EXIT_USER
    return result if isinstance(result, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["cli", "main"]
