"""``python -m unitumour_dicom.train``: the training command without the rest of the CLI
(for training hosts and ``torchrun -m unitumour_dicom.train``)."""

import typer

from .command import train_command

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(train_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
