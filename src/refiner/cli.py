"""The `refiner` command line."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Refiner: reliable, incentive-driven federated learning on Ethereum.", no_args_is_help=True
)


@app.command()
def demo() -> None:
    """Run one scripted round on the embedded chain and print what happened."""
    from refiner.demo import main

    raise typer.Exit(main())


@app.command("build-contracts")
def build_contracts() -> None:
    """Compile the Solidity contracts if any source, the compiler or a library changed."""
    from refiner.chain.build import main

    raise typer.Exit(main())


if __name__ == "__main__":
    app()
