"""``mtbranch``: validate, compose, inspect and run task branches on a shared frozen trunk.

Exit codes (as ruff): 0 success, 1 findings at error level / a user-fixable failure, 2 usage or internal
error. No command prints a Python traceback for a user error (set MTBRANCH_DEBUG=1 to see one).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from mtbranch import __version__
from mtbranch.cli.output import err_console


class MtbranchGroup(click.Group):
    """Turns MtbranchError into a clear message + exit code, and anything unexpected into exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        from mtbranch.errors import MtbranchError

        try:
            return super().invoke(ctx)
        except MtbranchError as exc:
            from rich.markup import escape  # a message may hold [brackets], e.g. pip install 'mtbranch[train]'

            err_console.print(f"[bold red]error:[/] {escape(exc.render())}", markup=True, highlight=False,
                              soft_wrap=True)  # no line breaks inserted into paths
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except OSError as exc:  # disk full, read-only directory, permission denied: the user's to fix, exit 1
            from rich.markup import escape

            from mtbranch.errors import user_error

            err = user_error(exc)
            assert err is not None
            err_console.print(f"[bold red]error:[/] {escape(err.render())}", markup=True, highlight=False,
                              soft_wrap=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(130)
        except Exception as exc:  # a bug, not a user error: still no traceback unless asked
            if os.environ.get("MTBRANCH_DEBUG"):
                raise
            from rich.markup import escape

            err_console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
                              "  (set MTBRANCH_DEBUG=1 for the traceback and please report it)", markup=True)
            sys.exit(2)


@click.group(cls=MtbranchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mtbranch")
def cli() -> None:
    """Task branches for one shared frozen transformer trunk.

    \b
    Typical flow:
      mtbranch plugins                      # what is installed
      mtbranch validate --trunk minilm-l6   # do the branches fit the trunk?
      mtbranch compose --trunk minilm-l6 -o composed/
      mtbranch inspect composed/
      mtbranch predict composed/ "I loved this film"
    """


def _register() -> None:
    from mtbranch.cli import commands
    from mtbranch.cli.bench import bench
    from mtbranch.cli.build import build
    from mtbranch.cli.canary import canary
    from mtbranch.cli.migrate import migrate_cmd
    from mtbranch.cli.new_plugin import new_plugin
    from mtbranch.cli.quantize import quantize_cmd
    from mtbranch.cli.sdk_commands import distill_cmd, sweep_cmd, train_cmd
    from mtbranch.cli.serve import export_onnx, serve

    for cmd in [*commands.ALL, new_plugin, train_cmd, sweep_cmd, distill_cmd, migrate_cmd, build, serve, export_onnx,
                bench, canary, quantize_cmd]:
        cli.add_command(cmd)


_register()


def main() -> None:
    cli(prog_name="mtbranch")


if __name__ == "__main__":
    main()
